"""The frame layer's fast path agrees with the websockets Protocol on every input."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from websockets.utils import apply_mask

from axeom.ws._frames import STREAM_ABOVE, FrameConnection
from axeom.ws._socket import SendStatus
from tests._wsraw import Deflater, client_frame

LIMIT = 70_000

message = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("binary"), st.binary(max_size=300)),
    st.tuples(st.just("big"), st.integers(min_value=126, max_value=LIMIT)),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("fragmented"), st.lists(st.text(max_size=20), min_size=2, max_size=4)),
    st.tuples(
        st.just("fragmented-binary"), st.lists(st.binary(max_size=20_000), min_size=2, max_size=3)
    ),
    st.tuples(st.just("fragmented-pings"), st.lists(st.text(max_size=20), min_size=2, max_size=4)),
)


WELL_FORMED = {
    "text",
    "binary",
    "big",
    "ping",
    "fragmented",
    "fragmented-binary",
    "fragmented-pings",
}


def encode(items: list[tuple[str, object]]) -> tuple[bytes, list[str | bytes], int]:
    """Client bytes, the messages they carry, and how many pings."""
    wire, expected, pings = b"", [], 0
    for kind, value in items:
        if kind == "text":
            assert isinstance(value, str)
            wire += client_frame(0x1, value.encode())
            expected.append(value)
        elif kind == "binary":
            assert isinstance(value, bytes)
            wire += client_frame(0x2, value)
            expected.append(value)
        elif kind == "big":
            assert isinstance(value, int)
            payload = os.urandom(value)
            wire += client_frame(0x2, payload)
            expected.append(payload)
        elif kind == "ping":
            assert isinstance(value, bytes)
            wire += client_frame(0x9, value)
            pings += 1
        elif kind == "fragmented-binary":
            assert isinstance(value, list)
            for index, part in enumerate(value):
                opcode = 0x2 if index == 0 else 0x0
                wire += client_frame(opcode, part, fin=index == len(value) - 1)
            expected.append(b"".join(value))
        else:  # text fragments, with a ping between fragments when "-pings"
            assert isinstance(value, list)
            parts = [part.encode() for part in value]
            for index, part in enumerate(parts):
                opcode = 0x1 if index == 0 else 0x0
                wire += client_frame(opcode, part, fin=index == len(parts) - 1)
                if kind == "fragmented-pings" and index < len(parts) - 1:
                    wire += client_frame(0x9, b"p")
                    pings += 1
            expected.append("".join(value))
    return wire, expected, pings


def feed(
    wire: bytes, cuts: list[int], fast: bool, deflate: bool = False
) -> tuple[list[str | bytes], FrameConnection]:
    """``wire`` in pieces cut at ``cuts``, as a driver feeds it: once the messages
    of a piece are handled, whatever waited for them is resumed. ``deflate``:
    permessage-deflate was negotiated (no parameters)."""
    from axeom.ws._deflate import rebuild

    frames = FrameConnection(
        max_message_size=LIMIT,
        backpressure_limit=1 << 30,
        extensions=[rebuild([])] if deflate else None,
    )
    frames._fast_receive = fast
    received: list[str | bytes] = []
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    for start, end in itertools.pairwise(points):
        received += frames.receive(wire[start:end])
        while frames.waiting:
            received += frames.receive(b"")
    return received, frames


@settings(max_examples=150, deadline=None)
@given(st.lists(message, max_size=12), st.lists(st.integers(min_value=0), max_size=20))
def test_fast_path_matches_the_protocol(items: list[tuple[str, object]], cuts: list[int]) -> None:
    """Any mix of frames, split anywhere, gives the same messages and pongs either way."""
    wire, expected, pings = encode(items)
    fast, fast_frames = feed(wire, cuts, fast=True)
    slow, slow_frames = feed(wire, cuts, fast=False)
    assert fast == expected
    assert slow == expected
    output = b"".join(fast_frames.take_output())
    assert output == b"".join(slow_frames.take_output())
    assert count_pongs(output) == pings
    assert fast_frames.is_open


def count_pongs(output: bytes) -> int:
    """Server frames are unmasked and short here: walk the headers."""
    count, pos = 0, 0
    while pos < len(output):
        count += output[pos] == 0x8A
        pos += 2 + (output[pos + 1] & 0x7F)
    return count


@given(st.integers(min_value=0, max_value=40))
def test_invalid_utf8_fails_1007_on_either_path(cut: int) -> None:
    """Invalid UTF-8 in a text frame closes with 1007 on the fast path too."""
    wire = client_frame(0x1, b"ok") + client_frame(0x1, b"bad \xff") + client_frame(0x1, b"x")
    for fast in (True, False):
        received, frames = feed(wire, [cut], fast)
        assert received == ["ok"]
        assert frames.close_status()[0] == 1007
        assert frames.eof


def test_oversized_frame_fails_1009() -> None:
    """A frame over the limit closes with 1009."""
    frames = FrameConnection(max_message_size=100, backpressure_limit=1 << 20)
    assert frames.receive(client_frame(0x2, b"x" * 101)) == []
    assert frames.close_status()[0] == 1009


def test_compressed_route_reports_1007_before_a_following_close() -> None:
    """With deflate negotiated, invalid UTF-8 followed by a close in one read is 1007."""
    from axeom.ws._deflate import rebuild

    offer = [("client_max_window_bits", None)]
    frames = FrameConnection(
        max_message_size=LIMIT, backpressure_limit=1 << 20, extensions=[rebuild(offer)]
    )
    wire = client_frame(0x1, b"fine") + client_frame(0x1, b"\xff") + client_frame(0x8, b"\x03\xe8")
    assert frames.receive(wire) == ["fine"]
    assert frames.waiting  # until "fine" is handled
    assert frames.receive(b"") == []
    assert frames.close_status()[0] == 1007


# What may end the socket after a message in the same read, and the close code.
ENDINGS = {
    "close": (client_frame(0x8, b"\x03\xe8"), 1000),
    "rsv2": (client_frame(0x21, b"x"), 1002),  # 0x20: RSV2, on a text frame
    "reserved-opcode": (client_frame(0x3, b"x"), 1002),
    "invalid-utf8": (client_frame(0x1, b"\xff"), 1007),
    "invalid-utf8-in-fragments": (
        client_frame(0x1, b"ok", fin=False) + client_frame(0x0, b"\xed\xa0\x80"),
        1007,
    ),
    "orphan-continuation": (client_frame(0x0, b"x"), 1002),
    "over-the-limit": (client_frame(0x2, b"x" * (LIMIT + 1)), 1009),
    "ping-too-long": (client_frame(0x9, b"x" * 126), 1002),
}


# Compressed "ok \xed\xa0\x80" (a surrogate), raw deflate without its 00 00 ff ff tail.
COMPRESSED_INVALID_UTF8 = client_frame(0x1, b"\xca\xcfVx\xbb\xa0\x01\x00", rsv1=True)


@pytest.mark.parametrize(
    ("ending", "code", "compressed"),
    [(ending, code, False) for ending, code in ENDINGS.values()]
    + [(ending, code, True) for ending, code in ENDINGS.values()]
    + [(COMPRESSED_INVALID_UTF8, 1007, True)],
    ids=[f"plain-{name}" for name in ENDINGS]
    + [f"deflate-{name}" for name in ENDINGS]
    + ["deflate-compressed-invalid-utf8"],
)
def test_answers_to_messages_before_the_end_leave_before_the_close_frame(
    ending: bytes, code: int, compressed: bool
) -> None:
    """A message, then in the same read a close or something that fails the socket:
    the message comes back with ``waiting`` set and the socket still open, so its
    handler's answer is queued before the close frame the resumed ``receive`` adds
    (RFC 6455 5.5.1; Autobahn 7.1.1 expects the echo, then the close)."""
    from axeom.ws._deflate import rebuild

    frames = FrameConnection(
        max_message_size=LIMIT,
        backpressure_limit=1 << 30,
        extensions=[rebuild([])] if compressed else None,
    )
    hello = client_frame(0x1, b"\xcaH\xcd\xc9\xc9\x07\x00", rsv1=True) if compressed else b""
    hello = hello or client_frame(0x1, b"hello")
    after = client_frame(0x9, b"unanswered") + client_frame(0x1, b"never read")
    assert frames.receive(hello + ending + after) == ["hello"]
    assert frames.waiting and frames.is_open
    frames.send("hello")
    assert frames.receive(b"") == []
    assert not frames.waiting
    output = b"".join(frames.take_output())
    close = output.index(b"\x88")
    assert close > 0  # the answer first
    assert int.from_bytes(output[close + 2 : close + 4], "big") == code
    assert b"unanswered" not in output
    assert frames.eof


def test_fragment_passing_the_limit_fails_1009_from_its_header() -> None:
    """The continuation that would take the message past the limit is refused as
    soon as its header arrives: none of its payload is waited for or kept."""
    frames = FrameConnection(max_message_size=1000, backpressure_limit=1 << 20)
    assert frames.receive(client_frame(0x2, b"x" * 990, fin=False)) == []
    header = client_frame(0x0, b"y" * 100_000)[:14]  # 127-length header + mask only
    assert frames.receive(header) == []
    assert frames.close_status()[0] == 1009
    assert frames.eof
    assert frames._message is None  # what had been assembled is released


def test_fragments_up_to_the_limit_make_one_message() -> None:
    """Exactly max_message_size over many fragments, split anywhere, is delivered."""
    payload = os.urandom(1000)
    wire = b"".join(
        client_frame(0x2 if i == 0 else 0x0, payload[i : i + 100], fin=i == 900)
        for i in range(0, 1000, 100)
    )
    for cut in range(0, len(wire), 37):
        frames = FrameConnection(max_message_size=1000, backpressure_limit=1 << 20)
        assert frames.receive(wire[:cut]) + frames.receive(wire[cut:]) == [payload]
        assert frames.is_open


@pytest.mark.parametrize(
    "wire",
    [
        client_frame(0x0, b"orphan"),  # a continuation with no message started
        client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"),  # new message inside one
        client_frame(0x2, b"a", fin=False) + client_frame(0x2, b"b", fin=False),
        client_frame(0x1, b"a", fin=False) + client_frame(0x0, b"b", rsv1=True),  # RSV1, no deflate
    ],
)
def test_out_of_sequence_fragments_fail_1002_on_either_path(wire: bytes) -> None:
    """Fragment sequencing errors close with 1002, as the Protocol does."""
    for fast in (True, False):
        for cut in (len(wire), 3, len(wire) - 2):
            received, frames = feed(wire, [cut], fast)
            assert received == []
            assert frames.close_status()[0] == 1002, (fast, cut)


@pytest.mark.parametrize(
    "wire",
    [
        # a new message inside a fragmented one, and over the limit
        client_frame(0x2, b"a", fin=False) + client_frame(0x2, b"z" * (LIMIT + 1)),
        # a continuation with no message started, and over the limit
        client_frame(0x0, b"z" * (LIMIT + 1)),
        # a continuation taking the message over the limit
        client_frame(0x2, b"z" * (LIMIT - 5), fin=False) + client_frame(0x0, b"z" * 6),
    ],
    ids=["new-message-inside-one", "orphan-continuation", "continuation"],
)
def test_a_frame_over_the_limit_fails_1009_first_on_either_path(wire: bytes) -> None:
    """Size is checked before sequence on both paths (the Protocol's order): a frame
    that breaks both rules closes with 1009, however the reads split."""
    for fast in (True, False):
        for cut in (len(wire), 3, 20):
            received, frames = feed(wire, [cut], fast)
            assert received == []
            assert frames.close_status()[0] == 1009, (fast, cut)


@given(st.integers(min_value=0, max_value=60))
def test_invalid_utf8_across_fragments_fails_1007_on_either_path(cut: int) -> None:
    """A text message whose UTF-8 breaks across fragments is 1007, wherever the reads split."""
    wire = client_frame(0x1, b"ok \xc3", fin=False) + client_frame(0x0, b"(not a continuation)")
    truncated = client_frame(0x1, b"ok \xc3", fin=False) + client_frame(0x0, b"", fin=True)
    for data in (wire, truncated):
        for fast in (True, False):
            received, frames = feed(data, [cut], fast)
            assert received == []
            assert frames.close_status()[0] == 1007


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
def test_close_inside_a_fragmented_message_is_a_clean_close(compressed: bool) -> None:
    """RFC 6455 section 5.4 lets control frames, close included, come between
    fragments: the client's close is answered; the partial message is dropped.
    The same for a compressed message (read by the Protocol, which took it for 1002)."""
    from axeom.ws._deflate import rebuild

    frames = FrameConnection(
        max_message_size=LIMIT,
        backpressure_limit=1 << 20,
        extensions=[rebuild([])] if compressed else None,
    )
    if compressed:  # "part" deflated, in two frames
        start = client_frame(0x1, b"\x2a\x48", fin=False, rsv1=True)
        start += client_frame(0x0, b"\x2c\x2a\x01\x00", fin=False)
    else:
        start = client_frame(0x1, b"pa", fin=False) + client_frame(0x0, b"rt", fin=False)
    assert frames.receive(start) == []
    assert frames.receive(client_frame(0x8, b"\x03\xe8bye")) == []
    assert frames.close_status() == (1000, "bye")
    assert b"".join(frames.take_output()) == b"\x88\x05\x03\xe8bye"  # echoed, not 1002


def test_compressed_message_inside_a_fragmented_one_fails_1002() -> None:
    """With deflate negotiated, a compressed message may not start between the
    fragments of an uncompressed one (the Protocol never saw that one begin)."""
    from axeom.ws._deflate import rebuild

    frames = FrameConnection(
        max_message_size=LIMIT, backpressure_limit=1 << 20, extensions=[rebuild([])]
    )
    wire = client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"\x4b\x04\x00", rsv1=True)
    assert frames.receive(wire) == []
    assert frames.close_status()[0] == 1002


@pytest.mark.parametrize("size", [125, 126, 65535, 65536])
@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
def test_buffered_counts_exactly_the_bytes_written(size: int, kind: str, compressed: bool) -> None:
    """The outbox count (``ws.buffered_amount``) is the frame as written: payload
    and its 2-, 4- or 10-byte header; compressed, the compressed frame."""
    from axeom.ws._deflate import rebuild

    extensions = [rebuild([])] if compressed else None
    frames = FrameConnection(
        max_message_size=LIMIT, backpressure_limit=1 << 20, extensions=extensions
    )
    data: str | bytes = "x" * size if kind == "text" else os.urandom(size)
    frames.send(data)
    counted = frames.buffered
    written = b"".join(frames.take_output())
    assert counted == len(written)
    if not compressed:
        assert counted == size + (2 if size < 126 else 4 if size < 65536 else 10)


# -- malformed streams: the fast path fails exactly as the Protocol alone ---------

BAD_OPCODES = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]
CLOSE_CODES = [1000, 1001, 1003, 1004, 1005, 1006, 1011, 1015, 999, 2999, 3000, 4999, 5000]


def raw_frame(
    first: int, payload: bytes, *, masked: bool = True, length_bytes: int | None = None
) -> bytes:
    """Any frame: ``first`` is the whole first byte (FIN, RSV bits, opcode);
    ``length_bytes`` (2 or 8) forces a longer length encoding than needed."""
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if length_bytes == 8 or (length_bytes is None and n >= 65536):
        head = bytes([first, mask_bit | 127]) + n.to_bytes(8, "big")
    elif length_bytes == 2 or (length_bytes is None and n >= 126):
        head = bytes([first, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | n])
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


small = st.binary(max_size=40)
text_bytes = st.one_of(st.text(max_size=20).map(str.encode), small)  # often invalid UTF-8
malformed_item = st.one_of(
    st.tuples(st.just("raw-text"), text_bytes),
    st.tuples(st.just("raw-binary"), small),
    st.tuples(st.just("bad-opcode"), st.sampled_from(BAD_OPCODES), small),
    st.tuples(st.just("rsv"), st.sampled_from([0x40, 0x20, 0x10]), st.sampled_from([1, 2, 0, 9])),
    st.tuples(st.just("unmasked"), st.sampled_from([0x81, 0x82, 0x89, 0x01])),
    st.tuples(st.just("long-length"), st.sampled_from([0x81, 0x82, 0x89]), st.sampled_from([2, 8])),
    st.tuples(st.just("close"), st.sampled_from(CLOSE_CODES), text_bytes),
    st.tuples(st.just("close-1-byte"), st.just(b"\x03")),
    st.tuples(st.just("long-ping"), st.integers(min_value=0, max_value=130)),
    st.tuples(st.just("fragmented-ping"), small),
    st.tuples(st.just("fragments"), st.booleans(), st.lists(text_bytes, min_size=1, max_size=4)),
    st.tuples(st.just("unfinished"), st.booleans(), text_bytes),  # a first fragment only
    st.tuples(st.just("orphan"), small),  # a continuation with no message
    st.tuples(st.just("oversized"), st.sampled_from([0x82, 0x02]), st.integers(1, 40)),
    st.tuples(st.just("over-in-fragments"), st.booleans(), st.integers(-2, 2)),
)


def encode_malformed(item: tuple[object, ...]) -> bytes:
    kind, *args = item
    if kind in ("raw-text", "raw-binary"):
        (payload,) = args
        return raw_frame(0x81 if kind == "raw-text" else 0x82, payload)
    if kind == "bad-opcode":
        opcode, payload = args
        return raw_frame(0x80 | opcode, payload)
    if kind == "rsv":
        bit, opcode = args
        return raw_frame(0x80 | bit | opcode, b"rsv")
    if kind == "unmasked":
        (first,) = args
        return raw_frame(first, b"plain", masked=False)
    if kind == "long-length":
        first, length_bytes = args
        return raw_frame(first, b"hi", length_bytes=length_bytes)
    if kind == "close":
        code, reason = args
        return raw_frame(0x88, code.to_bytes(2, "big") + reason[:100])
    if kind == "close-1-byte":
        return raw_frame(0x88, args[0])
    if kind == "long-ping":
        return raw_frame(0x89, b"p" * args[0])  # over 125 bytes is a protocol error
    if kind == "fragmented-ping":
        return raw_frame(0x09, args[0])  # a control frame without FIN
    if kind == "fragments":
        text, parts = args
        return b"".join(
            raw_frame(
                (0x80 if i == len(parts) - 1 else 0) | ((0x1 if text else 0x2) if i == 0 else 0),
                part,
            )
            for i, part in enumerate(parts)
        )
    if kind == "unfinished":
        text, payload = args
        return raw_frame(0x1 if text else 0x2, payload)
    if kind == "orphan":
        return raw_frame(0x80, args[0])
    if kind == "over-in-fragments":  # two halves of a message around the limit
        text, extra = args
        half = b"z" * (LIMIT // 2)
        return raw_frame(0x1 if text else 0x2, half) + raw_frame(0x80, half + b"z" * extra)
    first, extra = args  # "oversized": final or first fragment, past the limit
    return raw_frame(first, b"z" * (LIMIT + extra))


def frame_heads(wire: bytes) -> list[tuple[int, int]]:
    """(first byte, end) of each frame of ``wire`` (complete frames only)."""
    heads, pos = [], 0
    while pos < len(wire):
        first, length, header = wire[pos], wire[pos + 1] & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(wire[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, header = int.from_bytes(wire[pos + 2 : pos + 10], "big"), 10
        pos += header + (4 if wire[pos + 1] & 0x80 else 0) + length
        heads.append((first, pos))
    return heads


def close_inside_a_message(wire: bytes) -> bool:
    """A close frame comes after a fragmented message began and before it ended."""
    open_message = False
    for first, _ in frame_heads(wire):
        opcode, fin = first & 0x0F, first & 0x80
        if opcode == 0x8 and open_message:
            return True
        if opcode in (0x1, 0x2):
            open_message = not fin
        elif opcode == 0x0 and fin:
            open_message = False
    return False


def outcome(wire: bytes, cuts: list[int], fast: bool, deflate: bool = False) -> tuple[object, ...]:
    """What one path made of ``wire``: messages, close code, state, and the frames
    it wrote with close reasons left out (the two paths word them differently)."""
    received, frames = feed(wire, cuts, fast, deflate)
    written = []
    output = b"".join(frames.take_output())
    pos = 0
    while pos < len(output):
        opcode, length, header = output[pos] & 0x0F, output[pos + 1] & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(output[pos + 2 : pos + 4], "big"), 4
        payload = output[pos + header : pos + header + length]
        written.append((opcode, payload[:2] if opcode == 0x8 else payload))
        pos += header + length
    code = frames.close_status()[0] if not frames.is_open else None
    return received, code, frames.eof, frames.is_open, written


@settings(max_examples=300, deadline=None)
@example([("unfinished", False, b""), ("oversized", 0x82, 1)], [])
@example([("raw-text", b"\x80"), ("ping", b"")], [])
@given(
    st.lists(st.one_of(message, malformed_item), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_fast_path_fails_like_the_protocol(
    items: list[tuple[object, ...]], cuts: list[int]
) -> None:
    """Malformed streams (bad opcodes, reserved bits, unmasked frames, long length
    encodings, invalid UTF-8, bad close codes, control frames too long or
    fragmented, fragmentation errors, messages over the limit in one frame or
    across fragments), mixed with good
    frames and split anywhere: the same messages, close code and frames written
    whether the fast path runs or the Protocol sees every frame, one at a time."""
    wire = b"".join(
        encode([item])[0] if item[0] in WELL_FORMED else encode_malformed(item)  # type: ignore[list-item]
        for item in items
    )
    # Deliberately unlike the Protocol, which fails such a socket with 1002:
    # test_close_inside_a_fragmented_message_is_a_clean_close.
    assume(not close_inside_a_message(wire))
    # The reference gets one frame per call, as the fast path hands frames over:
    # given several at once, the Protocol would answer a ping that follows the
    # frame that fails the socket before the failure is seen.
    ends = [end for _, end in frame_heads(wire)]
    assert outcome(wire, cuts, fast=True) == outcome(wire, ends, fast=False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_large_frames_read_through_a_reused_buffer(cuts: list[int], text: bool) -> None:
    """Frames larger than STREAM_ABOVE, split anywhere and fed as views of one buffer
    that the next read overwrites, give their messages intact (what is kept is copied)."""
    big = ("é" * (STREAM_ABOVE // 2 + 7)).encode() if text else bytes(range(256)) * 300
    small = b"after"
    wire = client_frame(0x1 if text else 0x2, big) + client_frame(0x2, small)
    frames = FrameConnection(max_message_size=1 << 20, backpressure_limit=1 << 30)
    scratch = bytearray(len(wire))
    received: list[str | bytes] = []
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    for start, end in itertools.pairwise(points):
        scratch[: end - start] = wire[start:end]
        received += frames.receive(memoryview(scratch)[: end - start])  # type: ignore[arg-type]
        scratch[:] = bytes(len(scratch))  # the next read overwrites it
    assert received == [big.decode() if text else big, small]


def test_many_small_frames_are_taken_as_few_buffers() -> None:
    """Past JOIN_LIMIT, runs of small frames are joined: 100,000 tiny frames are a
    handful of buffers for the gathering write, not two each (a write takes at most
    IOV_MAX buffers and the rest is recomputed, so writing them was quadratic);
    a large payload is still passed as it is, never copied."""
    frames = FrameConnection(max_message_size=1 << 20, backpressure_limit=1 << 30)
    big = os.urandom(1 << 20)
    for _ in range(50_000):
        frames.send("x")
    frames.send(big)
    for _ in range(50_000):
        frames.send(b"y")
    chunks = frames.take_output()
    tiny_text, tiny_binary = b"\x81\x01x", b"\x82\x01y"
    big_frame_head = b"\x82\x7f" + len(big).to_bytes(8, "big")
    assert b"".join(chunks) == tiny_text * 50_000 + big_frame_head + big + tiny_binary * 50_000
    assert len(chunks) <= 8
    assert any(chunk is big for chunk in chunks)


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (b"\x83\x80", 1002),  # a reserved opcode
        (b"\x81\x05", 1002),  # unmasked
        (b"\x82\xff" + (LIMIT + 1).to_bytes(8, "big"), 1009),  # no mask yet, length over the limit
        (b"\x82\xfe" + (LIMIT // 2).to_bytes(2, "big") + b"ma", None),  # nothing wrong yet
    ],
)
@pytest.mark.parametrize("after_a_message", [False, True])
def test_a_header_failing_before_it_is_whole_fails_at_once(
    head: bytes, code: int | None, after_a_message: bool
) -> None:
    """A frame whose first header bytes already fail it (as the Protocol alone
    decides from them) is failed then, not when the rest of its header comes:
    a peer that stops there is closed at once, not left to an idle timeout.
    Behind a message of the same bytes, the failure waits for its answers."""
    first = client_frame(0x1, b"before") if after_a_message else b""
    received, frames = feed(first + head, [], fast=True)
    assert received == (["before"] if after_a_message else [])
    assert (None if frames.is_open else frames.close_status()[0]) == code


# -- byte-mutated streams: no structure promised at all ------------------------------

FRAME_MUTATIONS = st.sampled_from(["flip", "set", "insert", "delete", "truncate"])


def frame_ends(wire: bytes) -> list[int]:
    """Where each frame of ``wire`` ends as its headers say (the last one
    possibly past the end of ``wire``): any bytes read as frame headers."""
    ends, pos = [], 0
    while pos < len(wire):
        second = wire[pos + 1] if pos + 1 < len(wire) else 0
        length, header = second & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(wire[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, header = int.from_bytes(wire[pos + 2 : pos + 10], "big"), 10
        pos += header + (4 if second & 0x80 else 0) + length
        ends.append(pos)
    return ends


def completed(wire: bytes) -> bytes:
    """``wire`` with its last frame made whole (padded with zeros), or cut
    before it if it announces more than a message may hold: the fast path
    checks a frame from its header and the Protocol some only at its end, so
    their verdicts are compared on whole frames (a peer that stops inside a
    frame has sent nothing that either path could act on differently)."""
    for _ in range(3):  # the header first, then the payload its length names
        ends = frame_ends(wire)
        if not ends or ends[-1] <= len(wire):
            return wire
        if ends[-1] - len(wire) > 2 * LIMIT:
            return wire[: ends[-2] if len(ends) > 1 else 0]
        wire += bytes(ends[-1] - len(wire))
    return wire


def close_inside_a_message_anywhere(wire: bytes) -> bool:
    """``close_inside_a_message`` for broken streams too."""
    open_message, pos = False, 0
    for end in frame_ends(wire):
        first = wire[pos]  # whole frames only: see ``completed``
        opcode, fin = first & 0x0F, first & 0x80
        if opcode == 0x8 and open_message:
            return True
        if opcode in (0x1, 0x2):
            open_message = not fin
        elif opcode == 0x0 and fin:
            open_message = False
        pos = end
    return False


compressed_item = st.tuples(st.just("compressed"), st.text(max_size=60), st.booleans())


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Good and malformed frames (compressed ones among them: a socket that did
    not negotiate compression fails them), then bytes flipped, overwritten,
    inserted, deleted or the stream cut short, anywhere (headers included)."""
    items = draw(
        st.lists(st.one_of(message, malformed_item, compressed_item), min_size=1, max_size=5)
    )
    deflater = Deflater()
    wire = bytearray(
        b"".join(
            encode([item])[0]  # type: ignore[list-item]
            if item[0] in WELL_FORMED
            else deflater.frame(item[1].encode(), 0x1 if item[2] else 0x2)  # type: ignore[union-attr]
            if item[0] == "compressed"
            else encode_malformed(item)
            for item in items
        )
    )
    for mutation in draw(st.lists(FRAME_MUTATIONS, min_size=1, max_size=3)):
        if not wire:
            break
        at = draw(st.integers(0, min(len(wire) - 1, 200)))  # headers live near the start
        at = at if draw(st.booleans()) else draw(st.integers(0, len(wire) - 1))
        if mutation == "flip":
            wire[at] ^= 1 << draw(st.integers(0, 7))
        elif mutation == "set":
            wire[at] = draw(st.integers(0, 255))
        elif mutation == "insert":
            wire.insert(at, draw(st.integers(0, 255)))
        elif mutation == "delete":
            del wire[at]
        else:
            del wire[at:]
    return completed(bytes(wire))


@pytest.mark.timeout(120)  # about 3 s alone; generous for a loaded machine
@settings(max_examples=200, deadline=None, derandomize=True)
@example(b"\x81\xff" + b"\xff" * 8 + b"mask", [1], False)  # a 2**64 - 1 length
@example(b"\x82\xff\x00\x00\x00\x00\x00\x01\x11\x70mask", [], True)  # 8-byte length over the limit
@given(mutated_streams(), st.lists(st.integers(min_value=0), max_size=6), st.booleans())
def test_mutated_streams_fail_like_the_protocol(
    wire: bytes, cuts: list[int], deflate: bool
) -> None:
    """Any bytes at all, split anywhere, with or without permessage-deflate:
    the fast path delivers the same messages before the same close code (and
    writes the same frames) as the Protocol fed one frame at a time."""
    assume(not close_inside_a_message_anywhere(wire))  # see test_fast_path_fails_like_the_protocol
    reference = outcome(wire, frame_ends(wire), fast=False, deflate=deflate)
    assert outcome(wire, cuts, fast=True, deflate=deflate) == reference


# -- send_text: a text message already encoded as UTF-8 -----------------------------


@pytest.mark.parametrize("size", [3, 125, 126, 65536])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
def test_send_text_writes_the_frame_send_writes_for_the_str(size: int, compressed: bool) -> None:
    """``send_text(utf8)`` (``ws.send`` of a model, Struct or dataclass: JSON
    bytes) puts on the wire exactly the text frame ``send(str)`` does, with the
    same count for backpressure; the bytes are not decoded and encoded again."""
    from axeom.ws._deflate import rebuild

    text = "é" * (size // 2) + "x" * (size % 2)  # ``size`` bytes of UTF-8, not ASCII

    def connection() -> FrameConnection:
        extensions = [rebuild([])] if compressed else None
        return FrameConnection(
            max_message_size=LIMIT, backpressure_limit=1 << 20, extensions=extensions
        )

    by_str, by_bytes = connection(), connection()
    assert by_str.send(text) == by_bytes.send_text(text.encode()) == SendStatus.QUEUED
    assert by_bytes.buffered == by_str.buffered
    assert by_bytes.take_output() == by_str.take_output()


def test_send_text_statuses_match_send() -> None:
    """Over the limit it is dropped, at the limit it reports backpressure, after
    a close it is refused: as ``send``."""
    frames = FrameConnection(max_message_size=LIMIT, backpressure_limit=10)
    assert frames.send_text(b"12345") == SendStatus.QUEUED
    assert frames.send_text(b"12345") == SendStatus.BACKPRESSURE
    assert frames.send_text(b"12345") == SendStatus.DROPPED
    assert frames.wants_drain
    frames.close(1000, "")
    assert frames.send_text(b"1") == SendStatus.CLOSED
