"""Shared fixtures: every async test is bounded in time."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.insert(0, "_deadline")  # type: ignore[attr-defined]
