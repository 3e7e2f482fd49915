"""TLS on trio: a ``Transport`` over ``trio.SSLStream``.

A TLS connection is read and written through ``trio.SSLStream`` on the
accepted socket, and served by the per-socket task loop
(``NativeConnection.run``) rather than the readiness loop: the readiness
loop reads the kernel socket directly, and decrypted bytes OpenSSL holds
back raise no epoll edge. So plaintext sockets keep their path unchanged
and pay nothing for TLS being possible.

The TLS handshake happens on the first ``receive``, that is while the
request head is read: it falls under the same deadline (``request_timeout``)
and the same cap of unfinished heads as a plaintext head, so a client that
opens a connection and never finishes its TLS handshake (a slowloris over
TLS) costs no more than a plaintext one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl

import trio

from ._transport import RECV_SIZE, SocketTransport

__all__ = ["TLSTransport", "transport_for"]

logger = logging.getLogger("axeom.server")

# Longest a closing TLS connection waits to send its close_notify: the peer
# may not read (it is gone, or slow), and closing must not hang on it.
CLOSE_TIMEOUT = 1.0


class TLSTransport:
    """A TLS connection on an accepted, non-blocking socket (server side).

    ``sock`` is the TCP socket under it (what the unfinished-head caps peek at
    and close). Nothing can be written before the TLS handshake is done: a
    rejection decided before then (a slow client's 408) closes the connection.
    """

    __slots__ = ("_closed", "handshaken", "sock", "stream")

    secure = True  # a request read from here came over TLS

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        sock.setblocking(False)
        self.sock = sock
        # Not https_compatible: closing sends close_notify (without waiting for
        # the peer's), which clients such as asyncio's expect before the TCP
        # close; a client that closes without one is an EOF all the same here
        # (``receive`` turns the error into b"").
        self.stream = trio.SSLStream(
            trio.SocketStream(trio.socket.from_stdlib_socket(sock)), context, server_side=True
        )
        self.handshaken = False
        self._closed = False

    async def receive(self, hint: int = 0) -> bytes:
        try:
            if not self.handshaken:
                await self.stream.do_handshake()
                self.handshaken = True
            return bytes(await self.stream.receive_some(max(hint, RECV_SIZE)))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if not self.handshaken:
                logger.debug("TLS handshake failed: %s", exc.__cause__ or exc)
            return b""

    def try_send(self, chunks: list[bytes]) -> int | None:
        return None  # every write goes through the TLS stream: send_all

    async def send_all(self, chunks: list[bytes]) -> None:
        if not self.handshaken:
            raise trio.BrokenResourceError("no TLS session to write on")
        try:
            await self.stream.send_all(b"".join(chunks))
        except trio.ClosedResourceError as exc:
            raise trio.BrokenResourceError("connection closed") from exc

    def close(self) -> None:
        """Close the socket now (wakes a task parked on it); no close_notify."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    async def aclose(self) -> None:
        """Send close_notify if the session is up (briefly), then close."""
        if self.handshaken and not self._closed:
            with trio.move_on_after(CLOSE_TIMEOUT):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.stream.aclose()
        self.close()


def transport_for(
    sock: socket.socket, context: ssl.SSLContext | None
) -> SocketTransport | TLSTransport:
    """The transport of an accepted socket: TLS when ``context`` is given."""
    if context is None:
        return SocketTransport(sock)
    return TLSTransport(sock, context)
