"""Services shared by every socket of one asyncio process: the flusher, the
timers' sweeper, the registry, the tasks of sockets and of ``close`` handlers.

One flusher callback writes what ``ws.send`` queued from outside a socket's
own handlers (publishes, sends to other sockets, pings), coalescing
everything queued for a socket since the last pass into one write. One
sweeper (a ``call_later`` chain) checks every socket's idle, keepalive and
close timers a few times per shortest timeout, so idle sockets cost no task
and no timer of their own. The same shape as the trio runtime's
``SocketRuntime``; the per-socket semantics are shared (``SocketDriver``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode

from .. import ws as _ws
from ..ws._driver import MAX_TICK, frames_for, sweep_tick
from ._connection import AsyncioConnection, TLSConnection

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = ["AsyncioRuntime"]

logger = logging.getLogger("axeom.ws")

# Bounds of the sweeper's tick: a quarter of the shortest timer, within these.
# Python 3.12 can start a task eagerly: a handler that completes without
# really waiting then costs no switch of the loop.
EAGER_TASKS = sys.version_info >= (3, 12)


async def _checkpoint() -> None:
    await asyncio.sleep(0)


class AsyncioRuntime:
    """Runs WebSocket connections for one app on the running asyncio loop.

    ``loop_name`` ("asyncio" or "uvloop") is what error messages call it.
    Call ``close()`` when done (it stops the sweeper; ``drain`` first).
    """

    def __init__(self, app: Axeom | None, *, loop_name: str = "asyncio") -> None:
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.loop_name = loop_name
        self.pubsub = app.pubsub if app is not None else None
        if self.pubsub is not None:
            self.pubsub.checkpoint = _checkpoint
        self.connections: set[AsyncioConnection] = set()
        # Tasks running a ``close`` handler's rest: drain waits for them too,
        # and cancels them at its deadline.
        self.closing: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # asyncio keeps only weak references
        self._dirty: list[AsyncioConnection] = []
        self._budget_reset = False
        self._stalled: list[AsyncioConnection] = []
        self._tick = MAX_TICK
        self._sweeper = self.loop.call_later(self._tick, self._sweep)

    # -- sockets ------------------------------------------------------------------

    def start_socket(
        self,
        sock: socket.socket,
        upgrade: _ws.Upgrade,
        trailing: bytes = b"",
        *,
        socket_id: str | None = None,
    ) -> None:
        """Run one upgraded socket (its 101 already written) from a connected
        stdlib socket, as a worker gets it from the acceptor; returns at once.
        ``trailing`` are bytes read past the request head: its first frames."""
        conn = AsyncioConnection(
            self, upgrade, frames_for(upgrade), socket_id=socket_id, trailing=trailing
        )
        self.start_task(self._attach(conn, sock))

    async def _attach(self, conn: AsyncioConnection, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: conn, sock)
        except OSError as exc:
            logger.warning("socket %s could not be started: %s", conn.ws.id, exc)
            sock.close()

    def adopt(
        self,
        transport: asyncio.Transport,
        upgrade: _ws.Upgrade,
        trailing: bytes = b"",
        *,
        socket_id: str | None = None,
        tls: bool = False,
    ) -> AsyncioConnection:
        """Run one upgraded socket on the transport its handshake was read
        from (the single-process server): the protocol is switched in place.
        ``tls``: that transport is asyncio's TLS one."""
        kind = TLSConnection if tls else AsyncioConnection
        conn = kind(self, upgrade, frames_for(upgrade), socket_id=socket_id, trailing=trailing)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        transport.resume_reading()
        return conn

    def start_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task this runtime keeps a reference to until it ends."""
        if EAGER_TASKS:
            task = asyncio.Task(coro, loop=self.loop, eager_start=True)  # type: ignore[call-arg]
        else:
            task = self.loop.create_task(coro)
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    # -- close handlers -----------------------------------------------------------

    def start_close(self, rest: Awaitable[None], timeout: float) -> None:
        """Run a ``close`` handler's rest in a task of its own, counted in
        ``closing`` at once: the task's first step comes later, and a drain
        that looked in between (its socket already out of ``connections``)
        would end without waiting for it."""
        task = self.start_task(self.run_close(rest, timeout))
        if not task.done():
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)

    async def run_close(self, rest: Awaitable[None], timeout: float) -> None:
        """Await a ``close`` handler's rest, cut at ``timeout`` or by ``drain``."""
        task = asyncio.current_task()
        assert task is not None
        self.closing.add(task)
        try:
            async with asyncio.timeout(timeout):
                await rest
        except TimeoutError:
            logger.warning("close handler still running after %ss; cancelled", timeout)
        except asyncio.CancelledError:
            if self.loop.is_closed():
                raise
        finally:
            self.closing.discard(task)

    async def drain(
        self, timeout: float, code: int = CloseCode.GOING_AWAY, batch: int = 500
    ) -> int:
        """Close every socket (``code``, in batches so a huge server stays
        responsive) and wait up to ``timeout`` for them and their ``close``
        handlers to finish; close handlers still running then are cancelled.
        Returns how many sockets were still open at the deadline."""
        try:
            async with asyncio.timeout(timeout):
                pending = [c for c in self.connections if c.is_open]
                for start in range(0, len(pending), batch):
                    for conn in pending[start : start + batch]:
                        conn.close(code, "server shutting down")
                    await asyncio.sleep(0)
                while self.connections or self.closing:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pass
        for task in list(self.closing):
            task.cancel()
        left = len(self.connections)
        for conn in list(self.connections):
            conn._break()
        return left

    # -- writes from outside a socket's handlers ----------------------------------------

    def schedule_flush(self, conn: AsyncioConnection) -> None:
        self._dirty.append(conn)
        if len(self._dirty) == 1:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        batch, self._dirty = self._dirty, []
        for conn in batch:
            try:
                conn.flush_now()
            except Exception as exc:
                conn.fail_internally(exc)

    # -- pub/sub budget and congestion ---------------------------------------------------

    def after_budget(self, conn: AsyncioConnection) -> None:
        """``conn`` stopped at the pub/sub work budget: the budget starts over
        once the loop has run what is ready, then ``conn`` goes on."""
        if not self._budget_reset:
            self._budget_reset = True
            self.loop.call_soon(self._reset_budget)
        self.loop.call_soon(conn._serve_if_idle)

    def _reset_budget(self) -> None:
        self._budget_reset = False
        if self.pubsub is not None:
            self.pubsub.work = 0

    def stall(self, conn: AsyncioConnection) -> None:
        """The pub/sub link is congested: ``conn`` reads again once it drains."""
        self._stalled.append(conn)
        if len(self._stalled) == 1:
            self.start_task(self._unstall())

    async def _unstall(self) -> None:
        assert self.pubsub is not None
        await self.pubsub.wait_flowing()
        stalled, self._stalled = self._stalled, []
        for conn in stalled:
            if not conn.finished:
                conn._serve_if_idle()

    # -- timers --------------------------------------------------------------------------

    def watch_timers(self, options: _ws.WSOptions) -> None:
        """Make the sweeper tick often enough for these options' timers."""
        tick = sweep_tick(options)
        if tick < self._tick:
            self._tick = tick
            self._sweeper.cancel()
            self._sweeper = self.loop.call_later(tick, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = self.loop.call_later(self._tick, self._sweep)
        now = self.loop.time()
        for conn in list(self.connections):
            try:
                conn.sweep(now)
            except Exception as exc:
                conn.fail_internally(exc)

    def close(self) -> None:
        """Stop the sweeper (after ``drain``: sockets no longer need it)."""
        self._sweeper.cancel()
