"""One WebSocket driven by the process's readiness loop instead of a task of its own.

The loop (``_readiness.Readiness``) calls ``serve`` when the socket's
edge-triggered registration fires. ``serve`` reads until the kernel has no
more (bounded per turn, so a busy socket cannot starve its neighbours), runs
plain-function handlers inline through the same ``dispatch`` as the task
driver, and writes what they queued in one write. A write the kernel does not
take whole waits for the EPOLLOUT edge; nothing more is read from the socket
meanwhile (its client is pushed back through TCP, as with a task).

A handler that returns something to await (a coroutine handler) gets a task
of this socket's own, started once and kept until the socket ends: the loop
wakes it on this socket's edges, and it runs the socket until there is
nothing to do, then parks (no ``wait_readable`` and no ``epoll_ctl`` per
message). While the task has the socket, the loop reads nothing from it and
only remembers that it is readable; the task reads it when its handler is
done, so no edge is lost. A trio coroutine must end in the task that started
it, so the loop never runs one itself, not even "until it suspends".
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

import trio

from ..pubsub import WORK_BUDGET
from ..ws._frames import FrameConnection
from ..ws._upgrade import Upgrade
from ._connection import NativeConnection, clock
from ._transport import SocketTransport, advance

if TYPE_CHECKING:
    from ._readiness import Readiness
    from ._runtime import SocketRuntime

__all__ = ["ReadyConnection"]

logger = logging.getLogger("axeom.ws")

# Bytes read from one socket in one turn before the next ready socket gets
# its turn: many messages of a pipelining client, a bounded delay for the others.
READ_BUDGET = 256 * 1024
# Longest a run of handlers (and reads) goes on before the loop, or a socket's
# own task, lets the rest of the process run (heartbeats, timers, other
# sockets). Short next to any timer, long enough for a burst of publishes to
# reach its subscribers in one write each: measured, 20 publishes to 500
# subscribers take 40 to 60 ms on a slow, shared core, and 20 ms cut them into
# two or three writes per subscriber (fan-out down to two thirds of the
# per-socket-task runtime's; 5 ms had halved it). Pub/sub deliveries have
# their own bound (WORK_BUDGET).
TIME_BUDGET = 0.1


class ReadyConnection(NativeConnection):
    """A ``NativeConnection`` whose reads and writes are driven by readiness."""

    __slots__ = (
        "_parked",
        "ended",
        "fd",
        "finished",
        "hung_up",
        "loop",
        "owned",
        "pending",
        "queued",
        "readable",
        "sock",
        "turn_ends",
    )

    def __init__(
        self,
        runtime: SocketRuntime,
        loop: Readiness,
        transport: SocketTransport,
        upgrade: Upgrade,
        frames: FrameConnection,
        *,
        socket_id: str | None = None,
    ) -> None:
        super().__init__(runtime, transport, upgrade, frames, socket_id=socket_id)
        self.loop = loop
        self.sock = transport.sock
        self.fd = -1
        self.readable = True  # until a read says otherwise: bytes may be waiting already
        self.hung_up = False  # an edge said the peer's FIN (or reset) has arrived
        self.queued = False  # in the loop's ready queue
        self.pending: list[Any] | None = None  # what a blocked write still has to write
        self.owned = False  # a task of this socket's own drives it (see the module doc)
        self.finished = False
        self.ended: trio.Event | None = None  # set at the very end, for ``run_socket``
        self._parked: trio.lowlevel.Task | None = None
        self.turn_ends = 0.0  # when the current turn's handlers should let others run
        self.actor.on_suspend = None  # the socket's task notes a handler's waits itself

    # -- start and the loop's entry points --------------------------------------

    def start(self, trailing: bytes = b"") -> None:
        """Run ``open``, then the bytes read with the head, then serve."""
        self.loop.register(self)
        runtime = self.runtime
        runtime.connections.add(self)
        runtime.watch_timers(self.options)
        try:
            self._start(trailing)
        except Exception as exc:
            self.fail_internally(exc)

    def _start(self, trailing: bytes) -> None:
        self.in_dispatch = True
        rest = self.actor.start_open()
        if rest is not None:
            self._own(self._opening(rest, trailing))
            return
        self.in_dispatch = False
        if trailing:
            self.backlog += self.frames.receive(trailing)
        self.serve(clock() + TIME_BUDGET)
        if self.wants_service():
            self.loop.schedule(self)

    async def _opening(self, rest: Awaitable[None], trailing: bytes) -> None:
        await rest
        if trailing:  # before anything read from the socket
            self.backlog += self.frames.receive(trailing)

    def serve(self, deadline: float) -> None:
        """Serve the socket as far as it goes without waiting (the loop's turn)."""
        if self.owned:
            self._wake_task()
            return
        rest = self._advance(deadline)
        if rest is not None:
            self._own(rest)
        elif self.ending():
            self._end_inline()

    def on_event(self, writable: bool, readable: bool, hung_up: bool) -> None:
        """An edge of this socket's registration (called by the loop); ``hung_up``:
        the peer's FIN or a reset is among the bytes to read."""
        if writable and self.writing:
            self._write()
        if readable:
            self.readable = True
        if hung_up:
            self.hung_up = True
        if self.owned:
            self._wake_task()

    def wants_service(self) -> bool:
        """True when a turn of the loop has something to do for this socket."""
        if self.owned or self.finished:
            return False
        if self.broken:
            return True
        if self.writing or self.actor.busy:
            return False
        if self.backlog or self.drain_due or self.frames.eof:
            return True
        return self.readable and not self.loop.stalled

    def ending(self) -> bool:
        return self.broken or (self.frames.eof and not self.writing)

    # -- the per-socket semantics, as far as they go without waiting --------------

    def _advance(self, deadline: float) -> Awaitable[None] | None:
        """Handle what was received, write, read more; repeat while it can.
        Returns a handler's rest to await (the caller gives it to a task)."""
        frames = self.frames
        pubsub = self.runtime.pubsub
        budget = READ_BUDGET
        self.turn_ends = deadline
        while not self.broken:
            if self.backlog:
                if clock() >= deadline:  # the turn is over (a socket's task: see _run_task)
                    if frames.outbox and not self.writing:
                        self._write()
                    return None
                rest = self.dispatch(deadline)
                if rest is not None:
                    return rest
                if self.backlog:  # out of time or pub/sub budget: the caller yields
                    if frames.outbox and not self.writing:
                        self._write()  # what this turn's handlers queued leaves now
                    return None
            if frames.waiting:  # a close or failure that came after those messages
                self.backlog += frames.receive(b"")
                continue
            if self.drain_due and not self.actor.busy:
                self.drain_due = False
                self.in_dispatch = True
                rest = self.actor.start_drain()
                if rest is not None:
                    return rest
                self.in_dispatch = False
            if frames.outbox and not self.writing:
                self._write()
            if self.writing or frames.eof or not self.readable or budget <= 0:
                return None
            if pubsub is not None and (pubsub.congested or pubsub.work >= WORK_BUDGET):
                if pubsub.congested:
                    self.loop.stall()  # read nothing more until the link drains
                return None
            if clock() >= deadline:
                return None
            budget -= self._read()
        return None

    def _read(self) -> int:
        """One read into ``backlog``; the bytes read."""
        scratch = self.loop.scratch
        size = len(scratch)
        try:
            count = self.sock.recv_into(scratch)
        except BlockingIOError:
            self.readable = False
            return 0
        except OSError:  # reset, unreachable...: the peer is gone
            count = 0
        if not count:
            self.readable = False
            self.frames.receive_eof()
            return 0
        # A short read emptied the kernel's buffer: bytes arriving after it
        # raise a new edge, so the read that would only say EAGAIN is skipped.
        # Not once the peer hung up: its FIN came with the edge already taken,
        # and only the next read (returning 0) reports it.
        if count < size and not self.hung_up:
            self.readable = False
        self.active = True
        # A view of the loop's buffer: ``receive`` copies whatever it keeps.
        self.backlog += self.frames.receive(scratch[:count])  # type: ignore[arg-type]
        return count

    async def wait_writable(self) -> None:
        """``await ws.send``: under the backpressure limit and within the turn's
        time budget, a cancellation point without a schedule point (measured: that
        reschedule, a second task switch per message, was a sixth of a coroutine
        echo's instructions).

        Nothing is starved by it: once the turn's time is up the send is a full
        checkpoint and a new turn begins, so a loop of awaited sends lets the
        rest of the process run (timers, heartbeats, other sockets) at least once
        per ``TIME_BUDGET``, as the loop does between its batches; over the limit
        it really waits, as before. Either way what the handler queued leaves
        when it waits or returns, in one write."""
        if clock() < self.turn_ends and not self._over_limit():
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        await NativeConnection.wait_writable(self)
        self.turn_ends = clock() + TIME_BUDGET

    # -- writing ------------------------------------------------------------------

    def flush_now(self) -> None:
        """Called by the runtime's flusher."""
        self.flush_scheduled = False
        if not self.writing and not self.finished:
            self._write()

    def _write(self) -> None:
        """Write the outbox (after what a blocked write kept); what the kernel
        does not take waits for the next EPOLLOUT edge (``on_event``)."""
        frames = self.frames
        while not self.broken:
            chunks = self.pending
            if chunks is None:
                if not frames.outbox:
                    return
                chunks = frames.take_output()
            try:
                sent = self.transport.try_send(chunks)
            except trio.BrokenResourceError:
                self._break()
                return
            left = advance(chunks, sent or 0)
            if left:
                # Still ours until written: it counts against backpressure.
                self.pending = left
                frames.inflight = sum(len(chunk) for chunk in left)
                if sent:
                    continue  # until the kernel says it would block: then an edge follows
                self.writing = True
                self._wake_writable()  # what was written may have been enough
                return
            if self.pending is not None:
                self.pending = None
                frames.inflight = 0
                self.writing = False
            self._wake_drained()
            if frames.wants_drain:
                frames.wants_drain = False
                self._drain_soon()

    def _drain_soon(self) -> None:
        """Run the ``drain`` handler after the current handler, or now."""
        self.drain_due = True
        if self.owned:
            self._wake_task()
        elif not (self.in_dispatch or self.actor.busy):
            self.loop.schedule(self)

    # -- a task of the socket's own, for handlers that await ------------------------

    def _own(self, rest: Awaitable[None]) -> None:
        self.owned = True
        self.runtime.nursery.start_soon(self._task, self._run_task(rest))

    async def _task(self, run: Coroutine[Any, Any, None]) -> None:
        await self._noting_waits(run)

    @types.coroutine
    def _noting_waits(self, task: Coroutine[Any, Any, None]) -> Generator[Any, Any, None]:
        """Drive the socket's task as trio would, and when it suspends while a
        handler runs (the handler waits), first let what the handler queued
        leave (``_left_dispatch``). One frame around the task for its whole
        life, passed once per suspension (the park between messages), instead
        of one around each handler run (measured: that cost 5% of a coroutine
        echo, its ``StopIteration`` per message most of it)."""
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = task.send(value) if error is None else task.throw(error)
            except StopIteration:
                return
            if self.in_dispatch:
                self._left_dispatch()
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # delivered into the task, as await does
                value, error = None, exc

    async def _run_task(self, rest: Awaitable[None] | None) -> None:
        """Drive this socket from now on: await each handler's rest, serve the
        socket between them, park when there is nothing to do."""
        pubsub = self.runtime.pubsub
        try:
            with trio.CancelScope() as self.scope:
                if self.broken:
                    self.scope.cancel()
                # One turn lasts from a wake to the next yield, over as many
                # messages as it takes: handlers that never wait must not hold
                # the process beyond TIME_BUDGET (``_advance`` ends the turn).
                deadline = clock() + TIME_BUDGET
                task = trio.lowlevel.current_task()
                while True:
                    if rest is not None:
                        await rest
                        self.in_dispatch = False
                    rest = self._advance(deadline)
                    if rest is not None:
                        continue
                    if self.ending():
                        break
                    if not self._has_work():  # parked until an edge or a drain is due
                        self._parked = task
                        await trio.lowlevel.wait_task_rescheduled(self._abort_park)
                    elif pubsub is not None and (pubsub.congested or pubsub.work >= WORK_BUDGET):
                        await pubsub.pause()
                    else:
                        await trio.lowlevel.checkpoint()
                    deadline = clock() + TIME_BUDGET
        except Exception:  # a bug in Axeom: it costs this socket only
            logger.exception("internal error running socket %s; dropped", self.ws.id)
        finally:
            await self._end_in_task()

    def _has_work(self) -> bool:
        if self.writing:
            return False
        return self.readable or bool(self.backlog) or self.drain_due or self.frames.eof

    def _abort_park(self, _: Any) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake_task(self) -> None:
        task = self._parked
        if task is not None:
            self._parked = None
            trio.lowlevel.reschedule(task)

    # -- the end --------------------------------------------------------------------

    def _break(self) -> None:
        """The peer is gone (or the close timed out): end the socket soon."""
        self.broken = True
        self._wake_writable()
        if self.owned:
            if self.scope is not None:
                self.scope.cancel()
        elif not self.finished:
            self.loop.schedule(self)

    def fail_internally(self, exc: Exception) -> None:
        """A bug in Axeom while serving this socket: log it, drop this socket only."""
        logger.error("internal error running socket %s; dropped", self.ws.id, exc_info=exc)
        if not self.finished:
            self.broken = True
            if self.owned:
                self._break()
            else:
                self._end_inline()

    def abort(self) -> None:
        """End the socket from outside (its ``run_socket`` was cancelled)."""
        self._break()

    def finish(self) -> Awaitable[None] | None:
        """Out of the loop and the registry, TCP closed, ``close`` started;
        returns the ``close`` handler's rest, if any."""
        if self.finished:
            return None
        self.finished = True
        self.runtime.connections.discard(self)
        self.broken = True
        self.loop.unregister(self)
        self.transport.close()
        self._wake_drained()
        code, reason = self.frames.close_status()
        rest = self.actor.start_close(code, reason)
        if rest is None:
            self._ended()
        return rest

    def _end_inline(self) -> None:
        rest = self.finish()
        if rest is not None:
            self.runtime.nursery.start_soon(self.await_close, rest, self.closing_scope())

    async def _end_in_task(self) -> None:
        rest = self.finish()
        if rest is not None:
            await self.await_close(rest, self.closing_scope())

    def closing_scope(self) -> trio.CancelScope:
        """The scope a ``close`` handler's rest runs in: shielded (a cancelled
        worker still runs it), cut at ``close_timeout`` or by ``runtime.drain``.
        Registered at once, so that a drain never misses a close still to start."""
        scope = trio.CancelScope(
            shield=True, deadline=trio.current_time() + self.options.close_timeout
        )
        self.runtime.closing.add(scope)
        return scope

    async def await_close(self, rest: Awaitable[None], scope: trio.CancelScope) -> None:
        try:
            with scope:
                await rest
        finally:
            self.runtime.closing.discard(scope)
            self._ended()

    def _ended(self) -> None:
        if self.ended is not None:
            self.ended.set()
