"""Lifespan (``on_start`` / ``on_stop``) and the event-loop option, through
real processes: ``axeom run`` with --workers 0 and 2, real clients on
127.0.0.1, the hooks recording their pid in a file the test reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websockets.sync.client as ws_sync
from websockets.exceptions import ConnectionClosed, InvalidStatus

from axeom import Axeom
from axeom.config import Config, ConfigError
from axeom.process import EXIT_ON_START_FAILED
from axeom.testing import TestClient
from axeom.ws import ws_plugin
from tests._processes import ROOT, Server, axeom_command, running_axeom, status, wait_for

APP = "tests/apps/lifespan_app.py:app"
APP_FILE = os.path.join(ROOT, "tests", "apps", "lifespan_app.py")
# Bounds a failing tree must exit within: a restart loop would go on forever
# (one child at a time, with backoff), so any bound catches it; generous for load.
EXIT_BOUND = 45.0

pytestmark = pytest.mark.timeout(90)


@contextmanager
def server(tmp_path: Path, workers: int, *, close_sleep: float = 0.0) -> Iterator[Server]:
    env = {
        "AXEOM_TEST_RECORD": str(tmp_path / "record.txt"),
        "AXEOM_TEST_CLOSE_SLEEP": str(close_sleep),
    }
    args = ("--port", "0", "--workers", str(workers), "--graceful-timeout", "10")
    with running_axeom(APP, *args, env=env) as running:
        yield running


def records(tmp_path: Path) -> list[tuple[str, int]]:
    """(what, pid) for every line the app's hooks wrote, in order."""
    path = tmp_path / "record.txt"
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(what, int(pid)) for what, pid in lines]


def pids_of(tmp_path: Path, what: str) -> list[int]:
    return [pid for name, pid in records(tmp_path) if name == what]


def ask(server: Server, path: str = "/resource") -> str:
    with ws_sync.connect(f"{server.url}{path}", open_timeout=10) as ws:
        ws.send("hi")
        reply = ws.recv(timeout=10)
    assert isinstance(reply, str)
    return reply


def roles(server: Server) -> dict[str, list[int]]:
    """Role -> pids, from ``axeom status``."""
    found: dict[str, list[int]] = {}
    for process in status(server.port)["processes"]:
        found.setdefault(process["role"], []).append(process["pid"])
    return found


# -- on_start before serving, once per process that runs application code -----


def test_on_start_runs_before_the_first_connection_in_one_process(tmp_path: Path) -> None:
    """--workers 0: both on_start functions ran, in order, once, before the
    ready line; what the first decorated is read by derive (ctx) and the handler (ws)."""
    with server(tmp_path, 0) as running:
        resource, hook_saw, pid = ask(running).split()
        assert running.proc.pid == int(pid)
        assert resource == hook_saw == f"resource-{pid}"
        assert records(tmp_path)[:2] == [("start-1", int(pid)), ("start-2", int(pid))]
        assert pids_of(tmp_path, "start-1") == [int(pid)]  # once


def test_on_start_runs_once_in_the_acceptor_and_each_worker(tmp_path: Path) -> None:
    """--workers 2: the acceptor and both workers ran on_start once each, the
    supervisor did not; derive (in the acceptor) saw the acceptor's decoration,
    the handler its worker's."""
    with server(tmp_path, 2) as running:
        tree = roles(running)
        resource, hook_saw, worker = ask(running).split()
        app_processes = sorted(tree["acceptor"] + tree["worker"])
        assert sorted(pids_of(tmp_path, "start-1")) == app_processes
        assert sorted(pids_of(tmp_path, "start-2")) == app_processes
        assert running.proc.pid not in pids_of(tmp_path, "start-1")  # the supervisor
        assert int(worker) in tree["worker"]
        assert resource == f"resource-{worker}"
        assert hook_saw == f"resource-{tree['acceptor'][0]}"
        for pid in app_processes:  # start-1 then start-2 in each process
            mine = [what for what, who in records(tmp_path) if who == pid]
            assert mine[:2] == ["start-1", "start-2"], mine


# -- on_stop after the drain ---------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_on_stop_runs_after_the_close_handlers_on_sigterm(tmp_path: Path, workers: int) -> None:
    """SIGTERM with a socket open: its close handler (which takes a while)
    finishes first, then both on_stop functions in order, then a clean exit;
    every process that ran on_start ran on_stop."""
    with server(tmp_path, workers, close_sleep=0.5) as running:
        with ws_sync.connect(f"{running.url}/resource", open_timeout=10) as ws:
            ws.send("hi")
            serving = int(str(ws.recv(timeout=10)).split()[2])
            os.kill(running.proc.pid, signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert running.proc.wait(timeout=30) == 0, running.text()
    mine = [what for what, pid in records(tmp_path) if pid == serving]
    assert mine == ["start-1", "start-2", "close", "stop-1", "stop-2"], mine
    assert sorted(pids_of(tmp_path, "stop-1")) == sorted(pids_of(tmp_path, "start-1"))
    assert sorted(pids_of(tmp_path, "stop-2")) == sorted(pids_of(tmp_path, "start-1"))


# -- a failing on_start ---------------------------------------------------------


def run_failing(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "AXEOM_TEST_RECORD": str(tmp_path / "record.txt"),
        "AXEOM_TEST_FAIL_ON_START": "1",
    }
    started = time.monotonic()
    result = subprocess.run(
        axeom_command("run", APP, "--port", "0", *args),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND,
        start_new_session=True,
    )
    return result, time.monotonic() - started


def test_failing_on_start_stops_the_single_process_server(tmp_path: Path) -> None:
    """--workers 0: one line naming the function, the error and the app's
    line, no traceback, exit EXIT_ON_START_FAILED, never the ready line."""
    result, _ = run_failing(tmp_path, "--workers", "0")
    assert result.returncode == EXIT_ON_START_FAILED, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert (
        "on_start function open_resource failed: RuntimeError: the database is down" in (errors[0])
    )
    assert f"({APP_FILE}, line " in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "listening" not in result.stdout
    assert records(tmp_path) == []  # neither the second on_start nor any on_stop ran


def test_failing_on_start_in_a_tree_exits_without_restarting(tmp_path: Path) -> None:
    """--workers 2: the first child whose on_start fails stops the whole tree at
    once (no restart), and `axeom run` exits EXIT_ON_START_FAILED with the error."""
    result, elapsed = run_failing(tmp_path, "--workers", "2")
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_ON_START_FAILED, output
    assert "on_start function open_resource failed: RuntimeError: the database is down" in output
    assert f"({APP_FILE}, line " in output
    assert "an on_start function of the application failed" in output
    assert "giving up without restarting" in output
    assert "restarting worker" not in output and "restarting acceptor" not in output
    assert "Traceback" not in output
    assert "listening" not in output
    assert elapsed < EXIT_BOUND


def test_the_policy_gives_up_on_a_failed_on_start_at_once() -> None:
    """Whatever the restart type and intensity left: no restart for exit 5."""
    from axeom.config import SupervisorConfig
    from axeom_supervisor._policy import ExitStatus, GiveUp, RestartPolicy

    policy = RestartPolicy(SupervisorConfig(max_restarts=100), "permanent")
    decision = policy.on_exit(0.0, "worker-1", ExitStatus(code=EXIT_ON_START_FAILED))
    assert isinstance(decision, GiveUp)
    assert "on_start function of the application failed" in decision.reason


# -- decorate from on_start, in the test kit and across mounted apps -----------


async def test_decorate_in_on_start_reaches_routes_of_a_mounted_app() -> None:
    """A mounted app's on_start decorates *its* app after the routes were
    built: the socket and the hook (served by the outer app) still see it;
    the test kit runs on_start on entry and on_stop on exit."""
    inner = Axeom().use(ws_plugin())
    calls: list[str] = []

    @inner.on_start
    async def open_pool() -> None:
        inner.decorate(pool="the pool")
        calls.append("start")

    @inner.on_stop
    def close_pool() -> None:
        calls.append("stop")

    inner.derive(lambda ctx: {"hook_saw": ctx.pool})
    inner.ws("/pool", message=lambda ws, m: ws.send(f"{ws.pool}|{ws.data['hook_saw']}"))
    outer = Axeom().use(ws_plugin()).use(inner)
    async with TestClient(outer) as client:
        assert calls == ["start"]
        async with client.websocket("/pool") as ws:
            await ws.send("hi")
            assert await ws.receive() == "the pool|the pool"
    assert calls == ["start", "stop"]


async def test_decorate_on_a_mounted_app_after_mounting_reaches_its_routes() -> None:
    """The mounted app's decorations are the outer app's: a value decorated on
    it later (as its on_start would) is seen by its hooks and sockets."""
    inner = Axeom().use(ws_plugin())
    inner.derive(lambda ctx: {"hook_saw": ctx.later})
    inner.ws("/later", message=lambda ws, m: ws.send(f"{ws.later}|{ws.data['hook_saw']}"))
    outer = Axeom().use(ws_plugin()).use(inner)
    inner.decorate(later="set after mounting")
    async with TestClient(outer) as client, client.websocket("/later") as ws:
        await ws.send("hi")
        assert await ws.receive() == "set after mounting|set after mounting"


async def test_on_stop_functions_all_run_even_if_one_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Registration order; a failing on_stop is logged and the next still runs."""
    app = Axeom()
    calls: list[str] = []

    @app.on_stop
    def first() -> None:
        calls.append("first")
        raise ValueError("cannot close")

    @app.on_stop
    async def second() -> None:
        calls.append("second")

    await app.run_on_stop()
    assert calls == ["first", "second"]
    assert "on_stop function test_on_stop_functions_all_run_even_if_one_raises.<locals>.first" in (
        caplog.text
    )


# -- the wrong loop ---------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_awaiting_asyncio_on_trio_names_the_loop_and_the_option(
    tmp_path: Path, workers: int
) -> None:
    """A handler awaiting asyncio.sleep closes its socket with 1011 (a sibling
    socket is untouched), a derive awaiting asyncio.open_connection gets a 500;
    both log lines say the server runs on trio and how to change it."""
    hint = (
        "it awaited an asyncio object, but this server runs on trio; "
        'start it with --loop asyncio (or [server] loop = "asyncio")'
    )
    with server(tmp_path, workers) as running:
        with ws_sync.connect(f"{running.url}/resource", open_timeout=10) as sibling:
            with ws_sync.connect(f"{running.url}/asyncio-handler", open_timeout=10) as ws:
                ws.send("hi")
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            sibling.send("still here")
            assert len(str(sibling.recv(timeout=10)).split()) == 3  # resource, hook_saw, pid
        with pytest.raises(InvalidStatus) as rejected:
            ws_sync.connect(f"{running.url}/hooked/ws", open_timeout=10)
        assert rejected.value.response.status_code == 500
        wait_for(lambda: running.text().count(hint) >= 2, 10, "both log lines", output=running.text)
        text = running.text()
        assert "message handler of socket" in text
        assert f"raised; closing it with 1011: {hint}" in text
        assert f"unhandled error answering GET /hooked/ws: {hint}" in text


def test_an_apps_own_runtime_error_gets_no_loop_hint() -> None:
    """Narrow: only what the loops really raise is dressed up."""
    from axeom._loops import wrong_loop_hint

    assert wrong_loop_hint(RuntimeError("no running event loop in my cache")) is None
    assert wrong_loop_hint(RuntimeError("must be called from async context")) is None
    assert wrong_loop_hint(AttributeError("'NoneType' object has no attribute 'x'")) is None
    assert wrong_loop_hint(ValueError("no running event loop")) is None


def test_a_trio_primitive_on_asyncio_names_trio() -> None:
    """The same function serves the asyncio runtime: a trio primitive awaited
    on an asyncio loop is named as such (real loop, real trio call)."""
    import asyncio

    import trio

    from axeom._loops import wrong_loop_hint

    async def main() -> str | None:
        try:
            await trio.sleep(0.01)
        except RuntimeError as exc:
            return wrong_loop_hint(exc)
        return "no error"

    hint = asyncio.run(main())
    assert hint == (
        "it awaited a trio object, but this server runs on asyncio; "
        'start it with --loop trio (or [server] loop = "trio")'
    )


# -- --loop: command line, environment, config file ----------------------------


def axeom_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        axeom_command("run", *args),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_loop_is_read_from_overrides_and_file(tmp_path: Path) -> None:
    config = tmp_path / "axeom.toml"
    config.write_text('[server]\nloop = "uvloop"\n')
    assert Config.build("a:app").server.loop == "trio"
    assert Config.build("a:app", config).server.loop == "uvloop"
    assert Config.build("a:app", config, loop="asyncio").server.loop == "asyncio"


def test_bad_loop_in_the_file_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "axeom.toml"
    config.write_text('[server]\nport = 0\nloop = "asynco"\n')
    with pytest.raises(ConfigError) as error:
        Config.build("a:app", config)
    assert str(error.value) == (
        f'{config}:3: server.loop must be one of "trio", "asyncio", "uvloop", '
        'got "asynco" (did you mean "asyncio"?)'
    )
    result = axeom_run("examples/echo.py:app", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {error.value}"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("--loop", "tiro"), {}, "Invalid value for '--loop'"),
        ((), {"AXEOM_LOOP": "tiro"}, "Invalid value for AXEOM_LOOP"),
    ],
)
def test_bad_loop_on_the_command_line_or_environment(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = axeom_run("examples/echo.py:app", "--port", "0", *args, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_loop_trio_on_the_command_line_serves(tmp_path: Path) -> None:
    with server(tmp_path, 0) as running:
        assert "resource-" in ask(running)
    with running_axeom(APP, "--port", "0", "--loop", "TRIO") as running:
        assert "resource-" in ask(running)


@pytest.fixture
def no_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import uvloop`` fails as if it were not
    installed: a package of that name first on the path that raises the
    ImportError a missing module raises."""
    shim = tmp_path / "shim" / "uvloop"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'uvloop'\", name='uvloop')\n"
    )
    path = os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path}


@pytest.mark.parametrize("where", ["option", "environment", "file"])
def test_uvloop_missing_is_one_line(tmp_path: Path, no_uvloop: dict[str, str], where: str) -> None:
    """--loop uvloop without uvloop: one line naming the extra, exit 2, before
    any process starts (from the option, the environment or the file alike)."""
    args: list[str] = ["examples/echo.py:app", "--port", "0"]
    env = dict(no_uvloop)
    if where == "option":
        args += ["--loop", "uvloop"]
    elif where == "environment":
        env["AXEOM_LOOP"] = "uvloop"
    else:
        config = tmp_path / "axeom.toml"
        config.write_text('[server]\nloop = "uvloop"\n')
        args += ["--config", str(config)]
    result = axeom_run(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "Error: --loop uvloop needs the uvloop package: pip install 'axeom[uvloop]'"
    ]
    assert result.stdout == ""


def test_the_shim_really_hides_uvloop(no_uvloop: dict[str, str]) -> None:
    """The fixture is honest: in its environment the import fails, outside it works."""
    probe = [sys.executable, "-c", "import uvloop"]
    hidden = subprocess.run(probe, env={**os.environ, **no_uvloop}, capture_output=True, timeout=30)
    assert hidden.returncode != 0
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def test_children_get_the_loop_in_their_settings(tmp_path: Path) -> None:
    """The acceptor and the workers are started with the loop; the Redis bridge
    (which keeps its own asyncio loop) is not."""
    import socket

    from axeom_supervisor._children import command

    config = Config.build("a:app", loop="asyncio", pubsub="redis://127.0.0.1:6379/0", workers=1)
    with socket.socket() as listener:
        for role, name in (("acceptor", "acceptor"), ("worker", "worker-1")):
            _, options, _ = command(
                config, role, name, 1, run_dir=str(tmp_path), listener=listener, node_id="n"
            )
            assert options["loop"] == "asyncio"
        _, options, _ = command(
            config, "bridge", "bridge", 1, run_dir=str(tmp_path), listener=listener, node_id="n"
        )
        assert "loop" not in options
