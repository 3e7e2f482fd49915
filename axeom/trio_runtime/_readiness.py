"""One readiness loop per process: every upgraded socket registered once in
one edge-triggered epoll, served from one task.

trio's own ``wait_readable`` costs an ``epoll_ctl`` and a task reschedule
per wait, that is per message on a request/response socket: measured, that
is what held a trio server at about two thirds of the fastest asyncio one.
Here each socket is registered once (``EPOLLIN | EPOLLOUT | EPOLLRDHUP |
EPOLLET``) in an epoll of our own; the loop waits on that epoll's descriptor
with ``trio.lowlevel.wait_readable`` (one wait for all sockets), then serves
every ready socket inline (``ReadyConnection.serve``).

The work per wake is bounded (sockets served, time, pub/sub deliveries;
bytes per socket in ``ReadyConnection``), and the loop passes a checkpoint
between batches, so heartbeats, timers, the hub link and new hand-offs run
even under full load or a handler that blocks. Ready sockets are served
round robin: one still readable after its turn goes to the back of the queue.
"""

from __future__ import annotations

import contextlib
import select
from collections import deque
from typing import TYPE_CHECKING

import trio

from ..pubsub import WORK_BUDGET
from ._connection import clock
from ._ready_connection import TIME_BUDGET, ReadyConnection

if TYPE_CHECKING:
    from ._runtime import SocketRuntime

__all__ = ["Readiness", "available"]

_READ_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_WRITE_EVENTS = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_HANGUP_EVENTS = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_MASK = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
# Events taken from the kernel per poll; more wait for the next batch.
MAX_EVENTS = 1024
# Socket turns per batch before the loop lets the rest of the process run
# (a batch also ends after TIME_BUDGET): amortises the wait over many sockets.
BATCH_SOCKETS = 256
# Every socket of the loop reads into this one buffer (the frame layer copies
# what it keeps): no allocation per read. Four reads' worth of a large frame.
SCRATCH_SIZE = 256 * 1024


def available() -> bool:
    """True where this loop can run (Linux); elsewhere sockets keep a task each."""
    return hasattr(select, "epoll")


class Readiness:
    """The epoll, the ready queue and the loop of one ``SocketRuntime``."""

    def __init__(self, runtime: SocketRuntime) -> None:
        self.runtime = runtime
        self._epoll = select.epoll()
        self._fd = self._epoll.fileno()
        self._sockets: dict[int, ReadyConnection] = {}
        self._ready: deque[ReadyConnection] = deque()
        self._sleeping: trio.CancelScope | None = None
        self.scratch = memoryview(bytearray(SCRATCH_SIZE))
        # While the pub/sub link is congested, nothing is read (publishers are
        # slowed at the source); writes and ends go on.
        self.stalled = False

    def register(self, conn: ReadyConnection) -> None:
        conn.fd = conn.sock.fileno()
        self._sockets[conn.fd] = conn
        self._epoll.register(conn.fd, _MASK)

    def unregister(self, conn: ReadyConnection) -> None:
        """Before its descriptor is closed: a closed number is soon reused."""
        if self._sockets.get(conn.fd) is conn:
            del self._sockets[conn.fd]
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(conn.fd)

    def schedule(self, conn: ReadyConnection) -> None:
        """Serve ``conn`` in the next batch (called from outside the loop too)."""
        if not conn.queued:
            conn.queued = True
            self._ready.append(conn)
            if self._sleeping is not None:
                self._sleeping.cancel()

    def stall(self) -> None:
        """The pub/sub link is congested: read nothing until it drains."""
        if not self.stalled:
            self.stalled = True
            self.runtime.nursery.start_soon(self._unstall)

    async def _unstall(self) -> None:
        pubsub = self.runtime.pubsub
        assert pubsub is not None
        try:
            await pubsub.wait_flowing()
        finally:
            self.stalled = False
        for conn in self._sockets.values():  # their edges were taken meanwhile
            if not conn.queued and conn.wants_service():
                conn.queued = True
                self._ready.append(conn)
        if self._ready and self._sleeping is not None:
            self._sleeping.cancel()

    async def run(self) -> None:
        """The loop; when cancelled, every socket it serves is closed and its
        ``close`` handler run (sockets with a task of their own do that themselves)."""
        try:
            while True:
                if not self._ready:
                    with trio.CancelScope() as self._sleeping:
                        await trio.lowlevel.wait_readable(self._fd)
                    self._sleeping = None
                self._collect()
                self._serve_batch()
                await self._yield()
        finally:
            await self._close_all()

    def _collect(self) -> None:
        sockets = self._sockets
        ready = self._ready
        for fd, events in self._epoll.poll(0, MAX_EVENTS):
            conn = sockets.get(fd)
            if conn is None:
                continue
            try:
                conn.on_event(
                    bool(events & _WRITE_EVENTS),
                    bool(events & _READ_EVENTS),
                    bool(events & _HANGUP_EVENTS),
                )
            except Exception as exc:
                conn.fail_internally(exc)
            # (an owned socket was woken by ``on_event``: its task serves it)
            if not (conn.queued or conn.owned) and conn.wants_service():
                conn.queued = True
                ready.append(conn)

    def _serve_batch(self) -> None:
        ready = self._ready
        pubsub = self.runtime.pubsub
        deadline = clock() + TIME_BUDGET
        for _ in range(min(len(ready), BATCH_SOCKETS)):
            conn = ready.popleft()
            conn.queued = False
            try:
                conn.serve(deadline)
            except Exception as exc:
                conn.fail_internally(exc)
            if not conn.queued and conn.wants_service():
                conn.queued = True
                ready.append(conn)  # round robin: after every other ready socket
            if clock() >= deadline or (pubsub is not None and pubsub.work >= WORK_BUDGET):
                break

    async def _yield(self) -> None:
        """Let the rest of the process run between batches."""
        pubsub = self.runtime.pubsub
        if pubsub is not None and pubsub.work >= WORK_BUDGET:
            pubsub.work = 0  # what ``pubsub.pause`` does; the link's congestion stalls reads
            await trio.lowlevel.checkpoint()
        elif self._ready:
            await trio.lowlevel.checkpoint()

    async def _close_all(self) -> None:
        conns = [conn for conn in self._sockets.values() if not conn.owned]
        rests = [(conn, rest) for conn in conns if (rest := conn.finish()) is not None]
        with contextlib.suppress(OSError, ValueError):
            trio.lowlevel.notify_closing(self._fd)
        self._epoll.close()
        if not rests:
            return
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for conn, rest in rests:
                    nursery.start_soon(conn.await_close, rest, conn.closing_scope())
