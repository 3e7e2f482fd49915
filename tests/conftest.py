"""Shared fixtures: every async test is bounded in time."""

from __future__ import annotations

import inspect
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

DEFAULT_TIMEOUT = 30


@pytest.fixture
async def _deadline(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail the test if it runs longer than its ``timeout`` mark allows."""
    marker = request.node.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT
    with trio.fail_after(seconds):
        yield


@pytest.fixture
def _sync_deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """The same limit for plain tests, through SIGALRM (they run in the main thread)."""
    marker = request.node.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"test exceeded its {seconds}s limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(trylast=True)  # after pytest-trio marked every coroutine test trio
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is None:
            continue
        on_trio = inspect.iscoroutinefunction(function)
        if item.get_closest_marker("anyio") is not None:
            _leave_to_anyio(item)
            on_trio = False
        fixture = "_deadline" if on_trio else "_sync_deadline"
        item.fixturenames.insert(0, fixture)  # type: ignore[attr-defined]


def _leave_to_anyio(item: pytest.Item) -> None:
    """A test marked ``anyio`` runs on its ``anyio_backend`` (an asyncio test
    of the test kit), not on trio: trio_mode marked it trio like every
    coroutine test, so that mark goes. Its deadline is the plain one
    (SIGALRM): ``_deadline`` is trio's."""
    item.own_markers[:] = [mark for mark in item.own_markers if mark.name != "trio"]
