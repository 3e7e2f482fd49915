"""Tell a user whose handler awaited a trio primitive on the asyncio runtime
what happened, instead of leaving them with trio's bare error.

Awaiting ``trio.sleep`` or a ``trio.Event`` outside trio fails deep inside
trio ("must be called from async context", or an attribute error of its run
context). The socket still closes with 1011 like any failing handler; this
adds one log line, and a note on the logged exception, naming the loop the
handler runs on and the option that changes it.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

__all__ = ["explain_wrong_loop", "is_trio_failure", "wrong_loop_message"]

logger = logging.getLogger("axeom.ws")

# Packages whose primitives only work inside ``trio.run``.
_TRIO_PACKAGES = ("trio", "trio_websocket")


def wrong_loop_message(loop_name: str = "asyncio") -> str:
    """The explanation, for a handler running on ``loop_name``."""
    return (
        f"this handler runs on the {loop_name} event loop (--loop {loop_name}) and awaited "
        "a trio primitive, which only works under trio: use asyncio's equivalent, "
        "or run the app with --loop trio"
    )


def is_trio_failure(exc: BaseException) -> bool:
    """True if ``exc`` was raised inside trio (its innermost frame is trio's)."""
    tb: TracebackType | None = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    module = str(last.tb_frame.f_globals.get("__name__", ""))
    return module.split(".", 1)[0] in _TRIO_PACKAGES


def explain_wrong_loop(exc: BaseException, ws: Any, loop_name: str = "asyncio") -> bool:
    """Log the explanation for socket ``ws`` if ``exc`` is a trio failure;
    True if it was one. Called before the usual "handler raised" line."""
    if not is_trio_failure(exc):
        return False
    message = wrong_loop_message(loop_name)
    exc.add_note(message)
    logger.error("socket %s (%s): %s", ws.id, ws.path, message)
    return True
