"""The behaviour suite's rows survive a case that kills their server: that case
fails with the reason (or is the documented limitation), the cases after it
pass on a new server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests._processes import ROOT
from tests.behaviour._client import TcpTarget, pid_of
from tests.behaviour._runtimes import RUNTIMES, Runtime
from tests.behaviour._server import RowServer, ServerDied

# The known killer: hypercorn's trio worker exits on frames sent with the
# upgrade request (a strict xfail there), run before an ordinary case.
KILLER = (
    "tests/behaviour/test_behaviour_timers.py::"
    "test_frames_sent_with_the_upgrade_request_are_not_lost[hypercorn-trio]"
)
AFTER = "tests/behaviour/test_behaviour_messages.py::test_echo_text_and_binary[hypercorn-trio]"
# A pytest run of two cases, each with a server start (hypercorn's takes seconds).
NESTED_TIMEOUT = 100
# How long a killed server may take to exit.
EXIT_TIMEOUT = 10.0
EXIT_POLL = 0.02


def row(name: str) -> Runtime:
    return next(runtime for runtime in RUNTIMES if runtime.name == name)


@pytest.mark.timeout(NESTED_TIMEOUT + 10)
def test_case_after_the_hypercorn_trio_killer_passes() -> None:
    """The suite's own run, in that order (cases sorted after the timers
    file meet the same): the killer is an expected failure, the next case
    on that row passes (it ran on a server the killer never saw)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:hypothesispytest", KILLER, AFTER],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=NESTED_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 xfailed" in result.stdout, result.stdout


async def test_a_server_killed_during_a_case_fails_that_case_alone(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A row's server killed during a case: the check after it fails that
    case with why; the next case gets a new server and passes its check."""
    server = RowServer(row("trio-w0"), tmp_path)
    try:
        first = server.running("case 1")
        async with TcpTarget(first, nursery).connect("/echo") as ws:
            os.kill(int(await pid_of(ws)), signal.SIGKILL)
        with pytest.raises(ServerDied, match="trio-w0 server exited with status -9 during this"):
            await server.check(nursery)
        second = server.running("case 2")
        async with TcpTarget(second, nursery).connect("/echo") as ws:
            assert await ws.ask("still here") == "still here"
        await server.check(nursery)
        assert server.starts == 2
        server.raise_unblamed_deaths()  # none: the death was case 1's
    finally:
        server.stop()


async def test_a_server_dead_between_cases_is_replaced_and_reported_at_the_end(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A server that dies after its case's check: the next case still gets a
    new server (and passes), and the row's end reports the death."""
    server = RowServer(row("trio-w0"), tmp_path)
    try:
        first = server.running("case 1")
        async with TcpTarget(first, nursery).connect("/echo") as ws:
            assert await ws.ask("hello") == "hello"
        await server.check(nursery)
        process = server.process
        process.kill()
        with trio.fail_after(EXIT_TIMEOUT):
            while process.poll() is None:
                await trio.sleep(EXIT_POLL)
        second = server.running("case 2")
        assert server.starts == 2
        async with TcpTarget(second, nursery).connect("/echo") as ws:
            assert await ws.ask("still here") == "still here"
        await server.check(nursery)
    finally:
        server.stop()
    with pytest.raises(ServerDied, match="exited with status -9 after case 1 ended"):
        server.raise_unblamed_deaths()
