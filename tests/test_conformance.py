"""RFC 6455 and RFC 7692 conformance of a real ``axeom run`` tree, case by case.

The cases follow the sections of the Autobahn testsuite (framing, pings,
reserved bits, opcodes, fragmentation, UTF-8, close, limits, compression,
handshake), each one a test id. A raw socket on 127.0.0.1 sends hand-built,
masked client frames, broken ones included, and the exact answer is checked:
the echo, the pong, or the close code followed by the end of the TCP
connection. The server is one process tree per module, with two workers (the
acceptor hands every socket over) and with none. Compressed answers are
inflated here with zlib alone, with the window and context rules the server
announced in its 101, so a server that broke its own announcement fails.

The engine's frame layer has its own tests (test_frames, test_ws_handshake);
these are the same rules seen from a client, through the hand-off.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
import trio

from tests._processes import Server, running_axeom
from tests._wsraw import KEY, RawClient, upgrade_request

APP = "tests/apps/conformance_app.py:app"
LIMIT = 2**20  # the app's max_message_size
REPLY_TIMEOUT = 10.0  # for any one answer: generous, the machine may be loaded

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FIN, RSV1, RSV2, RSV3, MASK = 0x80, 0x40, 0x20, 0x10, 0x80
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: removed by the sender, added back
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3: appended to the key

OPEN = "open"  # after the replies, the socket still answers and closes cleanly
CLOSED = "closed"  # after the replies, the server ends the TCP connection, no frame

Frame = tuple[int, bytes]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=[2, 0], ids=["workers-2", "workers-0"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One tree for the whole module: the cases only ever open new sockets."""
    with running_axeom(APP, "--port", "0", "--workers", str(request.param)) as running:
        yield running


# -- frames, by hand ----------------------------------------------------------


def masked(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (one big-integer XOR: fast at 1 MiB)."""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame; ``rsv``: the reserved bits to set (RSV1..RSV3)."""
    head = bytes([(FIN if fin else 0) | rsv | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([MASK | n])
    elif n < 65536:
        head += struct.pack("!BH", MASK | 126, n)
    else:
        head += struct.pack("!BQ", MASK | 127, n)
    mask = os.urandom(4)
    return head + mask + masked(payload, mask)


def fragments(opcode: int, parts: list[bytes], *, rsv: int = 0) -> bytes:
    """One message as frames: ``opcode`` then continuations, FIN on the last."""
    return b"".join(
        frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1, rsv=rsv if i == 0 else 0)
        for i, part in enumerate(parts)
    )


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def split(data: bytes, size: int) -> tuple[bytes, ...]:
    """``data`` as writes of ``size`` bytes (1: byte by byte)."""
    return tuple(data[i : i + size] for i in range(0, len(data), size))


def payload(kind: str, size: int) -> bytes:
    """A reproducible payload: ASCII for text, every byte value for binary."""
    if kind == "text":
        return (b"abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 1))[:size]
    return random.Random(size).randbytes(size)


def window_probe(seed: int) -> bytes:
    """Incompressible data with one block repeated at growing distances (300 B to
    12 KiB): a compressor whose window is larger than it announced refers to an
    earlier copy that a decompressor with the announced window cannot reach."""
    rng = random.Random(seed)
    block = rng.randbytes(200)
    parts = [block]
    for gap in (300, 700, 1500, 3000, 6000, 12000):
        parts += [rng.randbytes(gap), block]
    return b"".join(parts)


class Compressor:
    """A client's permessage-deflate side, with zlib alone (RFC 7692 7.2.1)."""

    def __init__(self, window: int = 15, takeover: bool = True) -> None:
        self.window, self.takeover = window, takeover
        self.zlib = zlib.compressobj(wbits=-window)

    def compress(self, data: bytes) -> bytes:
        out = self.zlib.compress(data) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(DEFLATE_TAIL)
        if not self.takeover:
            self.zlib = zlib.compressobj(wbits=-self.window)
        return out[: -len(DEFLATE_TAIL)]

    def message(self, opcode: int, data: bytes, parts: int = 1) -> bytes:
        """One compressed message in ``parts`` frames (RSV1 on the first only)."""
        body = self.compress(data)
        step = -(-len(body) // parts) or 1
        pieces = [body[i * step : (i + 1) * step] for i in range(parts)]
        return fragments(opcode, pieces, rsv=RSV1)


# -- one case -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What a client sends after the 101 and what the server must answer.

    ``writes``: each one TCP write. ``replies``: the frames the server must send
    back, in order (compressed ones compared inflated). ``then``: ``OPEN``, a
    close code (the server's next frame is a close with it, then the TCP
    connection ends), or ``CLOSED`` (the connection ends with no frame).
    """

    writes: tuple[bytes, ...]
    replies: tuple[Frame, ...] = ()
    then: int | str = OPEN
    path: str = "/echo"
    offer: str | None = None  # Sec-WebSocket-Extensions sent
    answer: str | None = None  # Sec-WebSocket-Extensions the 101 must carry
    with_request: bytes = b""  # sent in the handshake's own write
    eof: bool = False  # the client ends its side of TCP after the writes


def echo(opcode: int, data: bytes, writes: tuple[bytes, ...] | None = None) -> Case:
    """A message the server must echo, sent whole unless ``writes`` says how."""
    return Case(writes or (frame(opcode, data),), ((opcode, data),))


def fails(code: int, wire: bytes, before: tuple[Frame, ...] = ()) -> Case:
    """``wire`` breaks a rule: the server answers ``before``, then closes with ``code``."""
    return Case((wire,), before, code)


def shown(item: Frame) -> tuple[int, int, bytes, str]:
    """A frame as an assertion shows it: opcode, length, start, digest."""
    opcode, data = item
    return opcode, len(data), data[:40], hashlib.sha1(data).hexdigest()[:12]


class Inflater:
    """Inflates the server's compressed messages with the window and context
    rules its 101 announced (RFC 7692 7.1.1, 7.1.2)."""

    def __init__(self, answer: str) -> None:
        params = [p.strip() for p in answer.split(";")[1:]]
        self.takeover = "server_no_context_takeover" not in params
        self.window = 15
        for param in params:
            name, _, value = param.partition("=")
            if name == "server_max_window_bits":
                self.window = int(value)
        self.zlib = zlib.decompressobj(wbits=-self.window)

    def inflate(self, data: bytes) -> bytes:
        if not self.takeover:
            self.zlib = zlib.decompressobj(wbits=-self.window)
        return self.zlib.decompress(data + DEFLATE_TAIL)


def accept(key: str) -> str:
    """Sec-WebSocket-Accept for ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def header(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


async def next_frame(client: RawClient, inflater: Inflater | None) -> Frame:
    """The server's next frame, inflated if compressed; (-1, b"") at EOF."""
    with trio.fail_after(REPLY_TIMEOUT):
        opcode, data = await client.read_frame()
    if client.rsv1:
        assert inflater is not None, "RSV1 set without permessage-deflate negotiated"
        assert opcode in (TEXT, BINARY), f"RSV1 on a frame of opcode {opcode}"
        data = inflater.inflate(data)
    elif inflater is not None and opcode in (TEXT, BINARY):
        raise AssertionError("an uncompressed message on a permessage-deflate socket")
    return opcode, data


async def send_writes(client: RawClient, case: Case, done: trio.Event) -> None:
    """The case's writes, in order; once the server is expected to close, a
    write it refused (it stopped reading) ends them."""
    try:
        for data in case.writes:
            await client.send(data)
        if case.eof:
            await client.stream.send_eof()
    except trio.BrokenResourceError:
        if case.then == OPEN:
            raise
    finally:
        done.set()


async def assert_tcp_closed(client: RawClient, *, clean: bool) -> None:
    """The server ended the TCP connection: a FIN, or (``clean`` False, when the
    server closed with bytes of ours unread) a reset."""
    try:
        with trio.fail_after(REPLY_TIMEOUT):
            opcode, data = await client.read_frame()
    except trio.BrokenResourceError:
        if clean:
            raise
        return
    assert opcode == -1, f"a frame after the close: {shown((opcode, data))}"


async def run_case(port: int, case: Case) -> None:
    client = await RawClient.connect(port)
    try:
        extra = f"Sec-WebSocket-Extensions: {case.offer}\r\n" if case.offer else ""
        with trio.fail_after(REPLY_TIMEOUT):
            await client.send(upgrade_request(case.path, extra=extra) + case.with_request)
            status, head = await client.read_head()
        assert status == 101, head
        assert header(head, "upgrade") == "websocket"
        assert header(head, "sec-websocket-accept") == accept(KEY)
        assert header(head, "sec-websocket-extensions") == case.answer
        inflater = Inflater(case.answer) if case.answer else None
        async with trio.open_nursery() as nursery:
            sent = trio.Event()
            nursery.start_soon(send_writes, client, case, sent)
            for expected in case.replies:
                assert shown(await next_frame(client, inflater)) == shown(expected)
            if case.then == OPEN:
                with trio.fail_after(REPLY_TIMEOUT):
                    await sent.wait()
                await client.send(frame(PING, b"still open"))
                assert await next_frame(client, inflater) == (PONG, b"still open")
                await client.send(close_frame(1000, b"done"))
                assert await next_frame(client, inflater) == (CLOSE, b"\x03\xe8done")
                await assert_tcp_closed(client, clean=True)
            elif case.then == CLOSED:
                await assert_tcp_closed(client, clean=False)
            else:
                opcode, data = await next_frame(client, inflater)
                assert opcode == CLOSE, f"expected a close, got {shown((opcode, data))}"
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                assert code == case.then, data
                await assert_tcp_closed(client, clean=False)
            nursery.cancel_scope.cancel()
    finally:
        await client.aclose()


# -- 1. framing ---------------------------------------------------------------

SIZES = (0, 125, 126, 127, 128, 65535, 65536)


def framing_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for kind, opcode in (("text", TEXT), ("binary", BINARY)):
        for size in SIZES:
            cases[f"{kind}-{size}"] = echo(opcode, payload(kind, size))
        data = payload(kind, 65536)
        cases[f"{kind}-65536-in-997-byte-writes"] = echo(
            opcode, data, split(frame(opcode, data), 997)
        )
        cases[f"{kind}-{LIMIT}-at-the-limit"] = echo(opcode, payload(kind, LIMIT))
    for size, opcode in ((0, TEXT), (125, TEXT), (126, BINARY), (127, BINARY)):
        data = payload("text" if opcode == TEXT else "binary", size)
        cases[f"{size}-byte-by-byte"] = echo(opcode, data, split(frame(opcode, data), 1))
    mixed = [
        (TEXT, payload("text", n)) if i % 2 else (BINARY, payload("binary", n))
        for i, n in enumerate(SIZES)
    ]
    cases["7-messages-in-one-write"] = Case(
        (b"".join(frame(op, data) for op, data in mixed),), tuple(mixed)
    )
    # RFC 6455 orders a pong only among control frames, not against the
    # application's echoes: the ping goes first, so one order is right.
    cases["a-ping-and-messages-in-the-handshake-write"] = Case(
        (),
        ((PONG, b"p"), (TEXT, b"early"), (BINARY, b"\x00\x01")),
        with_request=frame(PING, b"p") + frame(TEXT, b"early") + frame(BINARY, b"\x00\x01"),
    )
    return cases


# -- 2. pings and pongs -------------------------------------------------------


def ping_cases() -> dict[str, Case]:
    ten = tuple(f"ping {i}".encode() for i in range(10))
    return {
        "ping-0": Case((frame(PING),), ((PONG, b""),)),
        "ping-text": Case((frame(PING, b"Hello, world!"),), ((PONG, b"Hello, world!"),)),
        "ping-binary": Case(
            (frame(PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),),
            ((PONG, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),),
        ),
        "ping-125": Case((frame(PING, b"\xfe" * 125),), ((PONG, b"\xfe" * 125),)),
        "ping-126-fails-1002": fails(1002, frame(PING, b"\xfe" * 126)),
        "ping-125-byte-by-byte": Case(
            split(frame(PING, b"\xfe" * 125), 1), ((PONG, b"\xfe" * 125),)
        ),
        "pong-unsolicited-0": Case((frame(PONG),)),
        "pong-unsolicited-with-payload": Case((frame(PONG, b"unsolicited"),)),
        "pong-unsolicited-then-ping": Case(
            (frame(PONG, b"unsolicited") + frame(PING, b"solicited"),), ((PONG, b"solicited"),)
        ),
        "10-pings-in-one-write": Case(
            (b"".join(frame(PING, p) for p in ten),), tuple((PONG, p) for p in ten)
        ),
        "10-pings-byte-by-byte": Case(
            split(b"".join(frame(PING, p) for p in ten), 1), tuple((PONG, p) for p in ten)
        ),
        "ping-fragmented-fails-1002": fails(
            1002, frame(PING, b"ping", fin=False) + frame(CONT, b"pong")
        ),
        "pong-fragmented-fails-1002": fails(
            1002, frame(PONG, b"ping", fin=False) + frame(CONT, b"pong")
        ),
    }


# -- 3. reserved bits, 4. reserved opcodes ---------------------------------------

HELLO = ((TEXT, b"hello"),)


def broken_after_hello(bad: bytes) -> Case:
    """Autobahn's shape: a good message, the bad frame, then a ping nobody answers."""
    return fails(1002, frame(TEXT, b"hello") + bad + frame(PING, b"unanswered"), HELLO)


def reserved_cases() -> dict[str, Case]:
    cases = {
        "rsv1-text-without-deflate-fails-1002": broken_after_hello(frame(TEXT, b"x", rsv=RSV1)),
        "rsv2-text-fails-1002": broken_after_hello(frame(TEXT, b"x", rsv=RSV2)),
        "rsv3-text-fails-1002": broken_after_hello(frame(TEXT, b"x", rsv=RSV3)),
        "rsv1-rsv2-text-byte-by-byte-fails-1002": Case(
            split(frame(TEXT, b"hello") + frame(TEXT, b"x", rsv=RSV1 | RSV2), 1), HELLO, 1002
        ),
        "rsv1-rsv3-binary-fails-1002": broken_after_hello(
            frame(BINARY, b"\x00\xff", rsv=RSV1 | RSV3)
        ),
        "rsv2-rsv3-ping-fails-1002": broken_after_hello(frame(PING, b"x", rsv=RSV2 | RSV3)),
        "rsv1-rsv2-rsv3-close-fails-1002": broken_after_hello(
            frame(CLOSE, b"\x03\xe8", rsv=RSV1 | RSV2 | RSV3)
        ),
    }
    for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        kind = "data" if opcode < 8 else "control"
        cases[f"{kind}-opcode-{opcode:#x}-fails-1002"] = broken_after_hello(
            frame(opcode, b"reserved")
        )
    return cases


# -- 5. fragmentation -----------------------------------------------------------


def fragmentation_cases() -> dict[str, Case]:
    two = fragments(TEXT, [b"fragment1", b"fragment2"])
    with_ping = (
        frame(TEXT, b"fragment1", fin=False) + frame(PING, b"between") + frame(CONT, b"fragment2")
    )
    five = [b"one ", b"two ", b"", b"four ", b"five"]
    five_with_pings = b"".join(
        frame(TEXT if i == 0 else CONT, part, fin=i == 4)
        + (frame(PING, b"%d" % i) if i < 4 else b"")
        for i, part in enumerate(five)
    )
    quarter = payload("binary", 65536)
    return {
        "text-in-2-fragments": Case((two,), ((TEXT, b"fragment1fragment2"),)),
        "text-in-2-fragments-byte-by-byte": Case(split(two, 1), ((TEXT, b"fragment1fragment2"),)),
        "binary-in-3-fragments-empty-middle": Case(
            (fragments(BINARY, [b"\x00\x01", b"", b"\x02"]),), ((BINARY, b"\x00\x01\x02"),)
        ),
        "binary-in-4-fragments-of-64k": Case(
            (fragments(BINARY, [quarter] * 4),), ((BINARY, quarter * 4),)
        ),
        "text-in-2-fragments-ping-between": Case(
            (with_ping,), ((PONG, b"between"), (TEXT, b"fragment1fragment2"))
        ),
        "text-in-2-fragments-ping-between-byte-by-byte": Case(
            split(with_ping, 1), ((PONG, b"between"), (TEXT, b"fragment1fragment2"))
        ),
        "text-in-5-fragments-pings-between": Case(
            (five_with_pings,),
            (*((PONG, b"%d" % i) for i in range(4)), (TEXT, b"".join(five))),
        ),
        "text-in-2-fragments-unsolicited-pong-between": Case(
            (frame(TEXT, b"a", fin=False) + frame(PONG, b"x") + frame(CONT, b"b"),),
            ((TEXT, b"ab"),),
        ),
        "continuation-fin-nothing-to-continue-fails-1002": fails(
            1002, frame(CONT, b"orphan") + frame(TEXT, b"after")
        ),
        "continuation-nothing-to-continue-fails-1002": fails(
            1002, frame(CONT, b"orphan", fin=False) + frame(CONT, b"orphan")
        ),
        "continuation-after-a-complete-message-fails-1002": fails(
            1002,
            two + frame(CONT, b"orphan", fin=False) + frame(TEXT, b"after"),
            ((TEXT, b"fragment1fragment2"),),
        ),
        "text-inside-a-fragmented-text-fails-1002": fails(
            1002, frame(TEXT, b"a", fin=False) + frame(TEXT, b"b")
        ),
        "binary-inside-a-fragmented-text-fails-1002": fails(
            1002, frame(TEXT, b"a", fin=False) + frame(BINARY, b"b", fin=False)
        ),
        "close-between-fragments-is-a-clean-close": Case(
            (frame(TEXT, b"part", fin=False) + close_frame(1000, b"bye"),),
            ((CLOSE, b"\x03\xe8bye"),),
            CLOSED,
        ),
    }


# -- 6. UTF-8 -------------------------------------------------------------------

VALID_UTF8 = {
    "greek": "κόσμε",
    "mixed": "Hello-µ@ßöäüàá-UTF-8!!",
    "boundaries": "\u0080\u07ff\u0800\uffff\U00010000\U0010ffff\ufffd",
}
INVALID_UTF8 = {
    "overlong-2-byte": b"\xc0\xaf",
    "overlong-3-byte": b"\xe0\x80\xaf",
    "overlong-4-byte": b"\xf0\x80\x80\xaf",
    "high-surrogate": b"\xed\xa0\x80",
    "low-surrogate": b"\xed\xbf\xbf",
    "surrogate-pair": b"\xed\xa1\x8c\xed\xbe\xb4",
    "above-u+10ffff": b"\xf4\x90\x80\x80",
    "5-byte-sequence": b"\xf8\x88\x80\x80\x80",
    "byte-fe": b"\xfe",
    "lone-continuation": b"\x80",
    "truncated-at-the-end": "κόσμε".encode() + b"\xe1\xbd",
}


def utf8_cases() -> dict[str, Case]:
    cases = {f"valid-{name}": echo(TEXT, text.encode()) for name, text in VALID_UTF8.items()}
    data = "aé€𝄞".encode()  # one character of each length
    every_split = b"".join(fragments(TEXT, [data[:k], data[k:]]) for k in range(1, len(data)))
    cases["valid-fragmented-at-every-byte-split"] = Case(
        (every_split,), ((TEXT, data),) * (len(data) - 1)
    )
    one_byte_fragments = fragments(TEXT, [data[i : i + 1] for i in range(len(data))])
    cases["valid-in-1-byte-fragments"] = Case((one_byte_fragments,), ((TEXT, data),))
    cases["valid-in-1-byte-fragments-byte-by-byte"] = Case(
        split(one_byte_fragments, 1), ((TEXT, data),)
    )
    for name, bad in INVALID_UTF8.items():
        cases[f"invalid-{name}-fails-1007"] = fails(
            1007, frame(TEXT, b"hello") + frame(TEXT, b"ok " + bad), HELLO
        )
    cases["invalid-split-across-fragments-fails-1007"] = fails(
        1007, fragments(TEXT, [b"ok \xed", b"\xa0\x80 ok"])
    )
    # Autobahn 6.4: fail fast, on the fragment that breaks, before the message ends.
    cases["invalid-fails-1007-before-the-final-fragment"] = fails(
        1007,
        frame(TEXT, "κόσμε".encode(), fin=False) + frame(CONT, b"\xf4\x90\x80\x80", fin=False),
    )
    cases["invalid-truncated-at-the-end-of-a-fragmented-message-fails-1007"] = fails(
        1007, fragments(TEXT, [b"ab\xe2\x82", b""])
    )
    cases["valid-utf8-in-binary-is-not-checked"] = echo(BINARY, b"\xff\xfe\xed\xa0\x80")
    return cases


# -- 7. close -------------------------------------------------------------------

VALID_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
INVALID_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)


def echoed_close(code: int | None, reason: bytes = b"") -> Case:
    """A close the server answers with the same payload, then ends the TCP connection."""
    data = b"" if code is None else struct.pack("!H", code) + reason
    return Case((close_frame(code, reason),), ((CLOSE, data),), CLOSED)


def close_cases() -> dict[str, Case]:
    cases = {
        "close-empty-echoed": echoed_close(None),
        "close-1000-echoed": echoed_close(1000),
        "close-1000-with-reason-echoed": echoed_close(1000, b"Hello World!"),
        "close-reason-123-bytes-echoed": echoed_close(1000, b"*" * 123),
        "close-reason-124-bytes-fails-1002": fails(1002, close_frame(1000, b"*" * 124)),
        "close-payload-1-byte-fails-1002": fails(1002, frame(CLOSE, b"\x03")),
        "close-reason-invalid-utf8-fails-1007": fails(
            1007, close_frame(1000, b"\xce\xba\xed\xa0\x80")
        ),
        "text-then-close": Case(
            (frame(TEXT, b"hello") + close_frame(1000),), (*HELLO, (CLOSE, b"\x03\xe8")), CLOSED
        ),
        "fragmented-message-then-close": Case(
            (fragments(BINARY, [payload("binary", 70_000), b"end"]) + close_frame(1000),),
            ((BINARY, payload("binary", 70_000) + b"end"), (CLOSE, b"\x03\xe8")),
            CLOSED,
        ),
        "close-then-text-ignored": Case(
            (close_frame(1000) + frame(TEXT, b"ignored"),), ((CLOSE, b"\x03\xe8"),), CLOSED
        ),
        "close-then-ping-ignored": Case(
            (close_frame(1000) + frame(PING, b"ignored"),), ((CLOSE, b"\x03\xe8"),), CLOSED
        ),
        "close-twice-answered-once": Case(
            (close_frame(1000) + close_frame(1001),), ((CLOSE, b"\x03\xe8"),), CLOSED
        ),
        "close-byte-by-byte": Case(
            split(close_frame(1000, b"bye"), 1), ((CLOSE, b"\x03\xe8bye"),), CLOSED
        ),
        "tcp-fin-after-a-message-ends-the-connection": Case(
            (frame(TEXT, b"hello"),), HELLO, CLOSED, eof=True
        ),
        "tcp-fin-inside-a-frame-ends-the-connection": Case(
            (frame(TEXT, b"hello")[:4],), (), CLOSED, eof=True
        ),
    }
    for code in VALID_CODES:
        cases[f"close-code-{code}-echoed"] = echoed_close(code, b"reason")
    for code in INVALID_CODES:
        cases[f"close-code-{code}-fails-1002"] = fails(1002, close_frame(code))
    return cases


# -- 9. limits ------------------------------------------------------------------


def limit_cases() -> dict[str, Case]:
    over = LIMIT + 1
    piece = payload("binary", 65536)
    return {
        "text-over-the-limit-fails-1009": fails(1009, frame(TEXT, payload("text", over))),
        "binary-over-the-limit-fails-1009": fails(1009, frame(BINARY, payload("binary", over))),
        "fragments-at-the-limit-echoed": Case(
            (fragments(BINARY, [piece] * (LIMIT // 65536)),), ((BINARY, piece * (LIMIT // 65536)),)
        ),
        "fragments-over-the-limit-fail-1009": fails(
            1009, fragments(BINARY, [piece] * (LIMIT // 65536) + [b"!"])
        ),
    }


# -- 12/13. permessage-deflate ------------------------------------------------------

DEFLATE = "/deflate"
BARE_ANSWER = "permessage-deflate; server_max_window_bits=12"  # the server's 4 KiB window


def negotiation_case(offer: str, answer: str | None, path: str = DEFLATE) -> Case:
    """The offer gets ``answer``; then messages that check the server keeps to it
    (window, context takeover) and that the client's side is read as agreed."""
    params = answer.split("; ")[1:] if answer else []
    client_window = 15
    for param in params:
        if param.startswith("client_max_window_bits="):
            client_window = int(param.partition("=")[2])
    probe = window_probe(7)
    messages: list[Frame] = [(BINARY, probe), (BINARY, probe), (TEXT, b"hello " * 20)]
    if answer is None:
        return Case(
            tuple(frame(op, data) for op, data in messages), tuple(messages), path=path, offer=offer
        )
    compressor = Compressor(client_window, "client_no_context_takeover" not in params)
    writes = tuple(compressor.message(op, data) for op, data in messages)
    return Case(writes, tuple(messages), path=path, offer=offer, answer=answer)


def negotiation_cases() -> dict[str, Case]:
    pmd = "permessage-deflate"
    cases = {
        "bare-offer": negotiation_case(pmd, BARE_ANSWER),
        "client-max-window-bits": negotiation_case(f"{pmd}; client_max_window_bits", BARE_ANSWER),
        "client-max-window-bits-10": negotiation_case(
            f"{pmd}; client_max_window_bits=10", f"{BARE_ANSWER}; client_max_window_bits=10"
        ),
        "server-no-context-takeover": negotiation_case(
            f"{pmd}; server_no_context_takeover",
            f"{pmd}; server_no_context_takeover; server_max_window_bits=12",
        ),
        "client-no-context-takeover": negotiation_case(
            f"{pmd}; client_no_context_takeover",
            f"{pmd}; client_no_context_takeover; server_max_window_bits=12",
        ),
        # RFC 7692 7.1.2.1: the answer may not exceed what was offered; 8 is
        # declined, as zlib cannot compress with a 256-byte window.
        "server-max-window-bits-8-declined": negotiation_case(
            f"{pmd}; server_max_window_bits=8", None
        ),
        "second-offer-taken-when-the-first-is-declined": negotiation_case(
            f"{pmd}; server_max_window_bits=8, {pmd}; client_max_window_bits", BARE_ANSWER
        ),
        "unknown-parameter-declined": negotiation_case(f"{pmd}; x-unknown=1", None),
        "unknown-extension-skipped": negotiation_case(
            f"x-webkit-deflate-frame, {pmd}", BARE_ANSWER
        ),
        "offer-on-a-route-without-compression-ignored": negotiation_case(pmd, None, "/echo"),
    }
    for bits in range(9, 16):
        cases[f"server-max-window-bits-{bits}"] = negotiation_case(
            f"{pmd}; server_max_window_bits={bits}",
            f"{pmd}; server_max_window_bits={min(bits, 12)}",
        )
    return cases


def compressed(
    writes: bytes | tuple[bytes, ...], replies: tuple[Frame, ...] = (), then: int | str = OPEN
) -> Case:
    """A case on a socket that negotiated the bare offer."""
    writes = (writes,) if isinstance(writes, bytes) else writes
    return Case(writes, replies, then, DEFLATE, "permessage-deflate", BARE_ANSWER)


def deflate_cases() -> dict[str, Case]:
    sizes = [(TEXT, payload("text", n)) for n in (0, 1, 125, 126, 4096, 65536, 300_000)]
    sizes += [(BINARY, payload("binary", n)) for n in (16, 65536)]
    z = Compressor()
    many = b"".join(z.message(op, data) for op, data in sizes)
    text = payload("text", 20_000)
    z = Compressor()
    in_three = z.message(TEXT, text, parts=3)
    body = Compressor().compress(payload("binary", 5000))
    with_pings = b"".join(
        frame(
            BINARY if i == 0 else CONT,
            body[i * 100 : (i + 1) * 100] if i < 4 else body[400:],
            fin=i == 4,
            rsv=RSV1 if i == 0 else 0,
        )
        + (frame(PING, b"%d" % i) if i < 4 else b"")
        for i in range(5)
    )
    start = Compressor().compress(b"first half, ")
    bomb = Compressor().compress(b"\x00" * (LIMIT + 1))
    return {
        "messages-of-9-sizes-with-context-takeover": compressed(many, tuple(sizes)),
        "text-in-3-compressed-fragments": compressed(in_three, ((TEXT, text),)),
        "text-in-3-compressed-fragments-byte-by-byte": compressed(
            split(Compressor().message(TEXT, b"abc" * 50, parts=3), 1), ((TEXT, b"abc" * 50),)
        ),
        "binary-in-5-compressed-fragments-pings-between": compressed(
            with_pings,
            (*((PONG, b"%d" % i) for i in range(4)), (BINARY, payload("binary", 5000))),
        ),
        "empty-deflate-block-is-an-empty-message": compressed(
            frame(TEXT, b"\x00", rsv=RSV1), ((TEXT, b""),)
        ),
        "uncompressed-message-on-a-deflate-socket": compressed(
            frame(TEXT, b"plain"), ((TEXT, b"plain"),)
        ),
        "uncompressed-fragments-on-a-deflate-socket": compressed(
            fragments(TEXT, [b"pla", b"in"]), ((TEXT, b"plain"),)
        ),
        "rsv1-on-a-continuation-fails-1002": compressed(
            frame(TEXT, start, fin=False, rsv=RSV1) + frame(CONT, b"\x02\x00", rsv=RSV1), (), 1002
        ),
        "rsv1-on-a-ping-fails-1002": compressed(frame(PING, b"\x02\x00", rsv=RSV1), (), 1002),
        "rsv1-on-a-close-fails-1002": compressed(frame(CLOSE, b"\x03\xe8", rsv=RSV1), (), 1002),
        "rsv2-on-a-deflate-socket-fails-1002": compressed(frame(TEXT, b"x", rsv=RSV2), (), 1002),
        "compressed-invalid-utf8-fails-1007": compressed(
            Compressor().message(TEXT, b"ok \xed\xa0\x80"), (), 1007
        ),
        "message-then-compressed-invalid-utf8-fails-1007": compressed(
            frame(TEXT, b"hello")
            + Compressor().message(TEXT, b"ok \xed\xa0\x80")
            + frame(TEXT, b"never handled"),
            HELLO,
            1007,
        ),
        "invalid-deflate-data-fails-1002": compressed(
            frame(BINARY, b"\xff\xff\xff\xff", rsv=RSV1), (), 1002
        ),
        "inflating-over-the-limit-fails-1009": compressed(frame(BINARY, bomb, rsv=RSV1), (), 1009),
        "compressed-message-then-close": compressed(
            Compressor().message(TEXT, b"hello") + close_frame(1000),
            ((TEXT, b"hello"), (CLOSE, b"\x03\xe8")),
            CLOSED,
        ),
        "close-between-compressed-fragments-is-a-clean-close": compressed(
            frame(TEXT, start, fin=False, rsv=RSV1) + close_frame(1000, b"bye"),
            ((CLOSE, b"\x03\xe8bye"),),
            CLOSED,
        ),
    }


# -- the table --------------------------------------------------------------------

# A few cases again on the coroutine handler's route (it runs in a task of its socket's own).
COROUTINE = (
    "framing/text-0",
    "framing/binary-65536-in-997-byte-writes",
    f"framing/binary-{LIMIT}-at-the-limit",
    "framing/7-messages-in-one-write",
    "fragmentation/text-in-2-fragments-ping-between-byte-by-byte",
    "utf8/valid-fragmented-at-every-byte-split",
    "close/text-then-close",
    "reserved/rsv2-text-fails-1002",
    "utf8/invalid-high-surrogate-fails-1007",
)


def all_cases() -> dict[str, Case]:
    sections = {
        "framing": framing_cases(),
        "ping": ping_cases(),
        "reserved": reserved_cases(),
        "fragmentation": fragmentation_cases(),
        "utf8": utf8_cases(),
        "close": close_cases(),
        "limits": limit_cases(),
        "deflate-negotiation": negotiation_cases(),
        "deflate": deflate_cases(),
    }
    cases = {
        f"{section}/{name}": case
        for section, table in sections.items()
        for name, case in table.items()
    }
    for name in COROUTINE:
        cases[f"coroutine/{name}"] = replace(cases[name], path="/coroutine")
    return cases


CASES = all_cases()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_conformance(server: Server, case: Case) -> None:
    """The server answers exactly as RFC 6455 / RFC 7692 require, through the hand-off."""
    await run_case(server.port, case)


# -- 4.2 of RFC 6455: handshakes the server refuses ------------------------------


def handshake(
    drop: tuple[str, ...] = (),
    set_: dict[str, str] | None = None,
    method: str = "GET",
    path: str = "/echo",
    version: str = "HTTP/1.1",
) -> bytes:
    """An upgrade request without the headers in ``drop``, with those in ``set_``."""
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers.update(set_ or {})
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items() if name not in drop)
    return f"{method} {path} {version}\r\n{lines}\r\n".encode()


@dataclass(frozen=True)
class Refusal:
    """A request the server refuses: the status, a header it must carry (if
    any) and words the body must contain (saying why)."""

    request: bytes
    status: int
    header: tuple[str, str] | None
    reason: bytes


REFUSALS = {
    "missing-key": Refusal(
        handshake(drop=("Sec-WebSocket-Key",)), 400, None, b"missing Sec-WebSocket-Key"
    ),
    "key-not-base64": Refusal(
        handshake(set_={"Sec-WebSocket-Key": "not base64!!"}), 400, None, b"16 bytes"
    ),
    "key-of-15-bytes": Refusal(
        handshake(set_={"Sec-WebSocket-Key": base64.b64encode(bytes(15)).decode()}),
        400,
        None,
        b"16 bytes",
    ),
    "version-8": Refusal(
        handshake(set_={"Sec-WebSocket-Version": "8"}), 426, ("sec-websocket-version", "13"), b"13"
    ),
    "version-missing": Refusal(
        handshake(drop=("Sec-WebSocket-Version",)),
        426,
        ("sec-websocket-version", "13"),
        b"Sec-WebSocket-Version",
    ),
    "no-upgrade-headers": Refusal(
        handshake(drop=("Upgrade", "Connection")), 426, ("upgrade", "websocket"), b"Upgrade"
    ),
    "connection-without-upgrade": Refusal(
        handshake(set_={"Connection": "keep-alive"}), 400, None, b"Connection"
    ),
    "upgrade-to-another-protocol": Refusal(
        handshake(set_={"Upgrade": "h2c"}), 426, ("sec-websocket-version", "13"), b"Upgrade"
    ),
    "method-post": Refusal(handshake(method="POST"), 405, ("allow", "GET"), b"POST"),
    "http-1.0": Refusal(handshake(version="HTTP/1.0"), 505, None, b"HTTP/1.1"),
    "unknown-path": Refusal(handshake(path="/nowhere"), 404, None, b""),
    "extension-offer-the-grammar-refuses": Refusal(
        handshake(set_={"Sec-WebSocket-Extensions": "permessage-deflate; =1"}, path=DEFLATE),
        400,
        None,
        b"Sec-WebSocket-Extensions",
    ),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=[f"handshake/{k}" for k in REFUSALS])
async def test_handshake_refused(server: Server, refusal: Refusal) -> None:
    """A request that is not a valid upgrade gets the engine's status with its
    reason, no 101, and the connection closed after the response."""
    client = await RawClient.connect(server.port)
    try:
        with trio.fail_after(REPLY_TIMEOUT):
            await client.send(refusal.request)
            status, head = await client.read_head()
            body = await client.read_body()  # to the end: the server closes
        assert status == refusal.status, head
        if refusal.header is not None:
            assert header(head, refusal.header[0]) == refusal.header[1], head
        assert refusal.reason in body, body
        assert header(head, "connection") == "close"
    finally:
        await client.aclose()
