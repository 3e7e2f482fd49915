"""The in-process server on asyncio or uvloop: accept, handshake, run sockets.

Accepting is done here rather than by ``loop.create_server``: out of file
descriptors (EMFILE), asyncio's own accept loop logs and pauses for a
second, while this one frees a descriptor (evicting the oldest unfinished
head) or spends the reserve descriptor on answering 503, as the trio server
does: the backlog keeps moving and no client gets a 101 that leads nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode

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
from ..process import STOP_SIGNALS, close_code_for, serve_with_lifespan
from ..security import connection_limits
from ..trio_runtime._control import (
    SINGLE_PROCESS_COMMANDS,
    SingleProcess,
    serve_control,
    single_status,
)
from ..trio_runtime._handshake import HandshakeCounters, HandshakeLimits, shed
from ._handshake import HandshakeProtocol, Handshakes, HeadSocket
from ._loops import new_event_loop
from ._runtime import AsyncioRuntime

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = ["run", "serve", "serve_listener"]

logger = logging.getLogger("axeom.server")


class _Acceptor:
    """Accepts in batches on the loop's readiness callback of the listener."""

    def __init__(
        self, listener: socket.socket, handshakes: Handshakes, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.listener = listener
        self.handshakes = handshakes
        self.loop = loop
        self.reserve = Reserve()
        self.accepting = False
        self._resume: asyncio.TimerHandle | None = None
        # asyncio's selector loop makes a transport synchronously; uvloop only
        # through a coroutine (a task per connection).
        self._make_transport: Callable[..., Any] | None = getattr(
            loop, "_make_socket_transport", None
        )

    def start(self) -> None:
        if not self.accepting:
            self.accepting = True
            self.loop.add_reader(self.listener.fileno(), self._accept_ready)

    def stop(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self.accepting:
            self.accepting = False
            self.loop.remove_reader(self.listener.fileno())
        self.reserve.release()

    def _accept_ready(self) -> None:
        listener = self.listener
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EMFILE:
                    # Linux takes the descriptor before looking at the backlog:
                    # EMFILE also means "none left" when nobody is waiting, and
                    # then there is no one to relieve (the next client wakes us).
                    if not connection_waiting(listener):
                        return
                    if self._relieve():
                        continue
                if exc.errno in ACCEPT_TRANSIENT:
                    logger.error("accept failed (%s); retrying shortly", exc)
                    self._pause()
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                logger.exception("accept failed; the server stops accepting")
                self.stop()
                return
            if self.reserve.shed:
                self.reserve.episode_over()
            try:
                self._client(sock, address)
            except Exception:
                logger.exception("internal error accepting %s; connection dropped", address)
                sock.close()

    def _pause(self) -> None:
        """An accept error nothing could relieve: the backlog holds the clients."""
        self.loop.remove_reader(self.listener.fileno())
        self.accepting = False
        self._resume = self.loop.call_later(ACCEPT_PAUSE, self.start)

    def _relieve(self) -> bool:
        """Out of descriptors: free one for the next accept, or shed one
        client with the reserve. False if neither was possible."""
        if self.handshakes.pending.evict_oldest():
            return True
        return self.reserve.shed_one(self.listener, _answer_at_capacity)

    def _client(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(False)
        protocol = self.handshakes.enter(sock, address)
        if protocol is None:
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.handshakes.ssl_context is not None:
            task = self.handshakes.runtime.start_task(self._connect_tls(sock, protocol))
            if not task.done():
                protocol.head_socket.connecting = task
                # Evicted (cancelled), maybe before it even started: the socket is
                # then ours to close (the loop unregistered it if it had it).
                task.add_done_callback(functools.partial(_close_if_cancelled, sock))
        elif self._make_transport is not None:
            self._make_transport(sock, protocol, extra={"peername": address})
        else:
            self.handshakes.runtime.start_task(self._connect(sock, protocol))

    async def _connect(self, sock: socket.socket, protocol: asyncio.Protocol) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:
            sock.close()

    async def _connect_tls(self, sock: socket.socket, protocol: HandshakeProtocol) -> None:
        """The loop's TLS transport on the socket; its handshake runs under the
        request timeout (a client that never finishes it is cut like a slow head)
        while the connection counts among the unfinished heads."""
        handshakes = self.handshakes
        try:
            await self.loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=handshakes.ssl_context,
                ssl_handshake_timeout=handshakes.limits.timeout,
            )
        except OSError as exc:  # ssl.SSLError, TimeoutError and resets are OSErrors
            logger.debug("TLS handshake failed: %s", exc)
            protocol.pending.leave()
            sock.close()
        finally:
            protocol.head_socket.connecting = None


def _close_if_cancelled(sock: socket.socket, task: asyncio.Task[None]) -> None:
    if task.cancelled():
        sock.close()


def _answer_at_capacity(sock: socket.socket) -> None:
    sock.setblocking(False)
    shed(HeadSocket(sock), AT_CAPACITY)  # type: ignore[arg-type]


async def serve_listener(
    app: Axeom,
    listener: socket.socket,
    *,
    limits: HandshakeLimits | None = None,
    shutdown: asyncio.Event | None = None,
    graceful_timeout: float = 10.0,
    control: str | None = None,
    loop_name: str = "asyncio",
    on_ready: Callable[[tuple[str, int]], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    metrics: NodeCollector | None = None,
    close_code: Callable[[], int] | None = None,
) -> None:
    """Serve ``app`` on an already bound, listening socket until ``shutdown``
    is set (forever without one): then stop accepting, close every socket
    with 1001 (or what ``close_code()`` answers then: 1012 when a reloader
    restarts the server), wait up to ``graceful_timeout`` for their ``close`` handlers.

    ``control`` is an nng address on which to answer ``axeom status`` and
    ``axeom publish``; ``on_ready`` gets the bound (host, port) once accepting;
    ``metrics``, a collector to keep refreshed with this server's figures.
    With ``ssl_context`` (``axeom.tls.server_context``) it serves TLS only,
    through the loop's own TLS transport.
    """
    limits = limits or HandshakeLimits()
    counters = HandshakeCounters()
    connection_limits(app)  # this process settles what they admit (see axeom.security)
    listener.setblocking(False)
    runtime = AsyncioRuntime(app, loop_name=loop_name)
    handshakes = Handshakes(app, runtime, limits, counters, ssl_context)
    acceptor = _Acceptor(listener, handshakes, runtime.loop)
    control_task = metrics_task = None
    target = SingleProcess(app, runtime, listener.getsockname()[1], counters)  # type: ignore[arg-type]
    if control is not None:
        control_task = runtime.start_task(serve_control(target, control, SINGLE_PROCESS_COMMANDS))
    if metrics is not None:
        build = functools.partial(single_status, target)
        metrics_task = runtime.start_task(refresh_forever(metrics, build, asyncio.sleep))
    acceptor.start()
    try:
        if on_ready is not None:
            on_ready(listener.getsockname()[:2])
        if shutdown is None:
            await asyncio.Future()  # until cancelled
        else:
            await shutdown.wait()
    finally:
        acceptor.stop()
        code = CloseCode.GOING_AWAY if close_code is None else close_code()
        left = await runtime.drain(graceful_timeout, code)
        if left:
            logger.warning("%d sockets still open after %ss; dropping them", left, graceful_timeout)
        runtime.close()
        for task in (control_task, metrics_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def serve(
    app: Axeom,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    backlog: int = LISTEN_BACKLOG,
    **options: Any,
) -> None:
    """Bind (host, port) and ``serve_listener`` on it (same options)."""
    listener = bind_listener(host, port, backlog)
    with listener:
        await serve_listener(app, listener, **options)


def run(
    app: Axeom,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    loop_name: str = "asyncio",
    graceful_timeout: float = 10.0,
    limits: HandshakeLimits | None = None,
    control: str | None = None,
    listener: socket.socket | None = None,
    on_ready: Callable[[tuple[str, int]], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    metrics: NodeCollector | None = None,
) -> None:
    """Serve ``app`` on a new ``loop_name`` loop until SIGTERM or SIGINT, then
    drain; blocks. What ``axeom run --loop asyncio|uvloop --workers 0`` calls.
    The app's ``on_start`` functions run before serving and its ``on_stop``
    functions after the drain, on that loop (``serve_with_lifespan``); a
    failing ``on_start`` raises ``OnStartError`` and nothing is served.

    Raises ``LoopUnavailable`` (one line, naming the extra to install) when
    ``loop_name`` is uvloop and uvloop is not installed.
    """
    loop = new_event_loop(loop_name)
    own_listener = listener is None
    if listener is None:
        listener = bind_listener(host, port)
    try:
        loop.run_until_complete(
            _main(
                app,
                listener,
                loop_name,
                graceful_timeout,
                limits,
                control,
                on_ready,
                ssl_context,
                metrics,
            )
        )
    finally:
        if own_listener:
            listener.close()
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _main(
    app: Axeom,
    listener: socket.socket,
    loop_name: str,
    graceful_timeout: float,
    limits: HandshakeLimits | None,
    control: str | None,
    on_ready: Callable[[tuple[str, int]], None] | None,
    ssl_context: ssl.SSLContext | None,
    metrics: NodeCollector | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    shutdown = asyncio.Event()

    stopped_by: list[int] = []

    def on_signal(signum: int) -> None:
        if not shutdown.is_set():
            stopped_by.append(signum)
            logger.info(
                "received %s: closing sockets with %d",
                signal.Signals(signum).name,
                close_code_for(signum),
            )
            shutdown.set()

    async def serving() -> None:
        """Serve, taking SIGTERM and SIGINT as a request to drain while it does.
        Afterwards they are ignored again (as ``serve_with_lifespan`` set them
        before this ran), not back to their defaults: a second signal must not
        kill the process during ``on_stop``."""
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await serve_listener(
                app,
                listener,
                limits=limits,
                shutdown=shutdown,
                graceful_timeout=graceful_timeout,
                control=control,
                loop_name=loop_name,
                on_ready=on_ready,
                ssl_context=ssl_context,
                metrics=metrics,
                close_code=lambda: close_code_for(stopped_by[0] if stopped_by else signal.SIGTERM),
            )
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_IGN)

    # The app's on_start before serving, its on_stop once drained, on this
    # loop (an OnStartError propagates: the caller makes it one line).
    await serve_with_lifespan(app, serving)
