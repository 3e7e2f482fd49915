"""The one helper that calls user code (hooks and socket handlers), plain or async."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import trio
import trio.testing

from axeom._call import call_maybe_async, not_awaited
from axeom.pubsub import UNSUBSCRIBED, Published, Sent, Subscribed, Unsubscribed
from axeom.ws import Closing, SendResult


class Awaitable:
    """Awaitable but not a coroutine: awaited for its value."""

    def __await__(self) -> Generator[Any, None, str]:
        return "awaited"
        yield


@not_awaited
class Marker:
    """What a non-blocking call returns: awaitable, but never awaited for it."""

    def __await__(self) -> Generator[Any, None, str]:
        raise AssertionError("a @not_awaited result was awaited")
        yield


async def test_plain_coroutine_and_awaitable_results() -> None:
    """A plain value is returned, a coroutine and any other awaitable awaited."""

    async def coroutine(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * 2

    assert await call_maybe_async(lambda x, y: x + y, (1, 2)) == 3
    assert await call_maybe_async(coroutine, (21,)) == 42
    assert await call_maybe_async(Awaitable, ()) == "awaited"
    assert await call_maybe_async(lambda: None, ()) is None


async def test_results_of_non_blocking_calls_are_returned_not_awaited() -> None:
    """``lambda ws, m: ws.send(m)`` made a non-blocking call and did not ask to wait."""
    marker = Marker()
    assert await call_maybe_async(lambda: marker, ()) is marker
    assert await call_maybe_async(lambda: UNSUBSCRIBED, ()) is UNSUBSCRIBED


def test_every_non_blocking_result_type_is_registered() -> None:
    """ws.send, ws.close, ws.subscribe, ws.unsubscribe, publish and app.send."""
    from axeom._call import _NOT_AWAITED

    assert {SendResult, Closing, Subscribed, Unsubscribed, Published, Sent} <= _NOT_AWAITED


async def test_on_suspend_is_called_once_at_the_first_real_suspension() -> None:
    """Not for a coroutine that finishes without suspending; once, when it first
    waits on something not ready, for one that does."""
    calls: list[str] = []
    go = trio.Event()

    async def quick() -> str:
        return "done"

    async def waits() -> str:
        calls.append("before")
        await go.wait()
        await go.wait()
        return "done"

    assert await call_maybe_async(quick, (), lambda: calls.append("suspended")) == "done"
    assert calls == []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call_maybe_async, waits, (), lambda: calls.append("suspended"))
        await trio.testing.wait_all_tasks_blocked()
        assert calls == ["before", "suspended"]
        go.set()
    assert calls == ["before", "suspended"]


def test_runs_on_asyncio_too() -> None:
    """It awaits only what the user returned: the same helper under asyncio."""
    suspended: list[bool] = []

    async def handler(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def main() -> Any:
        return await call_maybe_async(handler, (1,), lambda: suspended.append(True))

    assert asyncio.run(main()) == 2
    assert suspended == [True]
