"""Runs one socket's handlers: in order, one at a time, failures contained.

Loop-agnostic: this module only awaits what user handlers return. The trio
runtime and the test kit drive it; an asyncio runtime could too (none is
written yet). Whatever ends a socket, ``close`` runs exactly once; an exception
in any handler is logged with its traceback, passed to ``error``, and closes
only this socket with 1011 (the peer never sees the exception text).
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ..pubsub import Published, Sent, Subscribed, Unsubscribed
from ._handlers import BoundHandlers
from ._socket import Closing, SendResult, WebSocket

__all__ = ["Actor"]

# What ``ws.close``, ``ws.subscribe``, ``ws.publish`` and ``app.send`` return:
# awaitable, but a plain function that returns one (``lambda ws:
# ws.subscribe(t)``) made the non-blocking call and did not ask to wait.
_NOT_AWAITED = frozenset({Closing, Subscribed, Unsubscribed, Published, Sent})

logger = logging.getLogger("axeom.ws")

INTERNAL_ERROR = 1011


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
            await _call(self.handlers.close, (self.ws, code, reason), None)
        except Exception:
            logger.exception("close handler of socket %s (%s) raised", self.ws.id, self.ws.path)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _run(self, name: str, handler: Callable[..., Any], *args: Any) -> None:
        self.busy = True
        try:
            await _call(handler, args, self.on_suspend)
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
                await _call(self.handlers.error, (ws, exc), self.on_suspend)
            except Exception:
                logger.exception("error handler of socket %s raised", ws.id)
        if ws.is_open:
            ws.close(INTERNAL_ERROR, "internal error")


async def _call(
    handler: Callable[..., Any], args: tuple[Any, ...], on_suspend: Callable[[], None] | None
) -> Any:
    result = handler(*args)
    if result is None or type(result) is SendResult:  # the common plain-function returns
        return result
    if type(result) in _NOT_AWAITED:
        return None
    if type(result) is types.CoroutineType:
        if on_suspend is None:
            return await result
        return await _noting_suspension(result, on_suspend)
    if inspect.isawaitable(result):
        return await result
    return result


@types.coroutine
def _noting_suspension(
    coro: Coroutine[Any, Any, Any], on_suspend: Callable[[], None]
) -> Generator[Any, Any, Any]:
    """Drive ``coro`` exactly as ``await`` would, calling ``on_suspend`` at its
    first real suspension. Whatever it yields goes to the event loop untouched,
    so this works under trio and asyncio alike."""
    value: Any = None
    error: BaseException | None = None
    notified = False
    while True:
        try:
            yielded = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        if not notified:
            notified = True
            on_suspend()
        try:
            value, error = (yield yielded), None
        except BaseException as exc:  # delivered into the coroutine, like await does
            value, error = None, exc
