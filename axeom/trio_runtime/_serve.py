"""The in-process server: accept, handshake and run sockets in one trio process."""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
from collections.abc import Callable
from typing import Any

import trio

from .._app import Axeom
from .._messages import Response
from ._control import SINGLE_PROCESS_COMMANDS, SingleProcess, serve_control
from ._handshake import (
    HandshakeCounters,
    HandshakeLimits,
    PendingHead,
    PendingHeads,
    answer_handshake,
    shed,
)
from ._runtime import SocketRuntime, open_socket_runtime
from ._transport import SocketTransport

__all__ = ["accept_forever", "bind_listener", "serve", "serve_listener"]

logger = logging.getLogger("axeom.server")

# Connections accepted per wake-up of the listening socket before yielding:
# enough to drain a burst in one go, few enough that the handshakes already
# running get the loop back promptly.
ACCEPT_BATCH = 64
# Accept errors that say the process or system is out of a resource, not that
# the listener is broken: accepting resumes once something is freed.
_ACCEPT_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
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


async def serve(
    app: Axeom,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    limits: HandshakeLimits | None = None,
    backlog: int = LISTEN_BACKLOG,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; reports the bound (host, port) through
    ``task_status`` (use ``await nursery.start(serve, app, "127.0.0.1", 0)``)."""
    listener = bind_listener(host, port, backlog)
    with listener:
        await serve_listener(app, listener, limits=limits, task_status=task_status)


async def serve_listener(
    app: Axeom,
    listener: socket.socket,
    *,
    limits: HandshakeLimits | None = None,
    shutdown: trio.Event | None = None,
    graceful_timeout: float = 10.0,
    control: str | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on an already bound, listening socket.

    When ``shutdown`` is set: stop accepting, close every socket with 1001,
    wait up to ``graceful_timeout`` for their ``close`` handlers, return.
    ``control`` is an nng address on which to answer ``axeom status`` and
    ``axeom publish``.
    """
    limits = limits or HandshakeLimits()
    counters = HandshakeCounters()
    pending = PendingHeads(limits, counters)
    listener.setblocking(False)
    async with open_socket_runtime(app) as runtime:
        if control is not None:
            target = SingleProcess(app, runtime, listener.getsockname()[1], counters)
            runtime.nursery.start_soon(serve_control, target, control, SINGLE_PROCESS_COMMANDS)
        task_status.started(listener.getsockname()[:2])
        with trio.CancelScope() as accepting:
            if shutdown is not None:
                runtime.nursery.start_soon(_cancel_when_set, shutdown, accepting)

            def on_client(sock: socket.socket, address: Any) -> None:
                transport = SocketTransport(sock)
                head = pending.enter(transport, address[0])
                if head is not None:
                    runtime.nursery.start_soon(
                        _serve_client, app, runtime, transport, address, limits, head, counters
                    )

            await accept_forever(listener, on_client, pending.evict_oldest)
        left = await runtime.drain(graceful_timeout)
        if left:
            logger.warning("%d sockets still open after %ss; dropping them", left, graceful_timeout)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


class _Reserve:
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

    def episode_over(self) -> None:
        if self.shed:
            logger.warning("accepting again after answering %d connections 503", self.shed)
            self.shed = 0


async def accept_forever(
    listener: socket.socket,
    on_client: Callable[[socket.socket, Any], None],
    free_descriptor: Callable[[], bool] | None = None,
) -> None:
    """Accept connections in batches and hand each to ``on_client`` (which
    starts a task for it).

    Out of descriptors (EMFILE), ``free_descriptor`` is asked to free one
    (by evicting the oldest unfinished request head) and accepting goes on;
    if it cannot, the reserve descriptor is spent on accepting one client
    and answering it 503, so the backlog keeps moving and nothing spins.
    Other resource errors pause accepting briefly: the backlog holds the clients.
    """
    reserve = _Reserve()
    try:
        while True:
            await trio.lowlevel.wait_readable(listener)
            for _ in range(ACCEPT_BATCH):
                try:
                    sock, address = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EMFILE:
                        # Linux takes the descriptor before looking at the
                        # backlog: EMFILE also means "none left" when nobody
                        # waits, and then there is no one to relieve (evicting
                        # would hit the head just accepted): the next client
                        # wakes us.
                        if not connection_waiting(listener):
                            break
                        if _relieve(listener, free_descriptor, reserve):
                            continue
                    if exc.errno in _ACCEPT_TRANSIENT:
                        logger.error("accept failed (%s); retrying shortly", exc)
                        await trio.sleep(ACCEPT_PAUSE)
                        break
                    if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                        continue
                    raise
                if reserve.shed:
                    reserve.episode_over()
                on_client(sock, address)
            await trio.lowlevel.checkpoint()
    finally:
        reserve.release()


def connection_waiting(listener: socket.socket) -> bool:
    """True if a connection waits in the listener's backlog (polled, no wait;
    ``poll`` rather than ``select``, which refuses descriptors >= 1024)."""
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    return bool(poller.poll(0))


def _relieve(
    listener: socket.socket, free_descriptor: Callable[[], bool] | None, reserve: _Reserve
) -> bool:
    """Out of descriptors: free one for the next accept, or shed one client
    with the reserve. False if neither was possible."""
    if free_descriptor is not None and free_descriptor():
        return True
    if not reserve.release():
        return False
    try:
        sock, _ = listener.accept()
    except OSError:
        reserve.take()
        return False
    if not reserve.shed:
        logger.warning(
            "out of file descriptors with no unfinished handshake to evict: "
            "answering new connections 503"
        )
    reserve.shed += 1
    shed(SocketTransport(sock), AT_CAPACITY)
    reserve.take()
    return True


async def _serve_client(
    app: Axeom,
    runtime: SocketRuntime,
    transport: SocketTransport,
    address: tuple[str, int],
    limits: HandshakeLimits,
    pending: PendingHead,
    counters: HandshakeCounters,
) -> None:
    """One client: handshake, then hand the socket to the runtime (this task
    ends there). A failure here is a bug in Axeom, not in the app (handlers are
    contained by the actor): it is logged and costs this connection only."""
    handed = False
    try:
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted = await answer_handshake(
            app, transport, address[:2], limits, pending=pending, counters=counters
        )
        if accepted is not None:
            await transport.send_all([accepted.response_head])
            counters.count(101, True)
            handed = True  # from here on the runtime closes it
            runtime.start_socket(transport, accepted.upgrade, accepted.trailing)
    except trio.BrokenResourceError:
        pass  # the client left before its 101 was written
    except Exception:
        logger.exception("internal error serving %s:%s; connection dropped", *address[:2])
    finally:
        if not handed:
            transport.close()
