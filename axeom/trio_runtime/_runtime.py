"""Services shared by every socket of one process: readiness loop, flusher,
timers, registry.

Where epoll exists, every upgraded socket on a real socket is served by one
readiness loop (``_readiness``): an idle socket costs no task. Elsewhere,
and for in-memory streams (the test kit), each socket has a task of its own
(``NativeConnection.run``); both run the same per-socket semantics.

One flusher task writes what ``ws.send`` queued from outside a socket's own
handlers (publishes, sends to other sockets, pings), coalescing everything
queued for a socket since the last pass into one write. One sweeper task
checks every socket's idle, keepalive and close timers a few times per
shortest timeout, so idle sockets cost no task and no timer of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeGuard

import trio
from websockets.frames import CloseCode

from .. import ws as _ws
from ..ws._driver import MAX_TICK, frames_for, sweep_tick
from ._connection import NativeConnection
from ._readiness import Readiness, available
from ._ready_connection import ReadyConnection
from ._transport import SocketTransport, Transport

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = ["SocketRuntime", "open_socket_runtime"]


class SocketRuntime:
    """Runs WebSocket connections for one app inside one trio nursery."""

    def __init__(self, app: Axeom | None, nursery: trio.Nursery) -> None:
        self.app = app
        self.pubsub = app.pubsub if app is not None else None
        if self.pubsub is not None:
            self.pubsub.checkpoint = trio.lowlevel.checkpoint
        self.nursery = nursery
        self.connections: set[NativeConnection] = set()
        # Sockets whose TCP connection is gone but whose close handler still
        # runs (shielded, so that a cancelled worker still runs it): drain
        # waits for them too, and cuts them at its deadline.
        self.closing: set[trio.CancelScope] = set()
        self._dirty: list[NativeConnection] = []
        self._flusher_lot = trio.lowlevel.ParkingLot()
        self._tick = MAX_TICK
        self._tick_changed = trio.lowlevel.ParkingLot()
        self.readiness: Readiness | None = None  # set by open_socket_runtime where available

    def start_socket(
        self,
        transport: Transport,
        upgrade: _ws.Upgrade,
        trailing: bytes = b"",
        *,
        socket_id: str | None = None,
    ) -> None:
        """Hand over one upgraded socket (its handshake already answered): the
        runtime runs it and closes it at its end. Returns at once; on the
        readiness loop, ``open`` (if a plain function) has run when it does."""
        if self.readiness is not None and _readable_directly(transport):
            self._ready_connection(transport, upgrade, socket_id).start(trailing)
        else:
            self.nursery.start_soon(self._run_in_task, transport, upgrade, trailing, socket_id)

    async def run_socket(
        self,
        transport: Transport,
        upgrade: _ws.Upgrade,
        trailing: bytes = b"",
        *,
        socket_id: str | None = None,
    ) -> None:
        """Run one upgraded socket to its end (the handshake is already answered).
        Cancelling this call ends the socket (its ``close`` handler still runs)."""
        if self.readiness is None or not _readable_directly(transport):
            await self._run_in_task(transport, upgrade, trailing, socket_id)
            return
        conn = self._ready_connection(transport, upgrade, socket_id)
        ended = conn.ended = trio.Event()
        conn.start(trailing)
        try:
            await ended.wait()
        finally:
            if not ended.is_set():
                conn.abort()

    async def _run_in_task(
        self, transport: Transport, upgrade: _ws.Upgrade, trailing: bytes, socket_id: str | None
    ) -> None:
        conn = NativeConnection(self, transport, upgrade, frames_for(upgrade), socket_id=socket_id)
        await conn.run(trailing)

    def _ready_connection(
        self, transport: SocketTransport, upgrade: _ws.Upgrade, socket_id: str | None
    ) -> ReadyConnection:
        assert self.readiness is not None
        frames = frames_for(upgrade)
        return ReadyConnection(
            self, self.readiness, transport, upgrade, frames, socket_id=socket_id
        )

    async def drain(
        self, timeout: float, code: int = CloseCode.GOING_AWAY, batch: int = 500
    ) -> int:
        """Close every socket (``code``, in batches so a huge server stays
        responsive) and wait up to ``timeout`` for them and their ``close``
        handlers to finish; close handlers still running then are cancelled.
        Returns how many sockets were still open at the deadline."""
        with trio.move_on_after(timeout):
            pending = [c for c in self.connections if c.is_open]
            for start in range(0, len(pending), batch):
                for conn in pending[start : start + batch]:
                    conn.close(code, "server shutting down")
                await trio.sleep(0)
            while self.connections or self.closing:
                await trio.sleep(0.02)
        for scope in self.closing:
            scope.cancel()
        return len(self.connections)

    def schedule_flush(self, conn: NativeConnection) -> None:
        self._dirty.append(conn)
        if len(self._dirty) == 1:
            self._flusher_lot.unpark_all()

    def watch_timers(self, options: _ws.WSOptions) -> None:
        """Make the sweeper tick often enough for these options' timers."""
        tick = sweep_tick(options)
        if tick < self._tick:
            self._tick = tick
            self._tick_changed.unpark_all()

    async def _flusher(self) -> None:
        while True:
            if not self._dirty:
                await self._flusher_lot.park()
            batch, self._dirty = self._dirty, []
            for conn in batch:
                conn.flush_now()
            await trio.lowlevel.checkpoint()

    async def _sweeper(self) -> None:
        while True:
            with trio.move_on_after(self._tick):
                await self._tick_changed.park()
            now = trio.current_time()
            for conn in list(self.connections):
                conn.sweep(now)


@asynccontextmanager
async def open_socket_runtime(app: Axeom | None) -> AsyncIterator[SocketRuntime]:
    """A runtime whose flusher and sweeper live as long as the ``async with``.

    Leaving the block cancels every socket still running in it (their
    ``close`` handlers still run).
    """
    async with trio.open_nursery() as nursery:
        runtime = SocketRuntime(app, nursery)
        if available():
            runtime.readiness = Readiness(runtime)
            nursery.start_soon(runtime.readiness.run)
        nursery.start_soon(runtime._flusher)
        nursery.start_soon(runtime._sweeper)
        try:
            yield runtime
        finally:
            nursery.cancel_scope.cancel()


def _readable_directly(transport: Transport) -> TypeGuard[SocketTransport]:
    """A plaintext socket, which the readiness loop reads from the kernel
    itself. Not a TLS one (a subclass): OpenSSL may hold decrypted bytes back,
    which raise no epoll edge, so TLS sockets run in a task each."""
    return type(transport) is SocketTransport
