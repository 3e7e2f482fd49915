"""One WebSocket on asyncio (or uvloop): an ``asyncio.Protocol`` that is
also the ``Connection`` its ``ws`` object talks to.

``data_received`` parses the bytes (``FrameConnection``) and runs
plain-function handlers inline through the same ``dispatch`` as the trio
runtime (``SocketDriver``); what they queued leaves in one ``transport.write``
per batch. A coroutine handler's rest runs in a task of this socket's own,
which then drives the socket until nothing is left to do (the next messages,
the ``drain`` handler) and ends; the loop never runs a coroutine outside a
task (``asyncio.timeout``, ``current_task()`` and cancellation need one). On
Python 3.12 and later the task starts eagerly: a handler that never really
waits costs no switch of the loop.

Bytes that arrive while this socket's handler runs in its task are kept
unread and reading is paused (``pause_reading``) until the handler is done,
so a slow handler pushes back on its own client through TCP and on nobody
else; reading is paused likewise while the kernel does not take our writes
(``pause_writing``, with write-buffer limits of 0: an exact "would block"
edge, as EPOLLOUT in the trio runtime) and while the pub/sub link is congested.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from ..ws._actor import Actor
from ..ws._driver import SocketDriver, websocket_for
from ..ws._frames import FrameConnection
from ..ws._upgrade import Upgrade
from ._wrong_loop import explain_wrong_loop

if TYPE_CHECKING:
    from ._runtime import AsyncioRuntime

__all__ = ["AsyncioConnection"]

logger = logging.getLogger("axeom.ws")


class _Actor(Actor):
    """The shared actor, with one line more when a handler failed because it
    awaited another event loop's primitive (see ``_wrong_loop``)."""

    __slots__ = ()

    def _fail(self, name: str, exc: Exception) -> Awaitable[None] | None:
        conn: AsyncioConnection = self.ws._conn  # type: ignore[assignment]
        explain_wrong_loop(exc, self.ws, conn.runtime.loop_name)
        return super()._fail(name, exc)


class AsyncioConnection(SocketDriver, asyncio.Protocol):
    """The ``Connection`` under a ``WebSocket`` on asyncio."""

    __slots__ = (
        "_drained",
        "_writable",
        "broken",
        "drain_due",
        "ending",
        "eof_pending",
        "finished",
        "lost",
        "owned",
        "reading_paused",
        "task",
        "trailing",
        "transport",
        "unread",
        "writing",
        "ws",
    )

    runtime: AsyncioRuntime

    def __init__(
        self,
        runtime: AsyncioRuntime,
        upgrade: Upgrade,
        frames: FrameConnection,
        *,
        socket_id: str | None = None,
        trailing: bytes = b"",
    ) -> None:
        route = upgrade.route
        self.runtime = runtime
        self.options = route.options
        self.frames = frames
        self.ws = websocket_for(self, runtime.app, upgrade, socket_id=socket_id)
        self.actor = _Actor(self.ws, route.handlers.bind(), self._left_dispatch)
        self.transport: asyncio.Transport | None = None
        self.trailing = trailing  # read with the request head: this socket's first bytes
        self.backlog: list[str | bytes] = []  # received, not handled yet
        self.unread: list[bytes] = []  # arrived while a handler ran in the task
        self.eof_pending = False  # the peer's EOF arrived while a handler ran
        self.in_dispatch = False
        self.flush_scheduled = False
        self.owned = False  # a task of this socket's own drives it (see the module doc)
        self.task: asyncio.Task[None] | None = None
        self.writing = False  # the kernel did not take a write whole (paused by the transport)
        self.reading_paused = False
        self.broken = False
        self.ending = False  # the TCP connection is being closed
        self.lost = False  # ... and is closed (``connection_lost``)
        self.finished = False
        self.drain_due = False
        self.active = True
        self.last_activity = runtime.loop.time()
        self.ping_sent_at: float | None = None
        self.close_started_at: float | None = None
        self._drained: list[asyncio.Future[None]] | None = None
        self._writable: list[asyncio.Future[None]] | None = None

    # -- Connection protocol (what ws.* calls; send_message and send_text are
    # SocketDriver's) ----------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        if self.frames.close(code, reason) and not self.in_dispatch and not self.flush_scheduled:
            self.flush_scheduled = True
            self.runtime.schedule_flush(self)
        self._wake_writable()  # a closing socket takes no more sends: stop waiting for it

    async def wait_drained(self) -> None:
        if self.frames.outbox and not self.writing:
            self._write()  # whoever queued it is waiting right here
        while (self.frames.outbox or self.writing) and not self.broken:
            if self._drained is None:
                self._drained = []
            await self._wait(self._drained)

    async def wait_writable(self) -> None:
        """Under the limit this returns without a switch of the loop, as
        asyncio's own ``drain()`` does: what the handler queued still leaves in
        one write, and a loop of sends waits here once it fills the outbox."""
        if not self._over_limit():
            return
        if self.frames.outbox and not self.writing:
            self._write()  # the sender may be a handler waiting right here
        while self._over_limit():
            if self._writable is None:
                self._writable = []
            await self._wait(self._writable)

    def _over_limit(self) -> bool:
        """True while a send would be dropped and waiting can change that."""
        frames = self.frames
        return (
            frames.buffered + frames.inflight >= frames.limit and frames.is_open and not self.broken
        )

    async def _wait(self, waiters: list[asyncio.Future[None]]) -> None:
        """One future per waiter: a cancelled waiter leaves the others waiting."""
        future = self.runtime.loop.create_future()
        waiters.append(future)
        try:
            await future
        finally:
            if future in waiters:
                waiters.remove(future)

    @property
    def buffered_amount(self) -> int:
        return self.frames.buffered + self.frames.inflight

    @property
    def is_open(self) -> bool:
        return self.frames.is_open and not self.broken

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Run ``open``, then the bytes read with the head, then serve."""
        # uvloop's transports implement the interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        # A pause as soon as a write is not taken whole, a resume once it is all
        # out: the readiness edge the trio runtime gets from EPOLLOUT.
        transport.set_write_buffer_limits(high=0, low=0)
        runtime = self.runtime
        runtime.connections.add(self)
        runtime.watch_timers(self.options)
        try:
            self.in_dispatch = True
            rest = self.actor.start_open()
            if rest is None:
                self.in_dispatch = False
            if self.trailing:
                self.unread.append(self.trailing)  # before anything read from the socket
                self.trailing = b""
            if rest is not None:
                self._own(rest)
            else:
                self._serve()
        except Exception as exc:
            self.fail_internally(exc)

    def data_received(self, data: bytes) -> None:
        self.active = True
        if self.owned:  # the handler's task reads it when the handler is done
            self.unread.append(data)
            self._pause_reading()
            return
        try:
            self.backlog += self.frames.receive(data)
            self._serve()
        except Exception as exc:
            self.fail_internally(exc)

    def eof_received(self) -> bool:
        """The peer closed its side: the frame layer says what is left to do;
        True keeps the transport open until our side is written and closed."""
        if self.owned:
            self.eof_pending = True
            return True
        try:
            self.frames.receive_eof()
            self._serve()
        except Exception as exc:
            self.fail_internally(exc)
        return True

    def pause_writing(self) -> None:
        self.writing = True
        assert self.transport is not None
        # Still ours until written: it counts against backpressure.
        self.frames.inflight = self.transport.get_write_buffer_size()
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing = False
        self.frames.inflight = 0
        if self.ending:
            return
        self._write()
        if self.writing:
            return
        # All out, even when nothing was left to write: whoever waits for the
        # write (``drain``) or for room under the limit (``await ws.send``) goes on.
        self._wake_drained()
        if not self.owned:
            self._serve()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self.broken = True
        self.writing = False
        self._release_waiters()
        if self.owned:
            if self.task is not None:
                self.task.cancel()  # the task ends the socket (``_drive``)
            return
        self._finish_inline()

    # -- serving, as far as it goes without waiting ---------------------------------

    def _serve(self) -> None:
        """Handle what was received, write; hand a coroutine's rest to a task."""
        rest = self._advance()
        if rest is not None:
            self._own(rest)
        elif self.broken or self.frames.eof:
            self._end_tcp()
        elif self.reading_paused:
            self._resume_reading()

    def _serve_if_idle(self) -> None:
        if not (self.owned or self.finished or self.ending):
            try:
                self._serve()
            except Exception as exc:
                self.fail_internally(exc)

    def _advance(self) -> Awaitable[None] | None:
        """Run the handlers of what arrived, the ``drain`` handler when due,
        and write what they queued; returns a handler's rest to await."""
        frames = self.frames
        while not self.broken:
            if self.unread:
                data = b"".join(self.unread) if len(self.unread) > 1 else self.unread[0]
                self.unread.clear()
                self.backlog += frames.receive(data)
            if self.eof_pending:
                self.eof_pending = False
                frames.receive_eof()
            if self.backlog:
                rest = self.dispatch()
                if rest is not None:
                    return rest
                if self.backlog:  # over the pub/sub work budget: let the process run
                    self._write()
                    self._pause_reading()
                    if not self.owned:
                        self.runtime.after_budget(self)
                    return None
            if self.drain_due and not self.actor.busy:
                self.drain_due = False
                self.in_dispatch = True
                rest = self.actor.start_drain()
                if rest is not None:
                    return rest
                self.in_dispatch = False
            if frames.outbox and not self.writing:
                self._write()
            if not (self.unread or self.eof_pending or (self.drain_due and not self.writing)):
                return None
        return None

    # -- reading --------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.ending:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        """Read again, unless something still holds the socket back."""
        if self.writing or self.owned or self.backlog or self.ending:
            return
        pubsub = self.runtime.pubsub
        if pubsub is not None and pubsub.congested:
            self.runtime.stall(self)  # resumed when the pub/sub link drains
            return
        self.reading_paused = False
        assert self.transport is not None
        self.transport.resume_reading()

    # -- writing ------------------------------------------------------------------

    def _write(self) -> None:
        """Write the outbox in one call, unless a write is still pending (then
        it leaves when the transport resumes writing)."""
        frames = self.frames
        if self.writing or self.broken or not frames.outbox:
            return
        chunks = frames.take_output()
        transport = self.transport
        assert transport is not None
        if len(chunks) == 1:
            transport.write(chunks[0])
        else:
            transport.writelines(chunks)
        if self.writing:  # paused during the write: the kernel did not take it whole
            self._wake_writable()  # what was written may have been enough
            return
        self._wake_drained()
        if frames.wants_drain:
            frames.wants_drain = False
            self._drain_soon()

    def flush_now(self) -> None:
        """Called by the runtime's flusher (sends from outside a handler)."""
        self.flush_scheduled = False
        if self.finished or self.ending:
            return
        self._write()
        if self.frames.eof and not self.owned:
            self._end_tcp()

    def _drain_soon(self) -> None:
        """Run the ``drain`` handler after the current handler, or soon."""
        self.drain_due = True
        if not self.owned:
            self.runtime.loop.call_soon(self._serve_if_idle)

    def _wake_drained(self) -> None:
        waiters = self._drained
        if waiters is not None and not self.frames.outbox:
            self._drained = None
            for future in waiters:
                if not future.done():
                    future.set_result(None)
        self._wake_writable()

    def _wake_writable(self) -> None:
        waiters = self._writable
        if waiters is not None and not self._over_limit():
            self._writable = None
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def _release_waiters(self) -> None:
        """The socket is gone: nobody waits for its writes any longer."""
        for waiters in (self._drained, self._writable):
            for future in waiters or ():
                if not future.done():
                    future.set_result(None)
        self._drained = self._writable = None

    def _left_dispatch(self) -> bool:
        """A handler really suspended: let what it queued leave now."""
        self.in_dispatch = False
        if self.frames.outbox and not self.writing and not self.broken:
            self._write()
        return True

    # -- a task of the socket's own, for handlers that await ------------------------

    def _own(self, rest: Awaitable[None]) -> None:
        self.owned = True
        task = self.runtime.start_task(self._drive(rest))
        if self.owned:  # an eager start may have run it to its end already
            self.task = task

    async def _drive(self, rest: Awaitable[None] | None) -> None:
        """Drive this socket from now on: await each handler's rest, serve the
        socket between them, end when there is nothing left to do."""
        pubsub = self.runtime.pubsub
        try:
            while rest is not None:
                await rest
                self.in_dispatch = False
                rest = self._advance()
                if rest is None and self.backlog and not self.broken and pubsub is not None:
                    await pubsub.pause()  # over the pub/sub work budget
                    rest = self._advance()
        except asyncio.CancelledError:
            if not self.broken:  # not ours (the loop is shutting down): pass it on
                self._abandon()
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # ours: the socket ends below, in this task
        except Exception as exc:  # a bug in Axeom: it costs this socket only
            logger.error("internal error running socket %s; dropped", self.ws.id, exc_info=exc)
            self.broken = True
        finally:
            self.owned = False
            self.task = None
        if self.lost:
            rest = self.finish()
            if rest is not None:
                await self.runtime.run_close(rest, self.options.close_timeout)
        elif self.broken or self.frames.eof:
            self._end_tcp()
        else:
            self._resume_reading()

    def _abandon(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.abort()

    # -- the end --------------------------------------------------------------------

    def _end_tcp(self) -> None:
        """Close the TCP connection: after what is queued when the closing
        handshake is done, at once when broken; ``connection_lost`` follows."""
        if self.ending:
            return
        self.ending = True
        transport = self.transport
        assert transport is not None
        if self.broken:
            transport.abort()
            return
        chunks = self.frames.take_output() if self.frames.outbox else None
        if chunks:
            transport.writelines(chunks)
        transport.close()  # writes what the transport still holds, then closes

    def _break(self) -> None:
        """The peer is gone, or the close timed out: end the socket now."""
        self.broken = True
        self._wake_writable()
        if self.owned and self.task is not None:
            self.task.cancel()
        if self.transport is not None and not self.lost:
            self.ending = True
            self.transport.abort()

    def fail_internally(self, exc: Exception) -> None:
        """A bug in Axeom while serving this socket: log it, drop this socket only."""
        logger.error("internal error running socket %s; dropped", self.ws.id, exc_info=exc)
        self._break()

    def finish(self) -> Awaitable[None] | None:
        """Out of the registry, ``close`` started; returns its rest, if any."""
        if self.finished:
            return None
        self.finished = True
        self.broken = True
        self.runtime.connections.discard(self)
        self._release_waiters()
        code, reason = self.frames.close_status()
        return self.actor.start_close(code, reason)

    def _finish_inline(self) -> None:
        try:
            rest = self.finish()
        except Exception as exc:
            logger.error("internal error closing socket %s", self.ws.id, exc_info=exc)
            return
        if rest is not None:
            self.runtime.start_close(rest, self.options.close_timeout)

    def __repr__(self) -> str:
        return f"<AsyncioConnection {self.ws.id}>"


class TLSConnection(AsyncioConnection):
    """An ``AsyncioConnection`` on asyncio's TLS transport, which differs in two ways.

    It does not resume a writer paused at a zero write limit once it has
    written everything (measured: the close handshake then never left), so a
    TLS socket is paused only when ``TLS_WRITE_HIGH`` bytes wait, as asyncio
    does by default. And it cannot stay half open: after the peer's EOF it
    closes whatever ``eof_received`` answers (and warns if that is True).
    """

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        cast(asyncio.Transport, transport).set_write_buffer_limits(high=TLS_WRITE_HIGH)

    def eof_received(self) -> bool:
        super().eof_received()
        return False


# Bytes a TLS socket's transport may hold before its writer is paused (asyncio's default).
TLS_WRITE_HIGH = 64 * 1024
