"""Byte transports under a socket's task loop.

``SocketTransport`` reads and writes a non-blocking socket directly and
parks in ``trio.lowlevel.wait_readable`` / ``wait_writable`` only when the
kernel says it would block: measured here, this is what lets a Python
server keep up with the fastest asyncio one. ``StreamTransport`` adapts any
``trio.abc.Stream`` (the test kit's in-memory streams).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Protocol

import trio

__all__ = ["SocketTransport", "StreamTransport", "Transport", "advance"]

# First size of a read: one recv takes a typical burst of small frames.
RECV_SIZE = 65536
# Buffers one sendmsg may take (Linux's UIO_MAXIOV): more are written in turns.
IOV_MAX = 1024
# A read may be as large as what the frame layer says it still waits for (the
# rest of a large message), up to this: big messages arrive in few reads while
# small reads stay the common case.
MAX_RECV_SIZE = 4 << 20
_GONE = OSError  # any read error means the peer is gone (reset, unreachable, ...)


class Transport(Protocol):
    """What the socket loop needs from a byte stream."""

    async def receive(self, hint: int = 0) -> bytes:
        """Next bytes from the peer; ``b""`` when it is gone. ``hint`` says how
        many bytes are known to be on their way (a large frame), to read them
        in fewer, larger reads."""
        ...

    def try_send(self, chunks: list[bytes]) -> int | None:
        """Write without waiting; bytes written, or None if this transport
        cannot write synchronously (then ``send_all`` must be used)."""
        ...

    async def send_all(self, chunks: list[bytes]) -> None:
        """Write everything, waiting as needed; raises ``trio.BrokenResourceError``."""
        ...

    def close(self) -> None:
        """Close now, without waiting (wakes any task parked on this transport)."""
        ...

    async def aclose(self) -> None:
        """Close, waiting for what closing a stream needs (call shielded)."""
        ...


def advance(chunks: list[bytes], sent: int) -> list[bytes]:
    """What is left of ``chunks`` after the first ``sent`` bytes were written."""
    for index, chunk in enumerate(chunks):
        size = len(chunk)
        if sent < size:
            rest = chunks[index:]
            if sent:
                rest[0] = memoryview(chunk)[sent:]  # type: ignore[call-overload]
            return rest
        sent -= size
    return []


class SocketTransport:
    """A connected, non-blocking stdlib socket driven by trio's I/O manager."""

    __slots__ = ("_closed", "_more", "sock")

    secure = False  # plaintext (``TLSTransport`` is the TLS one)

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._closed = False
        self._more = True  # the last read filled the buffer: more is probably waiting

    async def receive(self, hint: int = 0) -> bytes:
        sock = self.sock
        size = RECV_SIZE if hint <= RECV_SIZE else min(hint, MAX_RECV_SIZE)
        if self._more:
            # Try first only when data is likely there: otherwise the failed
            # recv costs a syscall on every message of a request/response flow.
            try:
                data = sock.recv(size)
            except BlockingIOError:
                pass
            except _GONE:
                return b""
            else:
                self._more = len(data) == size
                await trio.lowlevel.checkpoint()
                return data
        while True:
            try:
                await trio.lowlevel.wait_readable(sock)
            except (trio.ClosedResourceError, OSError):
                return b""
            try:
                data = sock.recv(size)
            except BlockingIOError:
                continue
            except _GONE:
                return b""
            self._more = len(data) == size
            return data

    def try_send(self, chunks: list[bytes]) -> int | None:
        try:
            if len(chunks) == 1:
                return self.sock.send(chunks[0])
            return self.sock.sendmsg(chunks[:IOV_MAX])
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc

    async def send_all(self, chunks: list[bytes]) -> None:
        while chunks:
            sent = self.try_send(chunks)
            if sent:
                chunks = advance(chunks, sent)
                continue
            try:
                await trio.lowlevel.wait_writable(self.sock)
            except (trio.ClosedResourceError, OSError) as exc:
                raise trio.BrokenResourceError("socket closed while writing") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            trio.lowlevel.notify_closing(self.sock)
        try:
            self.sock.close()
        except OSError as exc:  # pragma: no cover - close() rarely fails
            if exc.errno != errno.EBADF:
                raise

    async def aclose(self) -> None:
        self.close()


class StreamTransport:
    """Any ``trio.abc.Stream``; writes are always asynchronous."""

    __slots__ = ("stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive(self, hint: int = 0) -> bytes:
        try:
            return bytes(await self.stream.receive_some(max(hint, RECV_SIZE)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    def try_send(self, chunks: list[bytes]) -> int | None:
        return None

    async def send_all(self, chunks: list[bytes]) -> None:
        try:
            await self.stream.send_all(b"".join(chunks))
        except trio.ClosedResourceError as exc:
            raise trio.BrokenResourceError("stream closed") from exc

    def close(self) -> None:
        """Nothing to do at once: the stream is closed by ``aclose``."""

    async def aclose(self) -> None:
        with trio.move_on_after(1):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.aclose()
