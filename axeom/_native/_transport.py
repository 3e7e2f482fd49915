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

__all__ = ["SocketTransport", "StreamTransport", "Transport"]

RECV_SIZE = 65536
_GONE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)


class Transport(Protocol):
    """What the socket loop needs from a byte stream."""

    async def receive(self) -> bytes:
        """Next bytes from the peer; ``b""`` when it is gone."""
        ...

    def try_send(self, data: bytes) -> int | None:
        """Write without waiting; bytes written, or None if this transport
        cannot write synchronously (then ``send_all`` must be used)."""
        ...

    async def send_all(self, data: bytes) -> None:
        """Write everything, waiting as needed; raises ``trio.BrokenResourceError``."""
        ...

    def close(self) -> None:
        """Close now, without waiting (wakes any task parked on this transport)."""
        ...

    async def aclose(self) -> None:
        """Close, waiting for what closing a stream needs (call shielded)."""
        ...


class SocketTransport:
    """A connected, non-blocking stdlib socket driven by trio's I/O manager."""

    __slots__ = ("_closed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._closed = False

    async def receive(self) -> bytes:
        sock = self.sock
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:
            pass
        except _GONE:
            return b""
        else:
            await trio.lowlevel.checkpoint()
            return data
        while True:
            try:
                await trio.lowlevel.wait_readable(sock)
            except (trio.ClosedResourceError, OSError):
                return b""
            try:
                return sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except _GONE:
                return b""

    def try_send(self, data: bytes) -> int | None:
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = self.try_send(view)
            if sent:
                view = view[sent:]
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

    __slots__ = ("_closed", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._closed = False

    async def receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECV_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    def try_send(self, data: bytes) -> int | None:
        return None

    async def send_all(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except trio.ClosedResourceError as exc:
            raise trio.BrokenResourceError("stream closed") from exc

    def close(self) -> None:
        """Mark closed; the stream itself is closed by ``aclose``."""
        self._closed = True

    async def aclose(self) -> None:
        self._closed = True
        with trio.move_on_after(1):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.aclose()
