"""``--metrics-port``: the node's Prometheus metrics, scraped and parsed with
the library's own parser, against traffic the tests make themselves."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import websockets.sync.client as ws_sync
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from tests._processes import Server, run_axeom, running_axeom
from tests._redis import running_redis
from tests._wsraw import upgrade_request

APP = "tests/apps/metrics_app.py:app"
METRICS_LINE = re.compile(r"Axeom metrics on http://[\w.\[\]:]+:(\d+)/metrics")
# Generous: heartbeats every second, on a machine other tests load too.
SCRAPE_DEADLINE = 20.0
# Heartbeats (and the refresh of the figures) five times a second: traffic
# reaches a scrape sooner.
FAST_HEARTBEAT = "[workers]\nheartbeat_interval = 0.2\n"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server) -> Samples:
    """The node's metrics, parsed by prometheus_client's parser."""
    match = METRICS_LINE.search(server.text())
    assert match, server.text()
    url = f"http://127.0.0.1:{match.group(1)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def scrape_until(server: Server, done: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``done`` holds (the next heartbeats reported the traffic)."""
    deadline = time.monotonic() + SCRAPE_DEADLINE
    samples = scrape(server)
    while not done(samples):
        if time.monotonic() > deadline:
            shown = "\n".join(f"{n} {dict(ls)} {v}" for (n, ls), v in sorted(samples.items()))
            raise AssertionError(f"metrics never showed {what}:\n{shown}")
        time.sleep(0.1)
        samples = scrape(server)
    return samples


def rejected_handshake(port: int, path: str) -> bytes:
    """The status line a WebSocket upgrade to ``path`` gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(upgrade_request(path))
        return sock.recv(4096).split(b"\r\n", 1)[0]


def closed_by_server(url: str, message: str) -> int:
    """Send ``message``; the close code the server then closes with."""
    with ws_sync.connect(url, open_timeout=10) as ws:
        ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code


def drive_traffic(server: Server) -> dict[str, Any]:
    """Handshakes, messages, failures, closes and a publish, counted as made."""
    echo_sockets, messages, size = 4, 3, 10
    with ExitStack() as stack:
        for _ in range(echo_sockets):
            ws = stack.enter_context(ws_sync.connect(f"{server.url}/echo", open_timeout=10))
            for _ in range(messages):
                ws.send("x" * size)
                assert ws.recv(timeout=10) == "x" * size
        open_per_worker = scrape_until(
            server,
            lambda s: total(s, "axeom_open_sockets", route="/echo") == echo_sockets,
            "the open echo sockets",
        )
    for _ in range(2):
        assert rejected_handshake(server.port, "/nope") == b"HTTP/1.1 404 Not Found"
    assert closed_by_server(f"{server.url}/boom", "x") == 1011
    assert closed_by_server(f"{server.url}/close/4001", "x") == 4001
    return {
        "echo_sockets": echo_sockets,
        "echo_messages": echo_sockets * messages,
        "open_per_worker": open_per_worker,
    }


@pytest.fixture
def fast(tmp_path: Path) -> tuple[str, str]:
    """``--config`` with a short heartbeat interval."""
    path = tmp_path / "fast.toml"
    path.write_text(FAST_HEARTBEAT)
    return ("--config", str(path))


def test_a_two_worker_tree_counts_what_its_clients_did(fast: tuple[str, str]) -> None:
    """Handshakes by status, messages, closes by code, handler exceptions, the
    handler histogram, sockets per worker and route, pub/sub and an app's own
    counter (summed over both workers) equal what the test did."""
    args = ("--workers", "2", "--port", "0", "--metrics-port", "0", *fast)
    with running_axeom(APP, *args) as server:
        made = drive_traffic(server)
        workers = {
            dict(labels)["worker"]
            for (name, labels), v in made["open_per_worker"].items()
            if name == "axeom_open_sockets" and v
        }
        assert workers == {"worker-1", "worker-2"}  # both workers ran sockets
        with (
            ws_sync.connect(f"{server.url}/room/t", open_timeout=10) as a,
            ws_sync.connect(f"{server.url}/room/t", open_timeout=10) as b,
        ):
            scrape_until(
                server,
                lambda s: value(s, "axeom_pubsub_topic_subscribers", topic="t") == 2,
                "two subscribers of topic t",
            )
            a.send("hi")
            assert b.recv(timeout=10) == "hi"
        handled = made["echo_messages"] + 3  # boom, close, the publish
        samples = scrape_until(
            server,
            lambda s: (
                value(s, "axeom_closes_total", code="1000") == made["echo_sockets"] + 2
                and value(s, "axeom_pubsub_deliveries_total") == 1
            ),
            "every close and the delivery",
        )
        assert value(samples, "axeom_handshakes_total", status="101") == made["echo_sockets"] + 4
        assert value(samples, "axeom_handshakes_total", status="404") == 2
        assert value(samples, "axeom_messages_received_total") == handled
        assert value(samples, "axeom_messages_sent_total") == made["echo_messages"] + 1
        assert value(samples, "axeom_closes_total", code="1011") == 1
        assert value(samples, "axeom_closes_total", code="4001") == 1
        assert (
            value(samples, "axeom_handler_exceptions_total", route="/boom", handler="message") == 1
        )
        # Every handler call: the messages, and the two rooms' open handlers.
        assert value(samples, "axeom_handler_duration_seconds_count") == handled + 2
        assert value(samples, "axeom_handler_duration_seconds_bucket", le="+Inf") == handled + 2
        assert value(samples, "axeom_pubsub_published_total") == 1
        assert total(samples, "axeom_open_sockets") == 0
        for child in ("acceptor", "worker-1", "worker-2"):
            assert ("axeom_restarts_total", frozenset({("child", child)})) in samples
        assert value(samples, "app_messages_total") == handled


def test_bytes_are_counted_as_they_cross_the_socket(fast: tuple[str, str]) -> None:
    """Frame bytes in and out of a socket, headers included, to the byte."""
    args = ("--workers", "1", "--port", "0", "--metrics-port", "0", *fast)
    with (
        running_axeom(APP, *args) as server,
        ws_sync.connect(f"{server.url}/echo", open_timeout=10) as ws,
    ):
        ws.send("warm")
        assert ws.recv(timeout=10) == "warm"
        before = scrape_until(
            server, lambda s: value(s, "axeom_messages_sent_total") == 1, "the first echo"
        )
        count, size = 5, 300  # 300 bytes: a 2-byte extended length (RFC 6455 5.2)
        for _ in range(count):
            ws.send(b"y" * size)
            assert ws.recv(timeout=10) == b"y" * size
        after = scrape_until(
            server, lambda s: value(s, "axeom_messages_sent_total") == 1 + count, "the echoes"
        )

    def delta(name: str) -> float:
        return value(after, name) - value(before, name)

    assert delta("axeom_received_bytes_total") == count * (2 + 2 + 4 + size)  # masked
    assert delta("axeom_sent_bytes_total") == count * (2 + 2 + size)


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_a_single_process_serves_the_same_metrics(loop: str) -> None:
    """``--workers 0`` on trio and on asyncio: the same families, its own
    counts, and an app's own counter from the default registry."""
    args = ("--workers", "0", "--loop", loop, "--port", "0", "--metrics-port", "0")
    with running_axeom(APP, *args) as server:
        with ws_sync.connect(f"{server.url}/echo", open_timeout=10) as ws:
            for _ in range(3):
                ws.send("z")
                assert ws.recv(timeout=10) == "z"
            scrape_until(
                server,
                lambda s: value(s, "axeom_open_sockets", worker="server", route="/echo") == 1,
                "the open socket",
            )
        assert rejected_handshake(server.port, "/nope") == b"HTTP/1.1 404 Not Found"
        assert closed_by_server(f"{server.url}/boom", "x") == 1011
        samples = scrape_until(
            server,
            lambda s: (
                value(s, "axeom_handshakes_total", status="404") == 1
                and value(s, "axeom_closes_total", code="1011") == 1
            ),
            "the rejection and the failure",
        )
        assert value(samples, "axeom_handshakes_total", status="101") == 2
        assert value(samples, "axeom_messages_received_total") == 4
        assert value(samples, "axeom_messages_sent_total") == 3
        assert value(samples, "axeom_closes_total", code="1000") == 1
        assert (
            value(samples, "axeom_handler_exceptions_total", route="/boom", handler="message") == 1
        )
        assert value(samples, "axeom_handler_duration_seconds_count") == 4
        assert value(samples, "app_messages_total") == 4


def test_a_metrics_port_in_use_is_one_line() -> None:
    """A port that cannot be had ends ``axeom run`` with one clear line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("0", "1"):
            result = run_axeom(
                "run", APP, "--workers", workers, "--port", "0", "--metrics-port", str(port)
            )
            assert result.returncode != 0
            assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
            assert "Traceback" not in result.stderr + result.stdout


def test_a_metrics_port_equal_to_the_port_is_a_usage_error() -> None:
    """``--metrics-port`` the same as ``--port``: one line naming both, status 2,
    before anything binds (not a metrics server started and the listen failing)."""
    result = run_axeom("run", APP, "--port", "18431", "--metrics-port", "18431")
    assert result.returncode == 2, result.stderr
    assert (
        "Error: --metrics-port (or AXEOM_METRICS_PORT): must differ from port (18431), got 18431"
        in result.stderr
    )
    assert "Traceback" not in result.stderr and "Axeom metrics on" not in result.stdout


def wait_closed(sock: socket.socket) -> None:
    """Read until the server closed ``sock`` (a reset counts)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass


def test_held_connections_to_the_metrics_port_are_bounded_and_cut() -> None:
    """Connections that never finish their request (a slowloris on a metrics
    port served on a public ``--host``) get at most ``MAX_SCRAPES`` threads
    of the serving process (the supervisor), are cut after the scrape
    timeout, and scrapes work again once they are gone."""
    import threading

    from axeom.metrics import MAX_SCRAPES, MetricsServer, NodeCollector

    server = MetricsServer(NodeCollector(), scrape_timeout=0.5)
    port = server.start("127.0.0.1", 0)
    before = threading.active_count()
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_SCRAPES * 4):
            sock = socket.create_connection(("127.0.0.1", port), timeout=SCRAPE_DEADLINE)
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finished
            held.append(sock)
        assert threading.active_count() <= before + MAX_SCRAPES
        for sock in held:  # every one is closed by the server: refused, or timed out
            wait_closed(sock)
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_DEADLINE) as response:
            assert response.status == 200
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_the_redis_bridge_state_follows_redis(fast: tuple[str, str]) -> None:
    """``axeom_redis_bridge_up`` is 1 while the bridge is connected to Redis,
    0 once Redis is gone (the tree serves on)."""
    with running_redis() as redis_server:
        args = ("--workers", "1", "--port", "0", "--metrics-port", "0", *fast)
        with running_axeom(APP, *args, "--pubsub", redis_server.url) as server:
            scrape_until(
                server, lambda s: value(s, "axeom_redis_bridge_up") == 1, "the bridge connected"
            )
            redis_server.stop()
            scrape_until(
                server,
                lambda s: (
                    ("axeom_redis_bridge_up", frozenset()) in s
                    and value(s, "axeom_redis_bridge_up") == 0
                ),
                "the bridge disconnected",
            )


def test_an_exited_workers_live_gauges_leave_the_sum(fast: tuple[str, str]) -> None:
    """An app gauge in ``livesum`` mode counts live workers only: once a worker
    is killed, its value is gone from the sum (``mark_process_dead``), and
    its restart does not count twice; the app's counters keep what it counted."""
    args = ("--workers", "2", "--port", "0", "--metrics-port", "0", *fast)
    with running_axeom(APP, *args) as server, ExitStack() as stack:
        pids: set[int] = set()
        rooms = 0
        while len(pids) < 2:  # a socket on each worker
            assert rooms < 10, "placement never reached both workers"
            ws = stack.enter_context(ws_sync.connect(f"{server.url}/room/r", open_timeout=10))
            rooms += 1
            ws.send("pid")
            pids.add(int(ws.recv(timeout=10).split()[1]))
        before = scrape_until(
            server, lambda s: value(s, "app_room_sockets") == rooms, "every room socket"
        )
        os.kill(min(pids), signal.SIGKILL)
        after = scrape_until(
            server,
            lambda s: (
                0 < value(s, "app_room_sockets") < rooms
                and value(s, "axeom_restarts_total", child="worker-1")
                + value(s, "axeom_restarts_total", child="worker-2")
                == 1
            ),
            "the killed worker's sockets gone from the gauge, and its restart",
        )
        assert value(after, "app_messages_total") == value(before, "app_messages_total")
