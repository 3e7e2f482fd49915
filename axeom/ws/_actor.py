"""Runs one socket's handlers: in order, one at a time, failures contained.

Loop-agnostic: this module only awaits what user handlers return. The trio
runtime, the asyncio runtime, the ASGI adapter and the test kit drive it.
Each handler is started by a plain call (``start_*``) that runs a
plain-function handler to its end and returns None, or returns what is left
to await (a coroutine handler's coroutine, not yet started): a readiness loop
runs plain handlers inline and gives only that rest to a task.

Whatever ends a socket, ``close`` runs exactly once; an exception in any
handler is logged with its traceback, passed to ``error``, and closes only
this socket with 1011 (the peer never sees the exception text).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from websockets.frames import CloseCode

from .._call import call_now, noting_suspension
from .._loops import wrong_loop_hint
from ._handlers import BoundHandlers
from ._socket import WebSocket
from ._tally import DURATION_BOUNDS, TALLY, clock

__all__ = ["Actor", "handler_frame"]

logger = logging.getLogger("axeom.ws")

INTERNAL_ERROR = CloseCode.INTERNAL_ERROR


class Actor:
    """The handler side of one socket.

    ``on_suspend`` is called when a coroutine handler first really suspends
    (awaits something not ready): the adapter uses it to flush what the
    handler queued so far instead of holding it until the handler returns
    (it returns False for a mere schedule point: then the next one counts).
    ``busy`` is true from a handler's start until its rest (if any) is done.
    """

    __slots__ = ("_closed", "busy", "handlers", "on_suspend", "ws")

    def __init__(
        self,
        ws: WebSocket,
        handlers: BoundHandlers,
        on_suspend: Callable[[], bool | None] | None = None,
    ) -> None:
        self.ws = ws
        self.handlers = handlers
        self.on_suspend = on_suspend
        self.busy = False
        self._closed = False

    # -- started by a plain call: None when done, else the rest to await --------

    def start_open(self) -> Awaitable[None] | None:
        app = self.ws.app
        if app is not None:
            app.pubsub.add_socket(self.ws)  # addressable by app.send from now on
        if self.handlers.open is None:
            return None
        return self._start("open", self.handlers.open, (self.ws,))

    def start_message(self, message: str | bytes) -> Awaitable[None] | None:
        handler = self.handlers.message
        if handler is None or self._closed:
            return None
        return self._start("message", handler, (self.ws, message))

    def start_drain(self) -> Awaitable[None] | None:
        if self.handlers.drain is None or self._closed:
            return None
        return self._start("drain", self.handlers.drain, (self.ws,))

    def start_close(self, code: int, reason: str) -> Awaitable[None] | None:
        """Start the ``close`` handler; every call after the first does nothing."""
        if self._closed:
            return None
        self._closed = True
        TALLY.closed(code)
        ws = self.ws
        if ws.app is not None:  # no more deliveries to a closed socket
            ws.app.pubsub.remove_socket(ws, ws.subscriptions)
            ws._topics = None
        if ws._on_end is not None:  # it no longer counts as open (connection limits)
            ws._on_end()
        if self.handlers.close is None:
            return None
        try:
            pending = call_now(self.handlers.close, (ws, code, reason))
        except Exception:
            self._log_close_failure()
            return None
        return None if pending is None else self._closing(pending)

    # -- the same, awaited (for a driver that has a task at hand) ----------------

    async def open(self) -> None:
        rest = self.start_open()
        if rest is not None:
            await rest

    async def message(self, message: str | bytes) -> None:
        rest = self.start_message(message)
        if rest is not None:
            await rest

    async def drain(self) -> None:
        rest = self.start_drain()
        if rest is not None:
            await rest

    async def close(self, code: int, reason: str) -> None:
        """Run the ``close`` handler; every call after the first does nothing."""
        rest = self.start_close(code, reason)
        if rest is not None:
            await rest

    @property
    def closed(self) -> bool:
        return self._closed

    # -- internals ----------------------------------------------------------------

    def _start(
        self, name: str, handler: Callable[..., Any], args: tuple[Any, ...]
    ) -> Awaitable[None] | None:
        self.busy = True
        started = clock()
        try:
            pending = call_now(handler, args)
        except Exception as exc:
            TALLY.handler_took(clock() - started)
            rest = self._fail(name, exc)
            if rest is None:
                self.busy = False
                return None
            return self._busy_until(rest)
        if pending is None:
            self.busy = False
            # Inline (not handler_took): this is the per-message path of plain handlers.
            elapsed = clock() - started
            tally = TALLY
            tally.durations[bisect_left(DURATION_BOUNDS, elapsed)] += 1
            tally.duration_sum += elapsed
            return None
        return self._finish(name, pending, started)

    async def _finish(self, name: str, pending: Awaitable[Any], started: float) -> None:
        """Await a coroutine handler's rest; its duration runs until it returns."""
        try:
            await noting_suspension(pending, self.on_suspend)
        except Exception as exc:
            TALLY.handler_took(clock() - started)
            started = -1.0
            rest = self._fail(name, exc)
            if rest is not None:
                await rest
        finally:
            self.busy = False
            if started >= 0:
                TALLY.handler_took(clock() - started)

    async def _busy_until(self, rest: Awaitable[None]) -> None:
        try:
            await rest
        finally:
            self.busy = False

    def _fail(self, name: str, exc: Exception) -> Awaitable[None] | None:
        """Log, call ``error``, close with 1011; the ``error`` handler's rest if any."""
        ws = self.ws
        TALLY.failed(ws.route, name)
        hint = wrong_loop_hint(exc)
        logger.error(
            "%s handler of socket %s (%s) raised; closing it with 1011%s",
            name,
            ws.id,
            ws.path,
            f": {hint}" if hint else "",
            exc_info=exc,
        )
        if self.handlers.error is not None:
            try:
                pending = call_now(self.handlers.error, (ws, exc))
            except Exception:
                logger.exception("error handler of socket %s raised", ws.id)
            else:
                if pending is not None:
                    return self._after_error(pending)
        self._close_failed()
        return None

    async def _after_error(self, pending: Awaitable[Any]) -> None:
        try:
            await noting_suspension(pending, self.on_suspend)
        except Exception:
            logger.exception("error handler of socket %s raised", self.ws.id)
        self._close_failed()

    def _close_failed(self) -> None:
        if self.ws.is_open:
            self.ws.close(INTERNAL_ERROR, "internal error")

    async def _closing(self, pending: Awaitable[Any]) -> None:
        try:
            await pending
        except Exception:
            self._log_close_failure()

    def _log_close_failure(self) -> None:
        logger.exception("close handler of socket %s (%s) raised", self.ws.id, self.ws.path)


# The frames of Actor methods that a handler of the socket runs under, and the
# handler each stands for (None: the method's ``name`` local says which).
_HANDLER_CODES: dict[Any, str | None] = {
    Actor._start.__code__: None,
    Actor._finish.__code__: None,
    Actor.start_close.__code__: "close",
    Actor._closing.__code__: "close",
    Actor._after_error.__code__: "error",
    Actor._busy_until.__code__: "error",
}


def handler_frame(frame: FrameType) -> tuple[Actor, str] | None:
    """The actor and handler name if ``frame`` is an ``Actor`` method that
    runs one of its socket's handlers, else None.

    Found from the stack rather than recorded on each call, so that a log
    record (or a watchdog looking at a blocked loop) can tell which socket's
    handler runs while the per-message path stores nothing: only code that
    asks pays, and it may ask from another thread (reading a frame's locals
    does not change what that thread runs).
    """
    if frame.f_code not in _HANDLER_CODES:
        return None
    local = frame.f_locals
    actor = local.get("self")
    if not isinstance(actor, Actor):
        return None
    name = _HANDLER_CODES[frame.f_code] or local.get("name")
    return actor, name if isinstance(name, str) else "?"
