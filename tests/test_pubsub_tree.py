"""Pub/sub across the workers of a real `axeom run --workers 2` tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import websockets.sync.client as ws_sync

from axeom import control
from tests._processes import Server, run_axeom, running_axeom, status, wait_for

APP = "tests/apps/pubsub_app.py:app"

pytestmark = pytest.mark.timeout(120)


@contextmanager
def tree(workers: int = 2) -> Iterator[Server]:
    with running_axeom(APP, "--port", "0", "--workers", str(workers)) as server:
        yield server


def join(
    stack: ExitStack, server: Server, topic: str, count: int
) -> list[ws_sync.ClientConnection]:
    return [
        stack.enter_context(ws_sync.connect(f"{server.url}/sub/{topic}", open_timeout=10))
        for _ in range(count)
    ]


def reply(ws: ws_sync.ClientConnection, command: str) -> str:
    ws.send(command)
    answer = ws.recv(timeout=5)
    assert isinstance(answer, str) and answer.startswith("R:"), answer
    return answer[2:]


def by_worker(sockets: list[ws_sync.ClientConnection]) -> dict[str, list[ws_sync.ClientConnection]]:
    groups: dict[str, list[ws_sync.ClientConnection]] = {}
    for ws in sockets:
        groups.setdefault(reply(ws, "pid"), []).append(ws)
    return groups


def test_publish_reaches_every_subscriber_on_both_workers_once_in_order() -> None:
    """50 sockets over 2 workers: each subscriber gets every message once, in order."""
    with tree() as server, ExitStack() as stack:
        sockets = join(stack, server, "room", 50)
        groups = by_worker(sockets)
        assert len(groups) == 2
        publisher, subscribers = sockets[0], sockets[1:]
        wait_for(lambda: status(server.port)["pubsub"]["topics"] == 1, 10, "the hub's table")
        messages = [f"m{i}" for i in range(100)]
        for message in messages:
            publisher.send(f"pub:{message}")
        for ws in subscribers:
            assert [ws.recv(timeout=5) for _ in messages] == messages
        for ws in sockets:  # nothing more: the next thing each gets is its reply
            assert reply(ws, "pid")


def test_unsubscribe_and_close_stop_delivery_across_workers() -> None:
    """Unsubscribed or closed sockets on the other worker get nothing more."""
    with tree() as server, ExitStack() as stack:
        sockets = join(stack, server, "news", 6)
        groups = list(by_worker(sockets).values())
        here, there = groups[0], groups[1]
        publisher = here[0]
        assert reply(there[0], "unsub") == "unsubscribed False"
        there[1].close()
        wait_for(lambda: reply(publisher, "count") == str(4), 10, "subscriber count of 4")
        publisher.send("pub:after")
        for ws in [*here[1:], *there[2:]]:
            assert ws.recv(timeout=5) == "after"
        assert reply(there[0], "pid")  # got nothing before its reply


def test_topic_table_is_empty_after_a_thousand_cycles() -> None:
    """1,000 connect-subscribe-close cycles leave the hub's topic table empty."""
    with tree() as server:
        for i in range(1000):
            with ws_sync.connect(f"{server.url}/sub/cycle-{i}", open_timeout=10) as ws:
                if i % 100 == 0:
                    assert reply(ws, "count") in ("0", "1")
        wait_for(lambda: status(server.port)["pubsub"]["topics"] == 0, 15, "an empty table")
        wait_for(lambda: status(server.port)["totals"]["handed_off"] >= 1000, 10, "1000 hand-offs")


def test_app_send_reaches_a_socket_on_the_other_worker() -> None:
    """app.send(socket_id) delivers to the socket wherever it lives."""
    with tree() as server, ExitStack() as stack:
        groups = list(by_worker(join(stack, server, "direct", 4)).values())
        sender, target = groups[0][0], groups[1][0]
        target_id = reply(target, "id")
        sender.send(f"send:{target_id}:for your eyes only")
        assert target.recv(timeout=5) == "for your eyes only"


def test_axeom_publish_from_the_command_line_and_python() -> None:
    """`axeom publish` and axeom.control.publish reach subscribers on every worker."""
    with tree() as server, ExitStack() as stack:
        sockets = join(stack, server, "alerts", 6)
        assert len(by_worker(sockets)) == 2
        wait_for(lambda: status(server.port)["pubsub"]["topics"] == 1, 10, "the hub's table")
        result = run_axeom("publish", "alerts", "from the shell", "--port", str(server.port))
        assert result.returncode == 0, result.stderr
        assert "2 worker(s)" in result.stdout
        for ws in sockets:
            assert ws.recv(timeout=5) == "from the shell"
        assert control.publish("alerts", b"\x00bin", port=server.port) == 2
        for ws in sockets:
            assert ws.recv(timeout=5) == b"\x00bin"


def test_subscriber_count_spans_workers() -> None:
    """app.subscriber_count counts the subscribers of every worker (eventually)."""
    with tree() as server, ExitStack() as stack:
        sockets = join(stack, server, "counted", 10)
        assert len(by_worker(sockets)) == 2
        wait_for(lambda: all(reply(ws, "count") == "10" for ws in sockets[:2]), 10, "10")


def test_axeom_publish_without_a_server_is_a_clear_error() -> None:
    """Publishing to a port with no supervisor is one line, exit 1."""
    result = run_axeom("publish", "t", "m", "--port", "1")
    assert result.returncode == 1
    assert "no Axeom server on port 1" in result.stderr


def test_chat_example_across_four_workers() -> None:
    """examples/chat.py with --workers 4: two users on different workers share a room."""
    with running_axeom("examples/chat.py:app", "--port", "0", "--workers", "4") as server:
        url = f"{server.url}/chat/lobby"
        with ws_sync.connect(url, additional_headers={"x-user": "ann"}) as ann:
            assert ann.recv(timeout=5) == "* ann joined lobby"
            with ws_sync.connect(url, additional_headers={"x-user": "bob"}) as bob:
                assert bob.recv(timeout=5) == "* bob joined lobby"
                assert ann.recv(timeout=5) == "* bob joined lobby"
                wait_for(
                    lambda: (
                        sorted(
                            p["sockets"] for p in status(server.port)["processes"] if "sockets" in p
                        )
                        == [0, 0, 1, 1]
                    ),
                    10,
                    "the two sockets on two different workers",
                )
                ann.send("hello")
                assert ann.recv(timeout=5) == "ann: hello"
                assert bob.recv(timeout=5) == "ann: hello"
                bob.send("hi ann")
                assert ann.recv(timeout=5) == "bob: hi ann"
            assert ann.recv(timeout=5) == "* bob left"


def test_awaited_subscribe_is_in_effect_on_every_worker() -> None:
    """`await ws.subscribe` in A's open: B's publish from the other worker right
    after always reaches A (20 times over)."""
    awaited = 1
    crossed = 0
    with tree() as server:
        for i in range(20):
            url = f"{server.url}/joins/join-{i}?await={awaited}"
            with ws_sync.connect(url, open_timeout=10) as a:
                ready = a.recv(timeout=10)
                assert isinstance(ready, str) and ready.startswith("ready ")
                with ws_sync.connect(f"{server.url}/announce/join-{i}", open_timeout=10) as b:
                    announced = b.recv(timeout=10)
                    assert isinstance(announced, str)
                    crossed += announced.split()[1] != ready.split()[1]
                    assert a.recv(timeout=5) == "joined", f"lost in round {i}"
    assert crossed >= 10  # most rounds really crossed workers
