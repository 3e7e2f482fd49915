"""The little an ASGI socket needs from its event loop, for asyncio and trio.

An ASGI server runs the app on asyncio (uvicorn, granian, daphne, hypercorn's
default worker) or on trio (``hypercorn -k trio``). A socket needs four
things of that loop: an event, a schedule point, a background task beside the
main one, and a deadline another task can set on the main one (the close
timeout). Each is a line or two per loop, so this module picks them with
sniffio rather than depending on anyio: no dependency beyond trio's own, and
the per-message path calls the loop's primitives directly, with no wrapper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import sniffio

__all__ = ["Cutoff", "Event", "Loop", "current_loop"]


class Event(Protocol):
    """``asyncio.Event`` and ``trio.Event`` alike: set once, waited on."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> Any: ...


class Cutoff:
    """A deadline for a socket's main task that its writer task may set: the
    main task is cancelled that many seconds after ``after`` (the earliest
    deadline wins)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set: Callable[[float], None] | None = None

    def after(self, seconds: float) -> None:
        if self._set is not None:
            self._set(seconds)


class Loop:
    """The primitives of one event loop library."""

    __slots__ = ("checkpoint", "event", "name", "run_beside")

    def __init__(
        self,
        name: str,
        event: Callable[[], Event],
        checkpoint: Callable[[], Awaitable[None]],
        run_beside: Callable[
            [Callable[[], Awaitable[None]], Callable[[], Awaitable[None]], Cutoff],
            Awaitable[None],
        ],
    ) -> None:
        self.name = name
        self.event = event
        self.checkpoint = checkpoint
        # run_beside(main, background, cutoff): run both; return when ``main``
        # returns or is cut off, with ``background`` cancelled and done.
        self.run_beside = run_beside


async def _asyncio_checkpoint() -> None:
    await asyncio.sleep(0)


async def _asyncio_run_beside(
    main: Callable[[], Awaitable[None]],
    background: Callable[[], Awaitable[None]],
    cutoff: Cutoff,
) -> None:
    loop = asyncio.get_running_loop()
    task = loop.create_task(_as_coroutine(background))
    try:
        async with asyncio.timeout(None) as timeout:

            def cut(seconds: float) -> None:
                when = loop.time() + seconds
                current = timeout.when()
                timeout.reschedule(when if current is None else min(current, when))

            cutoff._set = cut
            await main()
    except TimeoutError:
        if not timeout.expired():
            raise  # not ours: main's own (it catches its own; kept for honesty)
    finally:
        cutoff._set = None
        task.cancel()
        # asyncio.wait never raises the task's CancelledError into us, and a
        # cancellation of this task (the server's) still propagates from it.
        await asyncio.wait([task])


async def _as_coroutine(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


def _asyncio_loop() -> Loop:
    return Loop("asyncio", asyncio.Event, _asyncio_checkpoint, _asyncio_run_beside)


def _trio_loop() -> Loop:
    import trio

    async def run_beside(
        main: Callable[[], Awaitable[None]],
        background: Callable[[], Awaitable[None]],
        cutoff: Cutoff,
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(background)
            with trio.CancelScope() as scope:

                def cut(seconds: float) -> None:
                    scope.deadline = min(scope.deadline, trio.current_time() + seconds)

                cutoff._set = cut
                try:
                    await main()
                finally:
                    cutoff._set = None
            nursery.cancel_scope.cancel()

    return Loop("trio", trio.Event, trio.lowlevel.checkpoint, run_beside)


_LOOPS: dict[str, Callable[[], Loop]] = {"asyncio": _asyncio_loop, "trio": _trio_loop}
_made: dict[str, Loop] = {}


def current_loop() -> Loop:
    """The primitives of the loop this coroutine runs on (made once per library)."""
    name = sniffio.current_async_library()
    loop = _made.get(name)
    if loop is None:
        make = _LOOPS.get(name)
        if make is None:
            raise RuntimeError(f"Axeom's ASGI adapter runs on asyncio or trio, not {name}")
        loop = _made[name] = make()
    return loop
