"""A raw WebSocket client over a trio socket, for what polite clients never do:
first frame in the handshake's TCP write, ignoring pings, not reading."""

from __future__ import annotations

import base64
import os
import struct
import zlib

import trio

KEY = base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path: str, host: str = "127.0.0.1", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame (``rsv1``: the permessage-deflate "compressed" bit)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


_DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: removed by the sender, added back


class Deflater:
    """One side of a permessage-deflate stream with context takeover, by hand."""

    def __init__(self) -> None:
        self.compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        self.decompressor = zlib.decompressobj(wbits=-zlib.MAX_WBITS)

    def frame(self, payload: bytes, opcode: int = 0x1) -> bytes:
        """A compressed, masked, final client frame (RSV1 set)."""
        data = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(_DEFLATE_TAIL)
        return client_frame(opcode, data[: -len(_DEFLATE_TAIL)], rsv1=True)

    def inflate(self, payload: bytes) -> bytes:
        return self.decompressor.decompress(payload + _DEFLATE_TAIL)


class RawClient:
    def __init__(self, sock: trio.SocketStream) -> None:
        self.stream = sock
        self.buffer = bytearray()
        self.rsv1 = False  # RSV1 bit of the last frame read_frame returned

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def read_head(self) -> tuple[int, str]:
        while b"\r\n\r\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("closed before the response head")
            self.buffer += data
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[:end]
        return int(head.split(" ", 2)[1]), head

    async def read_body(self) -> bytes:
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return bytes(self.buffer)
            self.buffer += data

    async def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame; (-1, b"") at EOF."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            data = await self.stream.receive_some(65536)
            if not data:
                return -1, b""
            self.buffer += data

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode, n, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
        rsv1 = bool(buf[0] & 0x40)
        if n == 126:
            if len(buf) < 4:
                return None
            n, offset = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, offset = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < offset + n:
            return None
        payload = bytes(buf[offset : offset + n])
        del buf[: offset + n]
        self.rsv1 = rsv1
        return opcode, payload

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
