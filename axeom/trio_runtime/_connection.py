"""One WebSocket on trio: what ``ws.*`` calls, the handler dispatch both
drivers share (``dispatch``), timers, and the per-socket task loop.

The task loop is the driver for in-memory streams (the test kit) and where
the readiness loop cannot run; ``ReadyConnection`` (``_ready_connection``)
is the driver for real sockets.

The task reads, turns bytes into messages and runs the handlers one at a
time; it reads nothing more while a handler runs, so a slow handler pushes
back on its own client through TCP and on nobody else. Frames queued by
``ws.send`` leave in one write per read (or per wake-up of the runtime's
flusher when sent from outside a handler). A write that would block moves
to a writer task of its own, so a slow client never stalls the flusher.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..pubsub import WORK_BUDGET
from ..ws._actor import Actor
from ..ws._driver import SocketDriver, clock, websocket_for
from ..ws._frames import FrameConnection
from ..ws._options import WSOptions
from ..ws._upgrade import Upgrade
from ._transport import Transport, advance

if TYPE_CHECKING:
    from ._runtime import SocketRuntime

__all__ = ["NativeConnection", "clock"]

logger = logging.getLogger("axeom.ws")


class NativeConnection(SocketDriver):
    """The ``Connection`` under a ``WebSocket`` in the native runtime
    (``dispatch`` and the timers' ``sweep`` come from ``SocketDriver``)."""

    __slots__ = (
        "_drained",
        "_handler_idle",
        "_writable",
        "broken",
        "drain_due",
        "scope",
        "transport",
        "writing",
        "ws",
        "yielding",
    )

    runtime: SocketRuntime

    def __init__(
        self,
        runtime: SocketRuntime,
        transport: Transport,
        upgrade: Upgrade,
        frames: FrameConnection,
        *,
        socket_id: str | None = None,
    ) -> None:
        route = upgrade.route
        self.runtime = runtime
        self.transport = transport
        self.options: WSOptions = route.options
        self.frames = frames
        self.ws = websocket_for(self, runtime.app, upgrade, socket_id=socket_id)
        self.actor = Actor(self.ws, route.handlers.bind(), self._left_dispatch)
        self.backlog: list[str | bytes] = []  # received, not handled yet
        self.scope: trio.CancelScope | None = None
        self.in_dispatch = False
        self.yielding = False  # at the schedule point of an awaited send (not a wait)
        self.flush_scheduled = False
        self.writing = False
        self.broken = False
        self.drain_due = False
        self.active = True
        self.last_activity = trio.current_time()
        self.ping_sent_at: float | None = None
        self.close_started_at: float | None = None
        self._drained: trio.Event | None = None
        self._writable: trio.Event | None = None
        self._handler_idle: trio.Event | None = None

    # -- Connection protocol (what ws.* calls; send_message and send_text are
    # SocketDriver's) ----------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        if self.frames.close(code, reason) and not self.in_dispatch and not self.flush_scheduled:
            self.flush_scheduled = True
            self.runtime.schedule_flush(self)
        self._wake_writable()  # a closing socket takes no more sends: stop waiting for it

    async def wait_drained(self) -> None:
        if self.frames.outbox and not self.writing and not self.flush_scheduled:
            self.flush_scheduled = True  # whoever queued it may be waiting right here
            self.runtime.schedule_flush(self)
        while (self.frames.outbox or self.writing) and not self.broken:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()

    async def wait_writable(self) -> None:
        frames = self.frames
        if not self._over_limit():
            # A loop of awaited sends lets others run; a schedule point is not a
            # wait, so what the handler queued still leaves in one write.
            self.yielding = True
            try:
                await trio.lowlevel.checkpoint()
            finally:
                self.yielding = False
            return
        if frames.outbox and not self.writing and not self.flush_scheduled:
            self.flush_scheduled = True  # the sender may be a handler waiting right here
            self.runtime.schedule_flush(self)
        while self._over_limit():
            if self._writable is None:
                self._writable = trio.Event()
            await self._writable.wait()

    def _over_limit(self) -> bool:
        """True while a send would be dropped and waiting can change that."""
        frames = self.frames
        return (
            frames.buffered + frames.inflight >= frames.limit and frames.is_open and not self.broken
        )

    @property
    def buffered_amount(self) -> int:
        return self.frames.buffered + self.frames.inflight

    @property
    def is_open(self) -> bool:
        return self.frames.is_open and not self.broken

    # -- the socket's task ---------------------------------------------------

    async def run(self, trailing: bytes = b"") -> None:
        """Run the socket until it closes; ``trailing`` are bytes read with the head."""
        runtime = self.runtime
        runtime.connections.add(self)
        runtime.watch_timers(self.options)
        transport = self.transport
        frames = self.frames
        try:
            with trio.CancelScope() as self.scope:
                self.in_dispatch = True
                await self.actor.open()
                self.in_dispatch = False
                if frames.outbox:
                    await self.flush()
                if trailing:
                    await self._process(trailing)
                pubsub = runtime.pubsub
                while not frames.eof and not self.broken:
                    if pubsub is not None and pubsub.congested:
                        await pubsub.wait_flowing()  # backpressure on a publisher
                    data = await transport.receive(frames.pending_bytes())
                    if not data:
                        frames.receive_eof()
                        break
                    self.active = True
                    await self._process(data)
                await self._flush_before_close()
        finally:
            runtime.connections.discard(self)
            with trio.CancelScope(shield=True) as shield:
                shield.deadline = trio.current_time() + self.options.close_timeout
                runtime.closing.add(shield)
                try:
                    self.broken = True
                    await transport.aclose()
                    self._wake_drained()
                    code, reason = frames.close_status()
                    await self.actor.close(code, reason)
                finally:
                    runtime.closing.discard(shield)

    async def _process(self, data: bytes) -> None:
        actor = self.actor
        frames = self.frames
        pubsub = self.runtime.pubsub
        self.backlog += frames.receive(data)
        while self.backlog or frames.waiting:
            if not self.backlog:  # a close or failure that came after those messages
                self.backlog += frames.receive(b"")
                continue
            if actor.busy:
                await self._wait_handler_idle()
            rest = self.dispatch()
            if rest is not None:
                await rest
                self.in_dispatch = False
            if pubsub is not None and pubsub.work >= WORK_BUDGET:
                # Many deliveries: let the rest of the process run, and hold
                # this socket while the pub/sub link is congested.
                await pubsub.pause()
        if self.drain_due:
            self.drain_due = False
            await actor.drain()
        if frames.outbox:
            await self.flush()

    def _left_dispatch(self) -> bool:
        """A handler suspended: let what it queued leave now. False (not a
        wait) when it only passed the schedule point of an awaited send."""
        if self.yielding:
            return False
        self.in_dispatch = False
        if self.frames.outbox and not self.flush_scheduled:
            self.flush_scheduled = True
            self.runtime.schedule_flush(self)
        return True

    async def _wait_handler_idle(self) -> None:
        while self.actor.busy:
            if self._handler_idle is None:
                self._handler_idle = trio.Event()
            await self._handler_idle.wait()

    # -- writing ---------------------------------------------------------------

    async def flush(self) -> None:
        """Write the outbox until it is empty (one writer at a time)."""
        if self.writing or self.broken:
            return
        self.writing = True
        frames = self.frames
        transport = self.transport
        try:
            while frames.outbox:
                chunks = frames.take_output()
                sent = transport.try_send(chunks)  # usually all of it, without waiting
                left = chunks if sent is None else advance(chunks, sent)
                if left:
                    # Still ours until written: it counts against backpressure.
                    frames.inflight = sum(len(chunk) for chunk in left)
                    try:
                        await transport.send_all(left)
                    finally:
                        frames.inflight = 0
                    self._wake_writable()
        except trio.BrokenResourceError:
            self._break()
        finally:
            self.writing = False
        self._wake_drained()
        if frames.wants_drain and not self.broken:
            frames.wants_drain = False
            await self._run_drain()

    def flush_now(self) -> None:
        """Called by the runtime's flusher: write without waiting if possible,
        else hand the rest to a writer task of this socket's own."""
        self.flush_scheduled = False
        if self.writing or self.broken or not self.frames.outbox:
            return
        chunks = self.frames.take_output()
        try:
            sent = self.transport.try_send(chunks)
        except trio.BrokenResourceError:
            self._break()
            return
        left = advance(chunks, sent) if sent is not None else chunks
        if not left:
            self._wake_drained()
            if self.frames.wants_drain:
                self.frames.wants_drain = False
                self.runtime.nursery.start_soon(self._run_drain)
            return
        self.frames.put_back(left)
        self._wake_writable()  # what was written may have been enough
        self.runtime.nursery.start_soon(self.flush)

    async def _run_drain(self) -> None:
        if self.actor.busy or self.in_dispatch:
            self.drain_due = True  # the socket's task runs it after the current handler
            return
        await self.actor.drain()
        if self._handler_idle is not None:
            self._handler_idle.set()
            self._handler_idle = None
        if self.frames.outbox:
            await self.flush()

    async def _flush_before_close(self) -> None:
        if self.writing:
            await self.wait_drained()
        else:
            await self.flush()

    def _wake_drained(self) -> None:
        if self._drained is not None and not self.frames.outbox:
            self._drained.set()
            self._drained = None
        self._wake_writable()

    def _wake_writable(self) -> None:
        if self._writable is not None and not self._over_limit():
            self._writable.set()
            self._writable = None

    def _break(self) -> None:
        """The peer is gone: stop the socket's task (its ``finally`` cleans up)."""
        self.broken = True
        self._wake_writable()
        if self.scope is not None:
            self.scope.cancel()
