"""The frame layer's fast path agrees with the websockets Protocol on every input."""

from __future__ import annotations

import itertools
import os

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
        else:
            assert isinstance(value, list)
            parts = [part.encode() for part in value]
            for index, part in enumerate(parts):
                opcode = 0x1 if index == 0 else 0x0
                wire += client_frame(opcode, part, fin=index == len(parts) - 1)
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


def test_oversized_frame_goes_to_the_protocol_and_fails_1009() -> None:
    """A frame over the limit is left to the Protocol, which closes with 1009."""
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
