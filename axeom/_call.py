"""Call user code that may be a plain function or a coroutine function."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call_maybe_async"]


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` and await the result if it is awaitable.

    Users write hooks and handlers either way; this keeps the engine free of
    any event-loop library (it only awaits what the user returned).
    """
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
