"""Listening and accepting, the parts every runtime's accept loop shares.

No event loop here: the trio runtime (``trio_runtime._serve.accept_forever``,
also the acceptor's) and the asyncio runtime (``asyncio_runtime._serve``)
each wait for the listener their own way, then accept in batches with the
same constants, the same transient errors, and the same answer when out of
descriptors (``Reserve``).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
from collections.abc import Callable

from ._messages import Response

__all__ = [
    "ACCEPT_BATCH",
    "ACCEPT_PAUSE",
    "ACCEPT_TRANSIENT",
    "AT_CAPACITY",
    "LISTEN_BACKLOG",
    "Reserve",
    "bind_listener",
    "connection_waiting",
]

logger = logging.getLogger("axeom.server")

# Connections accepted per wake-up of the listening socket before yielding:
# enough to drain a burst in one go, few enough that the handshakes already
# running get the loop back promptly.
ACCEPT_BATCH = 64
# Accept errors that say the process or system is out of a resource, not that
# the listener is broken: accepting resumes once something is freed.
ACCEPT_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Connections the kernel queues before the first accept: a burst of clients (a
# reconnect storm after a deploy) waits there, not refused; the kernel caps it
# at net.core.somaxconn.
LISTEN_BACKLOG = 1024
# A pause after an accept error nothing could relieve (the system's table is
# full, no memory): the backlog holds the clients meanwhile.
ACCEPT_PAUSE = 0.1
# The answer to a connection accepted with the reserve descriptor.
AT_CAPACITY = Response.error(503, "server at capacity, retry shortly", [("retry-after", "1")])


def bind_listener(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking listening TCP socket on (host, port); port 0 picks one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def connection_waiting(listener: socket.socket) -> bool:
    """True if a connection waits in the listener's backlog (polled, no wait).

    Asked on EMFILE: Linux takes the descriptor before it looks at the
    backlog, so EMFILE also comes when nobody waits, and then there is no one
    to relieve. ``poll`` rather than ``select``, which refuses descriptors >= 1024.
    """
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    return bool(poller.poll(0))


class Reserve:
    """One descriptor held back so that, out of descriptors, a connection
    can still be accepted and answered 503 instead of waiting in the backlog."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.shed = 0  # connections answered 503 in the current episode
        self.take()

    def take(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = None  # tried again after the next shed

    def release(self) -> bool:
        if self.fd is None:
            return False
        os.close(self.fd)
        self.fd = None
        return True

    def shed_one(self, listener: socket.socket, answer: Callable[[socket.socket], None]) -> bool:
        """Spend the reserve descriptor on accepting one client, hand it to
        ``answer`` (which writes ``AT_CAPACITY`` and closes it), take the
        reserve back. False if there was no reserve or nobody to accept."""
        if not self.release():
            return False
        try:
            sock, _ = listener.accept()
        except OSError:
            self.take()
            return False
        if not self.shed:
            logger.warning(
                "out of file descriptors with no unfinished handshake to evict: "
                "answering new connections 503"
            )
        self.shed += 1
        answer(sock)
        self.take()
        return True

    def episode_over(self) -> None:
        if self.shed:
            logger.warning("accepting again after answering %d connections 503", self.shed)
            self.shed = 0
