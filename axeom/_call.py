"""Call user code that may be a plain function or a coroutine function.

One helper for every place that calls user code: the engine's hooks (once
per handshake) and the socket handlers (once per message, so the common
returns are checked first, by type identity). It only awaits what the user
returned, so it works under trio and asyncio alike.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["call_maybe_async", "call_now", "not_awaited", "noting_suspension"]

T = TypeVar("T", bound=type)

# Types whose instances a non-blocking call returns (``ws.send``, ``ws.close``,
# ``ws.subscribe``, ``publish``, ``app.send``): awaitable, but a plain function
# that returns one (``lambda ws, m: ws.send(m)``) made the call and did not ask
# to wait. The types register themselves (``@not_awaited``) so that this module
# needs no import of the ws plugin.
_NOT_AWAITED: set[type] = set()


def not_awaited(cls: T) -> T:
    """Class decorator: a plain function returning an instance is not awaited."""
    _NOT_AWAITED.add(cls)
    return cls


async def call_maybe_async(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    on_suspend: Callable[[], None] | None = None,
) -> Any:
    """Call ``fn(*args)`` and await the result if it is awaitable (and not ``@not_awaited``).

    ``args`` is a tuple, not ``*args``: on the per-message path that halves the
    cost of a call (measured ~0.2 us against ~0.5 us with ``*args`` and a keyword).
    ``on_suspend`` is called when a coroutine ``fn`` first really suspends
    (awaits something not ready): the socket runtime flushes what the handler
    queued so far instead of holding it until the handler returns.
    """
    result = fn(*args)
    if result is None or type(result) in _NOT_AWAITED:  # the common plain returns
        return result
    if type(result) is types.CoroutineType:
        if on_suspend is None:
            return await result
        return await _noting_suspension(result, on_suspend)
    if inspect.isawaitable(result):
        return await result
    return result


def call_now(fn: Callable[..., Any], args: tuple[Any, ...]) -> Awaitable[Any] | None:
    """Call ``fn(*args)`` now; return what is left to await, or None if it is done.

    A plain function is done when it returns; a coroutine function only made its
    coroutine, which is returned unstarted so that the caller can give it to a
    task of its choice (a trio coroutine must run to its end in the task that
    started it: cancel scopes and ``current_task()`` remember that task). What
    the return value means is decided as in ``call_maybe_async``.
    """
    result = fn(*args)
    if result is None or type(result) in _NOT_AWAITED:  # the common plain returns
        return None
    if type(result) is types.CoroutineType or inspect.isawaitable(result):
        return result  # type: ignore[no-any-return]
    return None


def noting_suspension(
    awaitable: Awaitable[Any], on_suspend: Callable[[], bool | None] | None
) -> Awaitable[Any]:
    """What to await for what ``call_now`` left: the same, calling ``on_suspend``
    at a coroutine's first real suspension (as ``call_maybe_async`` does)."""
    if on_suspend is not None and type(awaitable) is types.CoroutineType:
        return _noting_suspension(awaitable, on_suspend)
    return awaitable


@types.coroutine
def _noting_suspension(
    coro: Coroutine[Any, Any, Any], on_suspend: Callable[[], bool | None]
) -> Generator[Any, Any, Any]:
    """Drive ``coro`` exactly as ``await`` would, calling ``on_suspend`` at its
    first real suspension (``on_suspend`` returns False for a suspension that
    is only a schedule point: then the next one is noted). Whatever it yields
    goes to the event loop untouched, so this works under trio and asyncio alike."""
    value: Any = None
    error: BaseException | None = None
    notified = False
    while True:
        try:
            yielded = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        if not notified:
            notified = on_suspend() is not False
        try:
            value, error = (yield yielded), None
        except BaseException as exc:  # delivered into the coroutine, like await does
            value, error = None, exc
