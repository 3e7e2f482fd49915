"""The in-process server: accept, handshake and run sockets in one trio process."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import trio

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

__all__ = ["accept_forever", "serve", "serve_listener"]

logger = logging.getLogger("axeom.server")


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
            accepted.log_access(101)
            handed = True  # from here on the runtime closes it
            runtime.start_socket(transport, accepted.upgrade, accepted.trailing)
    except trio.BrokenResourceError:
        pass  # the client left before its 101 was written
    except Exception:
        logger.exception("internal error serving %s:%s; connection dropped", *address[:2])
    finally:
        if not handed:
            transport.close()
