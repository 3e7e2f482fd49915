"""The frame layer's fast path agrees with the websockets Protocol on every input."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axeom.ws._frames import FrameConnection
from tests._wsraw import client_frame

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


def feed(wire: bytes, cuts: list[int], fast: bool) -> tuple[list[str | bytes], FrameConnection]:
    frames = FrameConnection(max_message_size=LIMIT, backpressure_limit=1 << 30)
    frames._fast_receive = fast
    received: list[str | bytes] = []
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    for start, end in itertools.pairwise(points):
        received += frames.receive(wire[start:end])
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
    assert frames.close_status()[0] == 1007


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


def test_close_inside_a_fragmented_message_is_a_clean_close() -> None:
    """RFC 6455 section 5.4 lets control frames, close included, come between
    fragments: the client's close is answered; the partial message is dropped."""
    frames = FrameConnection(max_message_size=LIMIT, backpressure_limit=1 << 20)
    wire = client_frame(0x1, b"part", fin=False) + client_frame(0x8, b"\x03\xe8bye")
    assert frames.receive(wire) == []
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
