"""`axeom run --workers N`: the real process tree on 127.0.0.1 with real clients."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import websockets.sync.client as ws_sync
from websockets.exceptions import ConnectionClosed

from axeom.config import ServerConfig
from tests._processes import Server, run_axeom, running_axeom, status, wait_for
from tests._wsraw import KEY, Deflater, client_frame

APP = "tests/apps/runtime_app.py:app"
# The default request timeout the trees here run with (server.request_timeout).
REQUEST_TIMEOUT = ServerConfig().request_timeout
FAST_POLICY = """
[server]
graceful_timeout = 2.0

[supervisor]
max_restarts = 5
max_seconds = 30
backoff = { initial = 0.05, max = 0.2, multiplier = 2.0, jitter = 0.0 }
shutdown_timeout = 4

[workers]
heartbeat_interval = 0.2
heartbeat_timeout = 1.5
"""

pytestmark = pytest.mark.timeout(90)


@contextmanager
def tree(tmp_path: Path, workers: int = 2, policy: str = FAST_POLICY) -> Iterator[Server]:
    config = tmp_path / "axeom.toml"
    config.write_text(policy)
    record = tmp_path / "closes.txt"
    with running_axeom(
        APP,
        "--port",
        "0",
        "--workers",
        str(workers),
        "--config",
        str(config),
        env={"AXEOM_TEST_RECORD": str(record)},
    ) as server:
        yield server


def connect(server: Server) -> ws_sync.ClientConnection:
    """A client connection, for ``with connect(server) as ws``."""
    return ws_sync.connect(f"{server.url}/chat", open_timeout=10)


def connect_many(stack: ExitStack, server: Server, count: int) -> list[ws_sync.ClientConnection]:
    return [stack.enter_context(connect(server)) for _ in range(count)]


def ask(ws: ws_sync.ClientConnection, text: str) -> str:
    ws.send(text)
    reply = ws.recv(timeout=5)
    assert isinstance(reply, str)
    return reply


def worker_pids(server: Server) -> dict[str, int]:
    """Pids of the workers that are running (ready and receiving sockets)."""
    processes = status(server.port)["processes"]
    return {
        p["name"]: p["pid"] for p in processes if p["role"] == "worker" and p["state"] == "running"
    }


def test_quick_start_through_two_workers(tmp_path: Path) -> None:
    """The echo route works through the acceptor and two workers; ready line names them."""
    with tree(tmp_path) as server:
        assert "(2 workers)" in server.text()
        with connect(server) as ws:
            assert ask(ws, "hi") == "Echo: hi"


def test_first_frame_with_the_handshake_survives_the_hand_off(tmp_path: Path) -> None:
    """Bytes read past the head by the acceptor reach the worker's socket."""
    with tree(tmp_path) as server:
        request = (
            f"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request + client_frame(0x1, b"early"))
            data = b""
            while b"Echo: early" not in data:
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
        assert data.startswith(b"HTTP/1.1 101")


def test_compression_negotiated_by_the_acceptor_is_rebuilt_in_the_worker(tmp_path: Path) -> None:
    """permessage-deflate agreed at the handshake works in the worker (rebuilt from the offer)."""
    with tree(tmp_path, workers=1) as server:
        url = f"{server.url}/z"
        with ws_sync.connect(url, compression="deflate", open_timeout=10) as ws:
            ws.send("abc" * 1000)
            assert ws.recv(timeout=5) == "abc" * 2000
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert extensions is not None and extensions.startswith("permessage-deflate")


def read_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """(first header byte, payload) of the next unmasked server frame."""
    while True:
        if len(buffer) >= 2:
            length, offset = buffer[1] & 0x7F, 2
            if length == 126 and len(buffer) >= 4:
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            if length < 126 and len(buffer) >= offset + length:
                first, payload = buffer[0], bytes(buffer[offset : offset + length])
                del buffer[: offset + length]
                return first, payload
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a whole frame"
        buffer += chunk


@pytest.mark.parametrize("workers", [0, 1])
def test_bare_deflate_offer_compresses_through_the_tree(tmp_path: Path, workers: int) -> None:
    """`Sec-WebSocket-Extensions: permessage-deflate` with no parameters, then frames
    compressed by hand: echoed compressed and intact with and without workers."""
    deflater = Deflater()
    with tree(tmp_path, workers=workers) as server:
        request = (
            f"GET /z HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request + deflater.frame(b"first " * 10))
            buffer = bytearray()
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                assert chunk, bytes(buffer)
                buffer += chunk
            head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            assert b"sec-websocket-extensions: permessage-deflate" in head.lower()
            buffer = bytearray(rest)
            for text in (b"first " * 10, b"second " * 10):
                if text != b"first " * 10:
                    sock.sendall(deflater.frame(text))
                first, payload = read_frame(sock, buffer)
                assert first == 0xC1, (first, payload)  # final, compressed, text
                assert deflater.inflate(payload) == text * 2


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"GET /chat HTTP/1.1\nHost: x\nUpgrade: websocket\n\n", b"bare LF"),
        (b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", b"missing Host"),
        (
            f"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"Content-Length: 6\r\n\r\n".encode()
            + client_frame(0x1, b""),
            b"Content-Length",
        ),
    ],
    ids=["bare-lf", "no-host", "content-length"],
)
def test_acceptor_refuses_strict_handshakes_at_once(
    tmp_path: Path, request_bytes: bytes, reason: bytes
) -> None:
    """Through the acceptor: bare LF, no Host and an upgrade with a body get 400 at once."""
    with tree(tmp_path, workers=1) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(request_bytes)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            elapsed = time.monotonic() - started
        assert data.startswith(b"HTTP/1.1 400"), data
        assert reason in data
        # "At once" = not after the request timeout (10 s by default), which is
        # what a parser that waited for more of the head would take.
        assert elapsed < REQUEST_TIMEOUT / 2


def test_sockets_spread_over_both_workers(tmp_path: Path) -> None:
    """Placement by fewest open sockets uses both workers."""
    with tree(tmp_path) as server:
        with ExitStack() as stack:
            pids = {ask(ws, "pid") for ws in connect_many(stack, server, 6)}
        assert pids == {str(pid) for pid in worker_pids(server).values()}
        assert len(pids) == 2


def test_kill_9_of_a_worker_spares_the_other(tmp_path: Path) -> None:
    """After kill -9 of one worker, its clients see their connections end, the
    other's sockets echo on, untouched, and a replacement appears."""
    with tree(tmp_path) as server, ExitStack() as stack:
        by_pid: dict[str, list[ws_sync.ClientConnection]] = {}
        for ws in connect_many(stack, server, 4):
            by_pid.setdefault(ask(ws, "pid"), []).append(ws)
        assert len(by_pid) == 2
        victim, survivor = sorted(by_pid)
        os.kill(int(victim), signal.SIGKILL)
        for _ in range(20):  # each round trip within ask's bounded wait
            for ws in by_pid[survivor]:
                assert ask(ws, "still?") == "Echo: still?"
        for ws in by_pid[victim]:
            with pytest.raises(ConnectionClosed):  # the close, not ask's timeout
                ask(ws, "dead?")

        def replaced() -> bool:
            processes = status(server.port)["processes"]
            workers = [p for p in processes if p["role"] == "worker"]
            return len(workers) == 2 and str(int(victim)) not in {str(p["pid"]) for p in workers}

        wait_for(replaced, 10, "a replacement worker")
        assert status(server.port)["totals"]["restarts"] == 1
        assert int(survivor) in worker_pids(server).values()  # spared, not restarted
        for ws in by_pid[survivor]:
            assert ask(ws, "after") == "Echo: after"
        with connect(server) as fresh:
            assert ask(fresh, "new") == "Echo: new"


def test_restart_intensity_exceeded_stops_the_tree(tmp_path: Path) -> None:
    """More crashes than max_restarts within max_seconds: exit non-zero with the reason."""
    policy = FAST_POLICY.replace("max_restarts = 5", "max_restarts = 2")
    with tree(tmp_path, workers=1, policy=policy) as server:
        for crash in range(3):
            wait_for(lambda: len(worker_pids(server)) == 1, 15, "a running worker")
            with connect(server) as ws:
                ws.send("crash")
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=5)
            if crash < 2:
                wait_for(
                    lambda c=crash: status(server.port)["totals"]["restarts"] == c + 1,
                    15,
                    "the restart",
                )
        server.proc.wait(timeout=20)
        assert server.proc.returncode == 1
        output = server.text()
        assert output.count("giving up") == 1
        assert "max_restarts=2" in output
        assert "worker-1" in output


def test_app_that_fails_to_import_is_not_restarted() -> None:
    """A child that cannot import the app stops the tree with status 3 and the error."""
    result = run_axeom(
        "run", "tests/apps/broken.py:app", "--workers", "2", "--port", "0", timeout=60
    )
    assert result.returncode == 3
    assert "No module named 'no_such_dependency_for_axeom_tests'" in result.stderr
    assert "restarting worker" not in result.stderr
    assert "application failed to load" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_closes_sockets_with_1001_and_runs_close_handlers(tmp_path: Path) -> None:
    """SIGTERM: every client gets 1001, every close handler ran, the tree exits 0."""
    with tree(tmp_path) as server, ExitStack() as stack:
        sockets = connect_many(stack, server, 6)
        ids = {ask(ws, "pid") for ws in sockets}
        assert len(ids) == 2
        os.kill(server.proc.pid, signal.SIGTERM)
        codes = []
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
        assert codes == [1001] * 6
        assert server.proc.wait(timeout=20) == 0
    lines = (tmp_path / "closes.txt").read_text().splitlines()
    assert len(lines) == 6
    assert all(line.endswith(" 1001") for line in lines)


@pytest.mark.parametrize("workers", [1, 2])
def test_hung_worker_is_replaced(tmp_path: Path, workers: int) -> None:
    """A handler that blocks its worker's loop: heartbeats stop, the worker is
    replaced; the other worker's sockets echo on meanwhile, and it is not restarted."""
    with tree(tmp_path, workers=workers) as server, ExitStack() as stack:
        blocker = stack.enter_context(connect(server))
        hung = int(ask(blocker, "pid"))
        others = [
            ws for ws in connect_many(stack, server, 2 * workers) if ask(ws, "pid") != str(hung)
        ]
        assert bool(others) == (workers > 1)
        before = worker_pids(server)
        name = next(name for name, pid in before.items() if pid == hung)
        blocker.send("block")
        for ws in others:  # not held up by the hung worker
            assert ask(ws, "during") == "Echo: during"
        wait_for(
            lambda: worker_pids(server).get(name) not in (None, hung),
            20,
            "the hung worker to be replaced",
        )
        assert "missed heartbeats" in server.text()
        after = worker_pids(server)
        assert {n: p for n, p in after.items() if n != name} == {
            n: p for n, p in before.items() if n != name
        }
        for ws in others:
            assert ask(ws, "after") == "Echo: after"
        with connect(server) as ws:
            assert ask(ws, "alive") == "Echo: alive"


def test_sighup_rolls_workers_without_touching_the_others(tmp_path: Path) -> None:
    """SIGHUP replaces workers one at a time; sockets on a worker not being
    rolled keep working while another drains, and new connections succeed."""
    with tree(tmp_path) as server, ExitStack() as stack:
        before = worker_pids(server)
        by_pid: dict[str, list[ws_sync.ClientConnection]] = {}
        for ws in connect_many(stack, server, 4):
            by_pid.setdefault(ask(ws, "pid"), []).append(ws)
        first = by_pid[str(before["worker-1"])]
        second = by_pid[str(before["worker-2"])]
        os.kill(server.proc.pid, signal.SIGHUP)
        for ws in first:  # worker-1 drains first: its clients get 1001
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=15)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        for ws in second:  # ... while worker-2's sockets still answer
            assert ask(ws, "during") == "Echo: during"
        with connect(server) as fresh:
            assert ask(fresh, "new") == "Echo: new"
        wait_for(lambda: "workers rolled" in server.text(), 30, "both workers rolled")
        after = worker_pids(server)
        assert len(after) == 2 and set(after.values()).isdisjoint(before.values())


def test_acceptor_restart_keeps_sockets_and_queued_connections(tmp_path: Path) -> None:
    """Killing the acceptor: open sockets are untouched, a connection made while
    it restarts waits in the backlog and succeeds."""
    with tree(tmp_path) as server:
        with connect(server) as ws:
            acceptor = next(p for p in status(server.port)["processes"] if p["role"] == "acceptor")
            os.kill(acceptor["pid"], signal.SIGKILL)
            with connect(server) as during:  # made while no acceptor runs
                assert ask(during, "queued") == "Echo: queued"
            assert ask(ws, "untouched") == "Echo: untouched"
        names = [p["name"] for p in status(server.port)["processes"]]
        assert "acceptor" in names


def test_status_lists_processes_and_totals(tmp_path: Path) -> None:
    """`axeom status` shows each process with role, pid, state, uptime, restarts, sockets."""
    with tree(tmp_path) as server:
        with connect(server) as a, connect(server) as b:
            ask(a, "x")
            ask(b, "y")
            wait_for(lambda: status(server.port)["totals"]["sockets"] == 2, 10, "socket counts")
            text = run_axeom("status", "--port", str(server.port)).stdout
        assert "acceptor" in text and "worker-1" in text and "worker-2" in text
        assert "rejected handshakes: 0" in text
        result = status(server.port)
        assert result["totals"]["handed_off"] >= 2
        roles = sorted(p["role"] for p in result["processes"])
        assert roles == ["acceptor", "worker", "worker"]
        assert all(p["state"] == "running" for p in result["processes"])


@pytest.mark.parametrize("workers", [1, 2])
def test_no_live_worker_answers_503(tmp_path: Path, workers: int) -> None:
    """With every worker gone for good, handshakes get 503 with Retry-After."""
    policy = FAST_POLICY + 'restart = "temporary"\n'
    with tree(tmp_path, workers=workers, policy=policy) as server:
        with ExitStack() as stack:
            by_pid = {ask(ws, "pid"): ws for ws in connect_many(stack, server, 2 * workers)}
            assert len(by_pid) == workers
            for ws in by_pid.values():
                ws.send("crash")
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=5)
        wait_for(lambda: not worker_pids(server), 10, "the workers to be gone")
        answers: list[bytes] = []

        def refused_with_503() -> bool:
            answers.append(answer_to_an_upgrade(server.port))
            return answers[-1].startswith(b"HTTP/1.1 503")

        # The acceptor learns of the worker's end from the supervisor: ask
        # until it answers 503, each answer read in full.
        wait_for(refused_with_503, 10, "a 503 answer")
        head, _, body = answers[-1].partition(b"\r\n\r\n")
        assert b"\r\nretry-after: 1\r\n" in head.lower() + b"\r\n"
        length = re.search(rb"(?im)^content-length: *(\d+)\r?$", head)
        assert length is not None and len(body) == int(length.group(1)) and b"retry" in body


def answer_to_an_upgrade(port: int) -> bytes:
    """Send an upgrade request and read the answer until the server closes the
    connection (every refusal closes it); a silent server fails the socket timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            (
                f"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
                f"\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_bad_config_names_file_and_key(tmp_path: Path) -> None:
    """A bad key in the config file is exit 2 with the file and the key, no traceback."""
    config = tmp_path / "bad.toml"
    config.write_text('[supervisor]\nmax_restarts = "five"\n')
    result = run_axeom("run", APP, "--workers", "2", "--config", str(config))
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "supervisor.max_restarts" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_a_server_is_a_clear_error() -> None:
    """`axeom status` for a port with no supervisor says so in one line."""
    result = run_axeom("status", "--port", "1")
    assert result.returncode == 1
    assert "no Axeom server on port 1" in result.stderr
