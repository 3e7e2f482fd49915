"""Fixtures of the behaviour suite: every test runs once per runtime in
``_runtimes.available()``; each real runtime's server starts once for the
whole suite (again only after a case killed it: ``_server``) and is reaped
at its end."""

from __future__ import annotations

import asyncio
import os
import socketserver
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from axeom.asyncio_runtime import run_trio_guest
from tests.apps.behaviour_app import ECHO_PORT_ENV, make_app
from tests.behaviour._client import (
    EXPECTED_FAILURE_TIMEOUT,
    TIMEOUT,
    Target,
    TcpTarget,
    memory_target,
)
from tests.behaviour._runtimes import Runtime, available
from tests.behaviour._server import RowServer

# The mark of a test that runs on a server of its own (``limitation(server_exits=True)``).
OWN_SERVER = pytest.mark.own_server

T = TypeVar("T")


def _run_on_asyncio(item: pytest.Item, runtime: Runtime) -> None:
    """The test kit's asyncio row: pytest-trio runs the test (its fixtures,
    its trio code) as a guest of an asyncio loop, and the target calls the
    test kit in asyncio tasks of that loop (``call_in_asyncio``): the app
    and the client end run on asyncio as in a user's asyncio test, and each
    test of the suite is written once."""
    if runtime.asyncio_test:
        # First, so that it wins over the plain trio mark of trio_mode.
        item.add_marker(pytest.mark.trio(run=_run_as_asyncio_guest), append=False)


def _run_as_asyncio_guest(async_fn: Callable[[], Awaitable[T]], **_: Any) -> T:
    """pytest-trio's ``run`` for those tests (no clock, no instruments)."""
    return asyncio.run(run_trio_guest(async_fn))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "limitation(runtime, reason, cases, server_exits): a server's documented difference",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        runtime = callspec.params.get("runtime") if callspec is not None else None
        if isinstance(runtime, Runtime):
            _run_on_asyncio(item, runtime)
            _limitations_as_xfails(item, runtime)


def _limitations_as_xfails(item: pytest.Item, runtime: Runtime) -> None:
    """Each ``limitation`` mark (``_runtimes.limitation``) becomes a strict
    xfail on its row (and cases) only: every other row must pass. One whose
    server exits also gets its own server there (``OWN_SERVER``)."""
    marks = list(item.iter_markers("limitation"))
    callspec = getattr(item, "callspec", None)
    if marks and callspec is not None:
        name = runtime.name
        case = callspec.id.removeprefix(name).removeprefix("-")
        applying = [
            mark
            for mark in marks
            if mark.kwargs["runtime"] == name
            and (not mark.kwargs["cases"] or case in mark.kwargs["cases"])
        ]
        if applying:
            reason = "; ".join(mark.kwargs["reason"] for mark in applying)
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
        if any(mark.kwargs["server_exits"] for mark in applying):
            item.add_marker(OWN_SERVER)


@pytest.fixture(scope="package", params=available(), ids=lambda runtime: runtime.name)
def runtime(request: pytest.FixtureRequest) -> Runtime:
    return request.param


@pytest.fixture(scope="package")
def record(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the app's close handlers write, one file per socket tag."""
    return tmp_path_factory.mktemp(f"closes-{runtime.name}")


@pytest.fixture(scope="package")
def echo_port() -> Iterator[int]:
    """A plain TCP line-echo server on loopback for the app's /aio route, its
    port in the environment the servers (and the in-memory app) read."""
    with line_echo_server() as bound:
        previous = os.environ.get(ECHO_PORT_ENV)
        os.environ[ECHO_PORT_ENV] = str(bound)
        try:
            yield bound
        finally:
            if previous is None:
                del os.environ[ECHO_PORT_ENV]
            else:
                os.environ[ECHO_PORT_ENV] = previous


@pytest.fixture(scope="package")
def row_server(runtime: Runtime, record: Path, echo_port: int) -> Iterator[RowServer | None]:
    """The runtime's server, started once for its row, and again only after
    a case killed it (None in memory: one app per test). A death no case
    could be blamed for fails the row's end."""
    if runtime.in_memory:
        yield None
        return
    server = RowServer(runtime, record)
    try:
        server.running()
        yield server
    finally:
        server.stop()
    server.raise_unblamed_deaths()


@pytest.fixture
def case_server(
    row_server: RowServer | None, runtime: Runtime, record: Path, request: pytest.FixtureRequest
) -> Iterator[RowServer | None]:
    """The server this case talks to: the row's (started again first if it
    died), or one of its own for a case that makes the server exit."""
    if row_server is None or request.node.get_closest_marker(OWN_SERVER.name) is None:
        if row_server is not None:
            row_server.running(request.node.nodeid)
        yield row_server
        return
    own = RowServer(runtime, record)
    try:
        own.running(request.node.nodeid)
        yield own
    finally:
        own.stop()


@pytest.fixture
async def target(
    runtime: Runtime,
    case_server: RowServer | None,
    record: Path,
    nursery: trio.Nursery,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Target]:
    if case_server is not None:
        expected_to_fail = request.node.get_closest_marker("xfail") is not None
        timeout = EXPECTED_FAILURE_TIMEOUT if expected_to_fail else TIMEOUT
        yield TcpTarget(case_server.port, nursery, timeout)
        # Within the test's own run, so that a server that died fails this case.
        await case_server.check(nursery)
        return
    async with memory_target(make_app(record), runtime) as memory:
        yield memory


class _LineEcho(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


@contextmanager
def line_echo_server() -> Iterator[int]:
    """A threaded TCP server echoing each line, until the block ends."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _LineEcho)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
