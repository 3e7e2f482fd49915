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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is None:
            continue
        fixture = "_deadline" if inspect.iscoroutinefunction(function) else "_sync_deadline"
        item.fixturenames.insert(0, fixture)  # type: ignore[attr-defined]
