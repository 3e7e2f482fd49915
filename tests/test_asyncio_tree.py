"""``--loop asyncio`` and ``--loop uvloop`` through real processes: the tree
(``--workers 2``: the acceptor and the workers run their trio plumbing as a
guest of the asyncio loop, application code natively on it) and the single
process (``--workers 0``), with real clients on 127.0.0.1.

The app (tests/apps/asyncio_tree_app.py) awaits asyncio in every hook and
handler, including ``asyncio.open_connection`` to a TCP echo server this
test starts; on trio each of them would fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets.sync.client as ws_sync
from websockets.exceptions import ConnectionClosed

from tests._processes import ROOT, Server, run_axeom, running_axeom, running_command, status
from tests._processes import wait_for as poll

APP = "tests/apps/asyncio_tree_app.py:app"
LOOPS = ["asyncio", "uvloop"]
# Generous bounds for a loaded 2-core machine: only a hang takes this long.
WAIT = 20.0

pytestmark = pytest.mark.timeout(120)


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


@contextmanager
def echo_server() -> Iterator[int]:
    """A TCP line echo server on a free loopback port, for the app's
    ``asyncio.open_connection``; stopped and joined on exit."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serving(
    folder: Path, loop: str, workers: int = 2, *, close_sleep: float = 0.0
) -> Iterator[Server]:
    """``axeom run`` of the app on ``loop``, its hooks recording to ``folder``."""
    with echo_server() as echo_port:
        env = {
            "AXEOM_TEST_RECORD": str(folder / "record.txt"),
            "AXEOM_TEST_ECHO_PORT": str(echo_port),
            "AXEOM_TEST_CLOSE_SLEEP": str(close_sleep),
        }
        args = ("--port", "0", "--workers", str(workers), "--loop", loop)
        with running_axeom(APP, *args, "--graceful-timeout", "10", env=env) as server:
            yield server


def records(folder: Path) -> list[tuple[str, str, int]]:
    """(what, loop kind, pid) for every line the app's hooks wrote, in order."""
    path = folder / "record.txt"
    if not path.exists():
        return []
    return [
        (w, kind, int(pid))
        for w, kind, pid in (line.split() for line in path.read_text().splitlines())
    ]


def processes(server: Server, role: str) -> list[dict[str, Any]]:
    return [p for p in status(server.port)["processes"] if p["role"] == role]


def connect(server: Server, path: str) -> ws_sync.ClientConnection:
    return ws_sync.connect(f"{server.url}{path}", open_timeout=WAIT)


def ask(ws: ws_sync.ClientConnection, command: str) -> str:
    ws.send(command)
    answer = ws.recv(timeout=WAIT)
    assert isinstance(answer, str), answer
    return answer


def command(ws: ws_sync.ClientConnection, text: str) -> str:
    answer = ask(ws, text)
    assert answer.startswith("R:"), answer
    return answer[2:]


def open_on_both_workers(stack: ExitStack, server: Server) -> dict[int, ws_sync.ClientConnection]:
    """A /room socket on each of the two workers (placement is by fewest
    sockets, so a few held open cover both), by worker pid."""
    found: dict[int, ws_sync.ClientConnection] = {}
    for _ in range(8):
        ws = stack.enter_context(connect(server, "/room"))
        found.setdefault(int(command(ws, "pid")), ws)
        if len(found) == 2:
            return found
    raise AssertionError(f"sockets landed on one worker only: {list(found)}")


@pytest.fixture(scope="module", params=LOOPS)
def tree(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str, Path]]:
    """One ``--workers 2`` tree per loop, shared by the tests that leave it as they found it."""
    loop: str = request.param
    folder = tmp_path_factory.mktemp(f"tree-{loop}")
    with serving(folder, loop) as server:
        yield server, loop, folder


def test_echo_with_asyncio_clients_in_derive_and_handler(tree: tuple[Server, str, Path]) -> None:
    """derive (in the acceptor) and the handler (in a worker) both awaited
    asyncio.sleep and asyncio.open_connection, on the loop asked for."""
    server, loop, _ = tree
    workers = [p["pid"] for p in processes(server, "worker")]
    with connect(server, "/echo") as ws:
        reply, derived, hook_loop, handler_loop, pid = ask(ws, "hello").split()
    assert (reply, derived, hook_loop, handler_loop) == ("hello", "derive", loop, loop)
    assert int(pid) in workers
    with connect(server, "/plain") as ws:
        assert ask(ws, "plain") == "plain"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=WAIT) == b"\x00\x01"


def test_lifespan_ran_on_the_loop_in_the_acceptor_and_both_workers(
    tree: tuple[Server, str, Path],
) -> None:
    """on_start ran once in the acceptor and in each worker, on asyncio (or
    uvloop), never in the supervisor; status shows both workers and the acceptor."""
    server, loop, folder = tree
    everything = status(server.port)["processes"]
    assert sorted(p["name"] for p in everything) == ["acceptor", "worker-1", "worker-2"]
    assert all(p["state"] == "running" for p in everything), everything
    app_pids = sorted(p["pid"] for p in everything)
    started = [(kind, pid) for what, kind, pid in records(folder) if what == "start"]
    assert sorted(pid for _, pid in started) == app_pids
    assert {kind for kind, _ in started} == {loop}
    assert server.proc.pid not in app_pids


def test_pubsub_and_app_send_across_the_two_workers(tree: tuple[Server, str, Path]) -> None:
    """A publish from one worker reaches the subscriber on the other (both
    ways), and app.send reaches a socket on the other worker; awaited subscribe,
    publish and send are asyncio awaits here."""
    server, _, _ = tree
    with ExitStack() as stack:
        (pid_a, a), (pid_b, b) = open_on_both_workers(stack, server).items()
        assert pid_a != pid_b
        assert command(a, "sub:news") == "subscribed"
        assert command(b, "sub:news") == "subscribed"
        a.send("pub:news:first")  # a publisher does not get its own publish
        assert b.recv(timeout=WAIT) == "first"
        b.send("pub:news:second")
        assert a.recv(timeout=WAIT) == "second"
        target = command(b, "id")
        a.send(f"send:{target}:direct")
        assert b.recv(timeout=WAIT) == "direct"


def test_a_trio_primitive_in_a_handler_gets_1011_and_the_loop_line(
    tree: tuple[Server, str, Path],
) -> None:
    """A handler awaiting trio.sleep on an asyncio worker: 1011, a sibling
    socket untouched, and the log line names the loop and the option."""
    server, loop, _ = tree
    hint = (
        f"it awaited a trio object, but this server runs on {loop}; "
        'start it with --loop trio (or [server] loop = "trio")'
    )
    with connect(server, "/plain") as sibling, connect(server, "/trio") as ws:
        ws.send("hi")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert ask(sibling, "still here") == "still here"
    poll(lambda: hint in server.text(), WAIT, "the wrong-loop line", output=server.text)


@pytest.mark.parametrize("loop", LOOPS)
def test_sigterm_drains_runs_close_handlers_then_on_stop(tmp_path: Path, loop: str) -> None:
    """SIGTERM with a socket open on each worker: their (asyncio) close
    handlers finish, then on_stop in every process, on the loop; exit 0."""
    with serving(tmp_path, loop, close_sleep=0.3) as server, ExitStack() as stack:
        sockets = open_on_both_workers(stack, server)
        app_pids = sorted(p["pid"] for p in status(server.port)["processes"])
        os.killpg(server.proc.pid, signal.SIGTERM)
        for ws in sockets.values():
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert server.proc.wait(timeout=WAIT) == 0, server.text()
    lines = records(tmp_path)
    assert sorted(pid for what, _, pid in lines if what == "stop") == app_pids
    assert {kind for _, kind, _ in lines} == {loop}
    for pid in sockets:  # in each worker: the close handler, then on_stop
        mine = [what for what, _, who in lines if who == pid]
        assert mine[-2:] == ["close", "stop"], mine
    assert "Traceback" not in server.text(), server.text()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_killed_worker_is_restarted_and_the_other_keeps_its_sockets(
    tmp_path: Path, loop: str
) -> None:
    """kill -9 one worker: its client sees the connection end, the other
    worker's socket goes on working, and a new worker starts (on_start on the
    loop again) and takes new sockets; heartbeats keep both reported."""
    with serving(tmp_path, loop) as server, ExitStack() as stack:
        sockets = open_on_both_workers(stack, server)
        (victim, lost), (survivor, kept) = sockets.items()
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            lost.recv(timeout=WAIT)

        def replaced() -> bool:
            workers = processes(server, "worker")
            pids = {p["pid"] for p in workers}
            return (
                len(workers) == 2
                and victim not in pids
                and None not in pids
                and all(p["state"] == "running" for p in workers)
            )

        poll(replaced, WAIT, "a new worker", output=server.text)
        assert command(kept, "pid") == str(survivor)
        new = next(p for p in processes(server, "worker") if p["pid"] != survivor)
        assert new["restarts"] == 1
        poll(
            lambda: ("start", loop, new["pid"]) in records(tmp_path),
            WAIT,
            "on_start in the new worker",
        )

        # The acceptor places on the new worker (fewest sockets) once its
        # table names it: new sockets (held open) land there.
        def placed_on_new() -> bool:
            fresh = stack.enter_context(connect(server, "/room"))
            return command(fresh, "pid") == str(new["pid"])

        poll(placed_on_new, WAIT, "a socket on the new worker", output=server.text)


@pytest.mark.parametrize("loop", LOOPS)
def test_one_process_status_and_publish(tmp_path: Path, loop: str) -> None:
    """--workers 0 on the loop: derive and handler await asyncio, on_start ran
    there, and `axeom status` / `axeom publish` reach the server."""
    with serving(tmp_path, loop, workers=0) as server:
        with connect(server, "/echo") as ws:
            reply, derived, hook_loop, handler_loop, pid = ask(ws, "hi").split()
        assert (reply, derived, hook_loop, handler_loop) == ("hi", "derive", loop, loop)
        assert int(pid) == server.proc.pid
        assert records(tmp_path) == [("start", loop, server.proc.pid)]
        with connect(server, "/room") as ws:
            assert command(ws, "sub:news") == "subscribed"
            (only,) = status(server.port)["processes"]
            assert (only["role"], only["sockets"]) == ("server", 1)
            published = run_axeom("publish", "news", "from-cli", "--port", str(server.port))
            assert published.returncode == 0, published.stderr
            assert ws.recv(timeout=WAIT) == "from-cli"


def _console_script() -> str:
    """The installed `axeom` command, as a user runs it."""
    beside = Path(sys.executable).with_name("axeom")
    found = str(beside) if beside.exists() else shutil.which("axeom")
    assert found, "the axeom console script is not installed"
    return found


@pytest.mark.parametrize("where", ["repository", "app folder"])
def test_quick_start_with_loop_asyncio(tmp_path: Path, where: str) -> None:
    """The README's first commands with --loop asyncio added, nothing else
    changed: `axeom run examples/echo.py:app` from the repository root, and
    `axeom run app:app` from the app's folder."""
    if where == "repository":
        argv, cwd = [_console_script(), "run", "examples/echo.py:app", "--loop", "asyncio"], ROOT
    else:
        shutil.copy(Path(ROOT) / "examples" / "echo.py", tmp_path / "app.py")
        argv, cwd = [_console_script(), "run", "app:app", "--loop", "asyncio"], str(tmp_path)
    with running_command(argv, cwd=cwd, env={"AXEOM_PORT": "0"}) as server:
        with connect(server, "/chat") as ws:
            assert ask(ws, "hi") == "Echo: hi"
        assert status(server.port)["processes"][0]["role"] == "server"


def test_the_echo_server_echoes() -> None:
    """The test's own echo server (what the app's asyncio clients talk to)."""
    with echo_server() as port, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ping\n")
        assert sock.recv(16) == b"ping\n"


# -- the bridge under it, in one process -------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_guest_bridge_results_errors_and_cancellation(loop: str) -> None:
    """trio code run as a guest awaits asyncio coroutines (in tasks of their
    own): their values and errors come back; cancelling the trio side
    cancels the asyncio task and waits for it; a trio.Event set from asyncio
    wakes trio. The guest's value comes back to asyncio."""
    import asyncio

    import trio

    from axeom.asyncio_runtime import call_in_asyncio, run_on_loop, run_trio_guest

    cleaned: list[str] = []

    async def in_asyncio(value: int) -> tuple[int, bool]:
        await asyncio.sleep(0.001)
        return value, asyncio.current_task() is not None

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("from asyncio")

    async def hangs() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append("asyncio task ended")

    async def guest() -> str:
        assert await call_in_asyncio(in_asyncio, 7) == (7, True)
        with pytest.raises(ValueError, match="from asyncio"):
            await call_in_asyncio(fails)
        with trio.move_on_after(0.05) as scope:
            await call_in_asyncio(hangs)
        assert scope.cancelled_caught and cleaned == ["asyncio task ended"]
        woken = trio.Event()
        asyncio.get_running_loop().call_soon(woken.set)
        with trio.fail_after(WAIT):
            await woken.wait()
        return "guest done"

    async def main() -> str:
        return await run_trio_guest(guest)

    assert run_on_loop(loop, main) == "guest done"


@pytest.mark.parametrize("loop", LOOPS)
def test_cancelling_the_host_cancels_the_guest(loop: str) -> None:
    """The asyncio side giving up on run_trio_guest cancels the trio run, whose
    cleanup runs before run_trio_guest returns."""
    import asyncio

    import trio

    from axeom.asyncio_runtime import run_on_loop, run_trio_guest

    unwound: list[str] = []

    async def guest() -> None:
        try:
            await trio.sleep_forever()
        finally:
            unwound.append("trio unwound")

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await run_trio_guest(guest)

    run_on_loop(loop, main)
    assert unwound == ["trio unwound"]


@pytest.mark.parametrize("loop", LOOPS)
def test_drain_waits_for_a_close_handler_started_just_before(loop: str) -> None:
    """A close handler's rest started (in a task not yet run) right before the
    drain looks is waited for: the worker's SIGTERM drain ran on_stop before
    close handlers had run when this raced."""
    import asyncio

    from axeom.asyncio_runtime import AsyncioRuntime, run_on_loop

    done: list[str] = []

    async def rest() -> None:
        await asyncio.sleep(0.05)
        done.append("close handler")

    async def main() -> None:
        runtime = AsyncioRuntime(None, loop_name=loop)
        runtime.start_close(rest(), timeout=WAIT)
        assert await runtime.drain(WAIT) == 0
        runtime.close()
        assert done == ["close handler"]

    run_on_loop(loop, main)
