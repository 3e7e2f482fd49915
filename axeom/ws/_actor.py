"""Runs one socket's handlers: in order, one at a time, failures contained.

Loop-agnostic: this module only awaits what user handlers return. The trio
runtime and the test kit drive it; an asyncio runtime could too (none is
written yet). Whatever ends a socket, ``close`` runs exactly once; an exception
in any handler is logged with its traceback, passed to ``error``, and closes
only this socket with 1011 (the peer never sees the exception text).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from websockets.frames import CloseCode

from .._call import call_maybe_async
from ._handlers import BoundHandlers
from ._socket import WebSocket

__all__ = ["Actor"]

logger = logging.getLogger("axeom.ws")

INTERNAL_ERROR = CloseCode.INTERNAL_ERROR


class Actor:
    """The handler side of one socket.

    ``on_suspend`` is called when a coroutine handler first really suspends
    (awaits something not ready): the adapter uses it to flush what the
    handler queued so far instead of holding it until the handler returns.
    """

    __slots__ = ("_closed", "busy", "handlers", "on_suspend", "ws")

    def __init__(
        self, ws: WebSocket, handlers: BoundHandlers, on_suspend: Callable[[], None] | None = None
    ) -> None:
        self.ws = ws
        self.handlers = handlers
        self.on_suspend = on_suspend
        self.busy = False
        self._closed = False

    async def open(self) -> None:
        app = self.ws.app
        if app is not None:
            app.pubsub.add_socket(self.ws)  # addressable by app.send from now on
        if self.handlers.open is not None:
            await self._run("open", self.handlers.open, self.ws)

    async def message(self, message: str | bytes) -> None:
        handler = self.handlers.message
        if handler is not None and not self._closed:
            await self._run("message", handler, self.ws, message)

    async def drain(self) -> None:
        if self.handlers.drain is not None and not self._closed:
            await self._run("drain", self.handlers.drain, self.ws)

    async def close(self, code: int, reason: str) -> None:
        """Run the ``close`` handler; every call after the first does nothing."""
        if self._closed:
            return
        self._closed = True
        ws = self.ws
        if ws.app is not None:  # no more deliveries to a closed socket
            ws.app.pubsub.remove_socket(ws, ws.subscriptions)
            ws._topics = None
        if self.handlers.close is None:
            return
        try:
            await call_maybe_async(self.handlers.close, (self.ws, code, reason))
        except Exception:
            logger.exception("close handler of socket %s (%s) raised", self.ws.id, self.ws.path)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _run(self, name: str, handler: Callable[..., Any], *args: Any) -> None:
        self.busy = True
        try:
            await call_maybe_async(handler, args, self.on_suspend)
        except Exception as exc:
            await self._fail(name, exc)
        finally:
            self.busy = False

    async def _fail(self, name: str, exc: Exception) -> None:
        ws = self.ws
        logger.error(
            "%s handler of socket %s (%s) raised; closing it with 1011",
            name,
            ws.id,
            ws.path,
            exc_info=exc,
        )
        if self.handlers.error is not None:
            try:
                await call_maybe_async(self.handlers.error, (ws, exc), self.on_suspend)
            except Exception:
                logger.exception("error handler of socket %s raised", ws.id)
        if ws.is_open:
            ws.close(INTERNAL_ERROR, "internal error")
