"""The event loops the asyncio runtime runs on: asyncio's own, or uvloop."""

from __future__ import annotations

import asyncio

__all__ = ["LOOPS", "LoopUnavailable", "new_event_loop"]

LOOPS = ("asyncio", "uvloop")


class LoopUnavailable(RuntimeError):
    """The loop asked for cannot run here; the message is one line for the user."""


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new loop of kind ``name`` ("asyncio": the default policy's loop)."""
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise LoopUnavailable(
                "--loop uvloop needs the uvloop package: pip install 'axeom[uvloop]'"
            ) from None
        return uvloop.new_event_loop()
    raise LoopUnavailable(f"unknown loop {name!r}: use one of {', '.join(LOOPS)} (or trio)")
