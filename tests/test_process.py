"""What every process of a tree shares (axeom.process): the heartbeat loop, on
trio and asyncio, with a fake parent check; the one logging format; and, through
a real tree, every child stopping once its supervisor is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pynng
import pytest
import trio
import trio.testing

from axeom.process import heartbeat_forever
from tests._processes import ROOT, running_axeom, wait_for
from tests._redis import running_redis

APP = "tests/apps/runtime_app.py:app"
# 2024-05-01 12:00:00,123 INFO [worker-1] axeom.test: hello
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
CHILDREN = ("acceptor", "worker-1", "redis-bridge")


class FakeParent:
    """A parent check that says "gone" after ``alive_for`` checks."""

    def __init__(self, alive_for: int) -> None:
        self.checks = 0
        self.alive_for = alive_for

    def __call__(self) -> bool:
        self.checks += 1
        return self.checks > self.alive_for


async def test_heartbeats_every_interval_until_the_parent_is_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One report at start, then one per interval; once the parent is gone no
    report follows, ``on_parent_gone`` runs once and the loop returns."""
    reported: list[float] = []
    gone_at: list[float] = []

    async def report() -> None:
        reported.append(trio.current_time())

    async def on_parent_gone() -> None:
        gone_at.append(trio.current_time())

    start = trio.current_time()
    await heartbeat_forever(
        report, 2.5, trio.sleep, on_parent_gone, is_parent_gone=FakeParent(alive_for=4)
    )
    assert [round(t - start, 6) for t in reported] == [0.0, 2.5, 5.0, 7.5]
    assert [round(t - start, 6) for t in gone_at] == [10.0]


async def test_a_report_nobody_takes_does_not_stop_the_parent_check(tmp_path: Path) -> None:
    """A supervisor that dies between a parent check and a report leaves the
    report with no peer: the send times out and the next check still runs."""
    gone: list[bool] = []

    async def on_parent_gone() -> None:
        gone.append(True)

    address = f"ipc://{tmp_path}/nobody.ipc"  # nothing listens here
    with pynng.Push0(dial=address, block_on_dial=False, send_timeout=50) as reports:

        async def report() -> None:
            await reports.asend(b"hb")

        with trio.fail_after(10):
            await heartbeat_forever(
                report, 0.01, trio.sleep, on_parent_gone, is_parent_gone=FakeParent(alive_for=2)
            )
    assert gone == [True]


async def test_a_child_of_a_dead_parent_never_reports() -> None:
    """Gone at the first check: no heartbeat at all, straight to ``on_parent_gone``."""
    events: list[str] = []

    async def report() -> None:
        events.append("report")

    async def on_parent_gone() -> None:
        events.append("gone")

    await heartbeat_forever(
        report, 1.0, trio.sleep, on_parent_gone, is_parent_gone=FakeParent(alive_for=0)
    )
    assert events == ["gone"]


def test_the_same_loop_runs_on_asyncio() -> None:
    """The Redis bridge drives it with ``asyncio.sleep``: the loop awaits only what
    it is given, so it runs there unchanged, sleeping the interval it was given."""
    slept: list[float] = []
    events: list[str] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    async def report() -> None:
        events.append("report")

    async def on_parent_gone() -> None:
        events.append("gone")

    asyncio.run(
        heartbeat_forever(
            report, 0.75, sleep, on_parent_gone, is_parent_gone=FakeParent(alive_for=3)
        )
    )
    assert events == ["report", "report", "report", "gone"]
    assert slept == [0.75, 0.75, 0.75]


async def test_a_slow_report_delays_the_next_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The interval runs from the end of a report: a report that takes long (a
    loop busy elsewhere) makes the next one late, which is how a hung child shows."""
    reported: list[float] = []

    async def report() -> None:
        reported.append(trio.current_time())
        await trio.sleep(3.0)

    async def on_parent_gone() -> None:
        pass

    await heartbeat_forever(
        report, 1.0, trio.sleep, on_parent_gone, is_parent_gone=FakeParent(alive_for=3)
    )
    assert [round(t - reported[0], 6) for t in reported] == [0.0, 4.0, 8.0]


def _log_line(*arguments: str) -> str:
    """What ``configure_logging(*arguments)`` makes of one INFO record, in a fresh
    interpreter (``basicConfig`` acts once per process)."""
    code = (
        "import logging, sys\n"
        "from axeom.process import configure_logging\n"
        f"configure_logging(*{list(arguments)!r})\n"
        "logging.getLogger('axeom.test').info('hello %s', 'there')\n"
        "logging.getLogger('axeom.test').debug('not shown at info')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize(
    ("process", "tag"),
    [("supervisor", "[supervisor] "), ("worker-1", "[worker-1] "), (None, "")],
)
def test_one_log_format_names_the_process(process: str | None, tag: str) -> None:
    """Time, level, ``[process]`` (none for the single-process server), logger:
    message, on stderr, at the level asked for."""
    arguments = ["info"] if process is None else ["info", process]
    line = _log_line(*arguments)
    assert re.fullmatch(rf"{TIMESTAMP} INFO {re.escape(tag)}axeom\.test: hello there\n", line)


def test_configure_logging_is_the_function_every_process_calls() -> None:
    """Imported by name by the CLI, the supervisor, the acceptor, the workers and
    the Redis bridge (no second set of format strings to drift apart)."""
    sources = [
        "axeom/cli.py",
        "supervisor/axeom_supervisor/__main__.py",
        "supervisor/axeom_supervisor/redis_bridge.py",
        "acceptor/axeom_acceptor/__main__.py",
        "workers/axeom_workers/__main__.py",
    ]
    for source in sources:
        text = (Path(ROOT) / source).read_text()
        assert "configure_logging(" in text, source
        assert "basicConfig" not in text, source


def _exited(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.mark.timeout(90)
def test_every_child_stops_when_its_supervisor_is_killed() -> None:
    """kill -9 of the supervisor: the acceptor, the worker and the Redis bridge
    each notice at their next heartbeat, say so, and exit."""
    # What a killed supervisor cannot clean up (its run directory, its control
    # socket) goes to a directory of this test; short, for Unix socket paths.
    scratch = tempfile.mkdtemp(prefix="axp")
    try:
        config = Path(scratch) / "axeom.toml"
        config.write_text("[workers]\nheartbeat_interval = 0.2\n")
        with running_redis() as redis_server:
            args = ("--port", "0", "--workers", "1", "--pubsub", redis_server.url)
            env = {"TMPDIR": scratch}
            with running_axeom(APP, *args, "--config", str(config), env=env) as server:
                # Every child up and reporting: the bridge also connected to Redis.
                started = [rf"\[{name}\].*file descriptor limit" for name in CHILDREN]
                started.append(r"\[redis-bridge\].*connected to Redis")
                wait_for(
                    lambda: all(re.search(line, server.text()) for line in started),
                    20,
                    "every child to start",
                )
                children = _children(server.proc.pid)
                assert len(children) == len(CHILDREN)
                os.kill(server.proc.pid, signal.SIGKILL)
                server.proc.wait(10)
                try:
                    wait_for(lambda: all(map(_exited, children)), 30, "every child to exit")
                finally:
                    for pid in children:  # never leave one behind, even on failure
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                last_lines = [
                    r"\[acceptor\].*supervisor is gone: acceptor exiting",
                    r"\[worker-1\].*supervisor is gone: draining and exiting",
                    r"\[redis-bridge\].*supervisor is gone: exiting",
                ]
                wait_for(
                    lambda: all(re.search(line, server.text()) for line in last_lines),
                    10,
                    "each child's last line",
                    output=server.text,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
