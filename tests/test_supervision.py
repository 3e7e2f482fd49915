"""The supervisor's side of `axeom run --workers N`, through the real process
tree: placement and totals across an acceptor restart, reloads that replace
the acceptor too, one shutdown timeline, and honest counters."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets.sync.client as ws_sync
from websockets.exceptions import ConnectionClosed

from axeom import control
from tests._processes import ROOT, Server, run_axeom, running_axeom, status, wait_for
from tests._wsraw import upgrade_request

APP = "tests/apps/supervision_app.py:app"
POLICY = """
[server]
graceful_timeout = {graceful}

[supervisor]
strategy = "{strategy}"
backoff = {{ initial = {backoff}, max = {backoff}, multiplier = 1.0, jitter = 0.0 }}
shutdown_timeout = {shutdown}

[workers]
heartbeat_interval = {heartbeat}
heartbeat_timeout = {heartbeat_timeout}
"""

pytestmark = pytest.mark.timeout(90)


@contextmanager
def tree(
    tmp_path: Path,
    app: str = APP,
    workers: int = 2,
    *,
    graceful: float = 2.0,
    shutdown: float = 5.0,
    strategy: str = "one_for_one",
    backoff: float = 0.05,
    heartbeat: float = 0.2,
    close_sleep: float = 0.0,
) -> Iterator[Server]:
    config = tmp_path / "axeom.toml"
    config.write_text(
        POLICY.format(
            graceful=graceful,
            shutdown=shutdown,
            strategy=strategy,
            backoff=backoff,
            heartbeat=heartbeat,
            heartbeat_timeout=max(5.0, heartbeat * 3),
        )
    )
    env = {
        "AXEOM_TEST_RECORD": str(tmp_path / "record.txt"),
        "AXEOM_TEST_CLOSE_SLEEP": str(close_sleep),
    }
    args = ("--port", "0", "--workers", str(workers), "--config", str(config))
    with running_axeom(app, *args, env=env) as server:
        yield server


def connect(server: Server, path: str = "/chat") -> ws_sync.ClientConnection:
    return ws_sync.connect(f"{server.url}{path}", open_timeout=10)


def ask(ws: ws_sync.ClientConnection, text: str) -> str:
    ws.send(text)
    reply = ws.recv(timeout=10)
    assert isinstance(reply, str)
    return reply


def process(server: Server, role: str) -> dict[str, Any] | None:
    """The status entry of the first ``role`` process, asked in-process: an
    ``axeom status`` subprocess takes longer to start on a loaded machine
    than the restart backoff a test may want to see."""
    processes = control.status(port=server.port, timeout=10)["processes"]
    return next((p for p in processes if p["role"] == role), None)


def http_get(port: int, path: str) -> int:
    """The status code of a plain GET."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = sock.recv(65536).decode("latin-1")
    return int(head.split(" ", 2)[1])


def refused_upgrade(port: int, path: str) -> int:
    """The status code of an upgrade request (a route that does not exist: 404)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(upgrade_request(path))
        head = sock.recv(65536).decode("latin-1")
    return int(head.split(" ", 2)[1])


def kill_acceptor_and_wait(server: Server) -> list[dict[str, Any] | None]:
    """kill -9 the acceptor; poll status until a new one is running. Returns
    what status said of the acceptor at each poll."""
    old = process(server, "acceptor")
    assert old is not None
    os.kill(old["pid"], signal.SIGKILL)
    seen: list[dict[str, Any] | None] = []

    def replaced() -> bool:
        entry = process(server, "acceptor")
        seen.append(entry)
        return (
            entry is not None
            and entry["pid"] not in (None, old["pid"])
            and (entry["state"] == "running")
        )

    wait_for(replaced, 20, "a new acceptor")
    return seen


# -- item: placement and totals across an acceptor restart ---------------------------


WARM_UP = 200  # connections before the restart: lifetime counts of ~100 per worker
BURST = 100  # sockets opened right after the restart, all held open
CONCURRENCY = 20  # clients connecting at once: the burst takes well under a report interval


def open_many(stack: ExitStack, server: Server, count: int) -> list[ws_sync.ClientConnection]:
    """``count`` connections made by CONCURRENCY threads, held open by ``stack``."""
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        sockets = list(pool.map(lambda _: connect(server), range(count)))
    for ws in sockets:
        stack.enter_context(ws)
    return sockets


def test_placement_is_even_right_after_an_acceptor_restart(tmp_path: Path) -> None:
    """Workers report lifetime counts; a restarted acceptor must not read them
    as "all my sockets arrived" and pile every new socket onto one worker.
    Status totals survive the restart, and the acceptor stays listed."""
    # Worker reports are rare here (every 4 s), so the burst is placed on the
    # acceptor's own accounting, as it would be in a burst at a normal rate.
    with tree(tmp_path, heartbeat=4.0, backoff=1.0) as server:
        with ExitStack() as warm_up:
            open_many(warm_up, server, WARM_UP)
        assert http_get(server.port, "/health") == 200
        assert refused_upgrade(server.port, "/nowhere") == 404
        wait_for(
            lambda: (
                (totals := status(server.port)["totals"])["handed_off"] >= WARM_UP
                and totals["sockets"] == 0
            ),
            20,
            "the reports to show the warm-up done",
        )
        seen = kill_acceptor_and_wait(server)
        assert all(entry is not None for entry in seen), seen
        assert any(entry and entry["state"] == "restarting" for entry in seen), seen
        with ExitStack() as stack:
            pids = [ask(ws, "pid") for ws in open_many(stack, server, BURST)]
            counts = sorted(pids.count(pid) for pid in set(pids))
            assert len(counts) == 2 and counts[0] >= 0.35 * BURST, counts
        wait_for(
            lambda: status(server.port)["totals"]["handed_off"] >= WARM_UP + BURST,
            20,
            "the totals to carry on from the killed acceptor's",
        )
        totals = status(server.port)["totals"]
        assert totals["rejected_handshakes"] == 1
        assert totals["http_responses"]["2xx"] == 1


# -- item: a reload replaces every process that runs application code --------------


class HandshakeLoop:
    """A client doing handshake, echo, close on ``path`` in a loop (a thread),
    recording every failure. A 1001 after the 101 is a rolled worker closing
    its sockets, which a reload is allowed to do; anything else is not."""

    def __init__(self, server: Server, path: str) -> None:
        self.server, self.path = server, path
        self.done = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HandshakeLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.server, self.path) as ws:
                    ws.send("x")
                    ws.recv(timeout=10)
            except ConnectionClosed as exc:
                if exc.rcvd is None or exc.rcvd.code != 1001:
                    self.failures.append(repr(exc))
            except Exception as exc:  # refused, reset, timed out: all count
                self.failures.append(repr(exc))
            self.done += 1


def answers_101(server: Server, path: str) -> bool:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade_request(path))
        return sock.recv(65536).startswith(b"HTTP/1.1 101")


def test_sighup_replaces_the_acceptor_without_refusing_a_handshake(tmp_path: Path) -> None:
    """A route added to the app before SIGHUP answers 101 after it (the
    acceptor, which routes, is replaced too), and a client handshaking all
    along on an old route is never refused nor reset."""
    app_file = tmp_path / "reloadable.py"
    shutil.copy(os.path.join(ROOT, "tests/apps/reload_template.py"), app_file)
    with tree(tmp_path, app=f"{app_file}:app") as server:
        acceptor = process(server, "acceptor")
        assert acceptor is not None
        assert not answers_101(server, "/new")
        with HandshakeLoop(server, "/old") as loop:
            wait_for(lambda: loop.done >= 5, 20, "the client loop to run")
            with app_file.open("a") as source:
                source.write('app.ws("/new", message=lambda ws, msg: ws.send(msg))\n')
            os.kill(server.proc.pid, signal.SIGHUP)
            wait_for(lambda: answers_101(server, "/new"), 40, "the new route to answer 101")
            wait_for(lambda: "acceptor replaced" in server.text(), 20, "the reload to end")
            before = loop.done
            wait_for(lambda: loop.done >= before + 5, 20, "handshakes after the reload")
        assert loop.failures == [], loop.failures[:5]
        new = process(server, "acceptor")
        assert new is not None and new["pid"] != acceptor["pid"]
        wait_for(  # the old acceptor's count is kept: every handshake of the loop is there
            lambda: status(server.port)["totals"]["handed_off"] >= loop.done + 1,
            20,
            "the totals to include both acceptors",
        )


def test_axeom_reload_replaces_every_app_process(tmp_path: Path) -> None:
    """``axeom reload`` does what SIGHUP does: a route added to the app file
    answers 101 afterwards, served by a new acceptor."""
    app_file = tmp_path / "reloadable.py"
    shutil.copy(os.path.join(ROOT, "tests/apps/reload_template.py"), app_file)
    with tree(tmp_path, app=f"{app_file}:app") as server:
        acceptor = process(server, "acceptor")
        assert acceptor is not None and not answers_101(server, "/new")
        with app_file.open("a") as source:
            source.write('app.ws("/new", message=lambda ws, msg: ws.send(msg))\n')
        result = run_axeom("reload", "--port", str(server.port))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("reloading"), result.stdout
        wait_for(lambda: "acceptor replaced" in server.text(), 40, "the reload to end")
        assert answers_101(server, "/new")
        new = process(server, "acceptor")
        assert new is not None and new["pid"] != acceptor["pid"]


def test_sighup_with_code_that_does_not_import_keeps_the_tree_serving(tmp_path: Path) -> None:
    """A reload whose new processes cannot load the app (a bad deploy, or an
    edit saved while a ``--reload`` was under way) keeps the running ones:
    the tree serves on with its code, and the next good reload goes through."""
    app_file = tmp_path / "reloadable.py"
    shutil.copy(os.path.join(ROOT, "tests/apps/reload_template.py"), app_file)
    good = app_file.read_text()
    with tree(tmp_path, app=f"{app_file}:app", workers=1) as server:
        app_file.write_text(good + "app.ws('/new'\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        kept = "keeping the running acceptor"
        ended = server.proc.poll
        wait_for(lambda: kept in server.text() or ended() is not None, 40, "the reload's end")
        assert ended() is None, server.text()
        assert "giving up" not in server.text()
        with connect(server, "/old") as ws:
            assert ask(ws, "hi") == "old: hi"
        app_file.write_text(good + 'app.ws("/new", message=lambda ws, msg: ws.send(msg))\n')
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(lambda: answers_101(server, "/new"), 40, "the good reload to serve /new")


# -- item: one shutdown timeline; one_for_all is about workers -----------------------


def records(tmp_path: Path) -> list[str]:
    path = tmp_path / "record.txt"
    return path.read_text().splitlines() if path.exists() else []


def running(pid: int) -> bool:
    """True if ``pid`` is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_close_handler_longer_than_graceful_timeout_is_cut_then(tmp_path: Path) -> None:
    """SIGTERM: a close handler still running at graceful_timeout is cancelled
    and the worker exits by itself, well before shutdown_timeout's SIGKILL."""
    with tree(tmp_path, graceful=1.0, shutdown=8.0, close_sleep=30.0) as server:
        with connect(server) as ws:
            assert ask(ws, "hi") == "Echo: hi"
            workers = [p["pid"] for p in status(server.port)["processes"] if p["role"] == "worker"]
            started = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
            assert server.proc.wait(timeout=20) == 0
            elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 4.5, (elapsed, server.text())
        lines = records(tmp_path)
        assert any(line.startswith("close started") for line in lines), lines
        assert not any(line.startswith("close finished") for line in lines), lines
        for pid in workers:  # each worker finished by itself, none was left behind
            assert f"(pid {pid}) exited normally" in server.text(), server.text()
            assert not running(pid)


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_deaf_to_sigterm_is_killed_after_shutdown_timeout(
    tmp_path: Path, workers: int
) -> None:
    """A worker whose loop is blocked cannot drain: it is SIGKILLed
    shutdown_timeout after its SIGTERM, and the tree still exits; the other
    worker, if any, drains and exits by itself."""
    with tree(tmp_path, workers=workers, graceful=0.5, shutdown=1.5) as server:
        with connect(server) as ws:
            assert ask(ws, "hi") == "Echo: hi"
            deaf = int(ask(ws, "pid"))
            others = [p["pid"] for p in status(server.port)["processes"] if p["role"] == "worker"]
            others.remove(deaf)
            ws.send("block")
            time.sleep(0.2)  # not a synchronisation: the worker blocks whenever it reads it
            started = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
            server.proc.wait(timeout=20)
            elapsed = time.monotonic() - started
        assert 1.4 <= elapsed < 5.0, elapsed
        assert f"(pid {deaf}) still running 1.5s after SIGTERM: killing it" in server.text()
        assert server.text().count("after SIGTERM: killing it") == 1
        for pid in others:
            assert f"(pid {pid}) exited normally" in server.text(), server.text()


def test_one_for_all_acceptor_crash_leaves_the_workers_alone(tmp_path: Path) -> None:
    """one_for_all is about workers: kill -9 of the acceptor restarts the
    acceptor only; every worker keeps its pid and its sockets."""
    with tree(tmp_path, strategy="one_for_all") as server, ExitStack() as stack:
        sockets = [stack.enter_context(connect(server)) for _ in range(4)]
        pids = {ask(ws, "pid") for ws in sockets}
        assert len(pids) == 2
        before = {p["pid"] for p in status(server.port)["processes"] if p["role"] == "worker"}
        kill_acceptor_and_wait(server)
        for ws in sockets:
            assert ask(ws, "still") == "Echo: still"
        after = {p["pid"] for p in status(server.port)["processes"] if p["role"] == "worker"}
        assert after == before
        with connect(server) as fresh:
            assert ask(fresh, "new") == "Echo: new"


# -- item: counters and log lines ----------------------------------------------------


def reset_after_handshake(port: int) -> None:
    """Handshake, then abort the connection with a TCP reset."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(upgrade_request("/chat"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 101")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def wait_for_counters(port: int, two_xx: int) -> dict[str, Any]:
    wait_for(
        lambda: status(port)["totals"].get("http_responses", {}).get("2xx") == two_xx,
        20,
        "the HTTP responses to be counted",
    )
    return status(port)["totals"]


@pytest.mark.parametrize("workers", [0, 2])
def test_status_counts_http_responses_apart_from_refused_upgrades(
    tmp_path: Path, workers: int
) -> None:
    """A /health 200 is a 2xx response, not a rejected handshake; a refused
    upgrade is both a rejected handshake and a 4xx; text and JSON agree."""
    with tree(tmp_path, workers=workers) as server:
        for _ in range(5):
            assert http_get(server.port, "/health") == 200
        assert http_get(server.port, "/missing") == 404
        assert refused_upgrade(server.port, "/nowhere") == 404
        with connect(server) as ws:
            assert ask(ws, "hi") == "Echo: hi"
        totals = wait_for_counters(server.port, 5)
        assert totals["rejected_handshakes"] == 1
        assert totals["http_responses"] == {"2xx": 5, "3xx": 0, "4xx": 2, "5xx": 0}
        assert totals["handed_off"] == 1
        text = run_axeom("status", "--port", str(server.port)).stdout
        assert "rejected handshakes: 1" in text
        assert "2xx: 5  3xx: 0  4xx: 2  5xx: 0" in text


def test_ready_line_says_one_worker(tmp_path: Path) -> None:
    """`--workers 1`: "(1 worker)", not "(1 workers)"."""
    with tree(tmp_path, workers=1) as server:
        assert "(1 worker)\n" in server.text()


def test_an_aborted_connection_logs_no_info_line(tmp_path: Path) -> None:
    """A client that resets its connection is routine: a debug line, no INFO."""
    args = ("--port", "0", "--workers", "1", "--log-level", "debug")
    with running_axeom(APP, *args) as server:
        reset_after_handshake(server.port)
        wait_for(lambda: "connection closed" in server.text(), 20, "the worker's debug line")
        lines = [line for line in server.text().splitlines() if "connection closed" in line]
        assert lines and all(" DEBUG " in line for line in lines), lines


def test_worker_slot_load_counts_only_what_this_acceptor_handed() -> None:
    """A new acceptor's first table shows lifetime counts: they are the base,
    not sockets of its own that already arrived."""
    from axeom_acceptor._acceptor import WorkerSlot

    busy, fresh = WorkerSlot("worker-1", 1, "a"), WorkerSlot("worker-2", 1, "b")
    busy.report(sockets=0, received=5000)
    fresh.report(sockets=0, received=0)
    busy.handed = 3
    assert busy.load == 3 and fresh.load == 0
    busy.report(sockets=2, received=5002)  # two of ours arrived, one is on its way
    assert busy.load == 3


def test_after_sigterm_a_new_connection_is_refused_not_left_waiting(tmp_path: Path) -> None:
    """Once the acceptor has stopped, nothing will read a new connection: it
    is refused at once, not queued in the listening socket's backlog until
    the workers finish draining (then reset)."""
    with tree(tmp_path, graceful=4.0, shutdown=8.0, close_sleep=30.0) as server:
        with connect(server) as ws:
            assert ask(ws, "hi") == "Echo: hi"
            os.kill(server.proc.pid, signal.SIGTERM)
            exited = re.compile(r"acceptor \(pid \d+\) exited")
            wait_for(lambda: bool(exited.search(server.text())), 10, "the acceptor to exit")
            assert server.proc.poll() is None  # the worker is still draining
            with pytest.raises(ConnectionRefusedError):
                late = socket.create_connection(("127.0.0.1", server.port), timeout=2)
                with late:
                    late.sendall(upgrade_request("/chat"))
                    late.settimeout(2)
                    late.recv(1024)  # no answer (timeout), then a reset, before the fix
            assert server.proc.wait(timeout=20) == 0
