"""TLS on trio: a ``Transport`` over a non-blocking ``ssl.SSLSocket``.

A TLS connection is read and written through the standard library's
``SSLSocket`` on the accepted socket, and served by the per-socket task loop
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

from ._transport import MAX_RECV_SIZE, RECV_SIZE, SocketTransport

__all__ = ["TLSTransport", "transport_for"]

logger = logging.getLogger("axeom.server")


class TLSTransport(SocketTransport):
    """A TLS connection on an accepted socket (server side): the standard
    library's ``SSLSocket``, non-blocking, driven like ``SocketTransport``
    (try first, park in ``wait_readable``/``wait_writable`` only when OpenSSL
    says it would block). Encryption and the socket calls stay in C: measured,
    about twice the echo rate of ``trio.SSLStream`` (a memory BIO fed in Python).

    ``sock`` is the ``SSLSocket`` (what the unfinished-head caps peek at and
    close). Nothing can be written before the TLS handshake is done: a
    rejection decided before then (a slow client's 408) closes the connection.
    """

    __slots__ = ("handshaken",)

    secure = True  # a request read from here came over TLS
    sock: ssl.SSLSocket

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        sock.setblocking(False)
        super().__init__(context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False))
        self.handshaken = False

    async def _handshake(self) -> bool:
        sock = self.sock
        while True:
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(sock)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(sock)
            else:
                self.handshaken = True
                return True

    async def receive(self, hint: int = 0) -> bytes:
        sock = self.sock
        size = RECV_SIZE if hint <= RECV_SIZE else min(hint, MAX_RECV_SIZE)
        try:
            if not self.handshaken:
                await self._handshake()
            try:
                data = sock.recv(size)  # what OpenSSL holds decrypted comes first
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            else:
                await trio.lowlevel.checkpoint()
                return data
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    return sock.recv(size)
                except ssl.SSLWantReadError:
                    continue
                except ssl.SSLWantWriteError:
                    await trio.lowlevel.wait_writable(sock)
        except (OSError, ValueError, trio.ClosedResourceError) as exc:
            # A failed handshake (a plaintext client), a reset, a closed socket:
            # the peer is gone (ssl.SSLError is an OSError).
            if not self.handshaken:
                logger.debug("TLS handshake failed: %s", exc)
            return b""

    def try_send(self, chunks: list[bytes]) -> int | None:
        if not self.handshaken:
            return 0  # nothing readable can be written yet
        try:
            # One record run per call; OpenSSL may take part of it (partial writes).
            return self.sock.send(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except (OSError, ValueError) as exc:
            raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc

    async def send_all(self, chunks: list[bytes]) -> None:
        if not self.handshaken:
            raise trio.BrokenResourceError("no TLS session to write on")
        await super().send_all(chunks)

    async def aclose(self) -> None:
        """Send close_notify if the session is up (without waiting for the
        peer's: asyncio clients, for one, expect it before the TCP close), then close."""
        if self.handshaken and not self._closed:
            with contextlib.suppress(OSError, ValueError):
                self.sock.unwrap()  # sends close_notify; the peer's is not awaited
        self.close()
        await trio.lowlevel.checkpoint()


def transport_for(
    sock: socket.socket, context: ssl.SSLContext | None
) -> SocketTransport | TLSTransport:
    """The transport of an accepted socket: TLS when ``context`` is given."""
    if context is None:
        return SocketTransport(sock)
    return TLSTransport(sock, context)
