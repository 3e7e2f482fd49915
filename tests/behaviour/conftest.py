"""Fixtures of the behaviour suite: every test runs once per runtime in
``_runtimes.available()``; each real runtime's server starts once for the
whole suite and is reaped at its end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from axeom.testing import TestClient
from tests.apps.behaviour_app import make_app
from tests.behaviour._client import MemoryTarget, Target, TcpTarget
from tests.behaviour._runtimes import Runtime, available


@pytest.fixture(scope="package", params=available(), ids=lambda runtime: runtime.name)
def runtime(request: pytest.FixtureRequest) -> Runtime:
    return request.param


@pytest.fixture(scope="package")
def record(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the app's close handlers write, one file per socket tag."""
    return tmp_path_factory.mktemp(f"closes-{runtime.name}")


@pytest.fixture(scope="package")
def port(runtime: Runtime, record: Path) -> Iterator[int | None]:
    """The runtime's server, started once (None in memory: one app per test)."""
    if runtime.in_memory:
        yield None
        return
    with runtime.serving(record) as bound:
        yield bound


@pytest.fixture
async def target(port: int | None, record: Path, nursery: trio.Nursery) -> AsyncIterator[Target]:
    if port is not None:
        yield TcpTarget(port, nursery)
        return
    async with TestClient(make_app(record)) as client:
        yield MemoryTarget(client)
