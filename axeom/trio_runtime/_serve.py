"""The in-process server: accept, handshake and run sockets in one trio process."""

from __future__ import annotations

import errno
import functools
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import trio
from websockets.frames import CloseCode

from .._app import Axeom
from .._listener import (
    ACCEPT_BATCH,
    ACCEPT_PAUSE,
    ACCEPT_TRANSIENT,
    AT_CAPACITY,
    LISTEN_BACKLOG,
    Reserve,
    bind_listener,
    connection_waiting,
)
from ..metrics import NodeCollector, refresh_forever
from ..security import connection_limits
from ._control import SINGLE_PROCESS_COMMANDS, SingleProcess, serve_control, single_status
from ._handshake import (
    HandshakeCounters,
    HandshakeLimits,
    HeadTransport,
    PendingHead,
    PendingHeads,
    answer_handshake,
    shed,
)
from ._runtime import SocketRuntime, open_socket_runtime
from ._tls import TLSTransport
from ._transport import SocketTransport

__all__ = ["accept_forever", "serve", "serve_connection", "serve_listener"]

logger = logging.getLogger("axeom.server")


async def serve(
    app: Axeom,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    limits: HandshakeLimits | None = None,
    backlog: int = LISTEN_BACKLOG,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; reports the bound (host, port) through
    ``task_status`` (use ``await nursery.start(serve, app, "127.0.0.1", 0)``).
    With ``ssl_context`` (``axeom.tls.server_context``) it serves TLS only."""
    listener = bind_listener(host, port, backlog)
    with listener:
        await serve_listener(
            app, listener, limits=limits, ssl_context=ssl_context, task_status=task_status
        )


async def serve_listener(
    app: Axeom,
    listener: socket.socket,
    *,
    limits: HandshakeLimits | None = None,
    shutdown: trio.Event | None = None,
    graceful_timeout: float = 10.0,
    control: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    metrics: NodeCollector | None = None,
    close_code: Callable[[], int] | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on an already bound, listening socket (TLS only, with
    ``ssl_context``).

    When ``shutdown`` is set: stop accepting, close every socket with 1001
    (or what ``close_code()`` answers then: 1012 when a reloader restarts the
    server), wait up to ``graceful_timeout`` for their ``close`` handlers, return.
    ``control`` is an nng address on which to answer ``axeom status`` and
    ``axeom publish``; ``metrics``, a collector to keep refreshed with this
    server's figures (its metrics server runs elsewhere: ``axeom.metrics``).
    """
    limits = limits or HandshakeLimits()
    counters = HandshakeCounters()
    connection_limits(app)  # this process settles what they admit (see axeom.security)
    pending = PendingHeads(limits, counters)
    listener.setblocking(False)
    async with open_socket_runtime(app) as runtime:
        target = SingleProcess(app, runtime, listener.getsockname()[1], counters)
        if control is not None:
            runtime.nursery.start_soon(serve_control, target, control, SINGLE_PROCESS_COMMANDS)
        if metrics is not None:
            build = functools.partial(single_status, target)
            runtime.nursery.start_soon(refresh_forever, metrics, build, trio.sleep)
        task_status.started(listener.getsockname()[:2])
        with trio.CancelScope() as accepting:
            if shutdown is not None:
                runtime.nursery.start_soon(_cancel_when_set, shutdown, accepting)

            def on_client(sock: socket.socket, address: Any) -> None:
                transport: HeadTransport
                if ssl_context is None:
                    transport = SocketTransport(sock)
                else:
                    transport = TLSTransport(sock, ssl_context)
                head = pending.enter(transport, address[0])
                if head is not None:
                    runtime.nursery.start_soon(
                        serve_connection, app, runtime, transport, address, limits, head, counters
                    )

            await accept_forever(listener, on_client, pending.evict_oldest)
        code = CloseCode.GOING_AWAY if close_code is None else close_code()
        left = await runtime.drain(graceful_timeout, code)
        if left:
            logger.warning("%d sockets still open after %ss; dropping them", left, graceful_timeout)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


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
    reserve = Reserve()
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
                    if exc.errno in ACCEPT_TRANSIENT:
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


def _relieve(
    listener: socket.socket, free_descriptor: Callable[[], bool] | None, reserve: Reserve
) -> bool:
    """Out of descriptors: free one for the next accept, or shed one client
    with the reserve. False if neither was possible."""
    if free_descriptor is not None and free_descriptor():
        return True
    return reserve.shed_one(listener, _answer_at_capacity)


def _answer_at_capacity(sock: socket.socket) -> None:
    shed(SocketTransport(sock), AT_CAPACITY)


async def serve_connection(
    app: Axeom,
    runtime: SocketRuntime,
    transport: HeadTransport,
    address: tuple[str, int],
    limits: HandshakeLimits,
    pending: PendingHead,
    counters: HandshakeCounters,
    on_end: Callable[[], object] | None = None,
) -> None:
    """One client: handshake (TLS, then HTTP), then hand the socket to the
    runtime (this task ends there). The single-process server runs it for
    every client, a worker for each TLS connection placed on it before its
    handshake. A failure here is a bug in Axeom, not in the app (handlers are
    contained by the actor): it is logged and costs this connection only.

    ``on_end`` is called once when the connection ends, refused or served
    (a worker tells the acceptor, which counted it under the connection
    limits at accept time)."""
    handed = False
    admission = None
    try:
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted = await answer_handshake(
            app, transport, address[:2], limits, pending=pending, counters=counters
        )
        if accepted is not None:
            admission = accepted.admission
            release = admission.release if admission is not None else on_end
            if release is not None:  # the socket counts as open until it ends
                accepted.upgrade.on_end = release
            await transport.send_all([accepted.response_head])
            counters.count(101, True)
            accepted.log_access(101)
            handed = True  # from here on the runtime closes it
            runtime.start_socket(transport, accepted.upgrade, accepted.trailing)
            admission = None
    except trio.BrokenResourceError:
        pass  # the client left before its 101 was written
    except Exception:
        logger.exception("internal error serving %s:%s; connection dropped", *address[:2])
    finally:
        if not handed:
            transport.close()
            if on_end is not None:  # no socket runs: its place is given back now
                on_end()
        if admission is not None:  # no socket runs (idempotent if one ran and ended)
            admission.release()
