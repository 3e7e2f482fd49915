"""Two `axeom run` nodes sharing a real redis-server: pub/sub across machines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import redis
import websockets.sync.client as ws_sync

from tests._processes import Server, running_axeom, status, wait_for
from tests._redis import RedisServer, running_redis

APP = "tests/apps/pubsub_app.py:app"

pytestmark = pytest.mark.timeout(120)


@contextmanager
def two_nodes(redis_server: RedisServer) -> Iterator[tuple[Server, Server]]:
    args = (APP, "--port", "0", "--workers", "1", "--pubsub", redis_server.url)
    with running_axeom(*args) as a, running_axeom(*args) as b:
        yield a, b


def join(stack: ExitStack, server: Server, topic: str) -> ws_sync.ClientConnection:
    return stack.enter_context(ws_sync.connect(f"{server.url}/sub/{topic}", open_timeout=10))


def reply(ws: ws_sync.ClientConnection, command: str) -> str:
    ws.send(command)
    answer = ws.recv(timeout=5)
    assert isinstance(answer, str) and answer.startswith("R:"), answer
    return answer[2:]


def channel_subscribers(redis_server: RedisServer, topic: str) -> int:
    with redis.Redis(port=redis_server.port) as client:
        return int(
            dict(client.pubsub_numsub(f"axeom:topic:{topic}"))[f"axeom:topic:{topic}".encode()]
        )


def test_publish_send_and_count_across_nodes() -> None:
    """A publish on node A reaches node B; app.send and subscriber_count span nodes."""
    with running_redis() as redis_server, two_nodes(redis_server) as (a, b), ExitStack() as stack:
        on_a, on_b, also_b = join(stack, a, "x"), join(stack, b, "x"), join(stack, b, "x")
        wait_for(lambda: channel_subscribers(redis_server, "x") == 2, 15, "both bridges")
        on_a.send("pub:across")
        assert on_b.recv(timeout=5) == "across"
        assert also_b.recv(timeout=5) == "across"
        target = reply(on_b, "id")
        on_a.send(f"send:{target}:just you")
        assert on_b.recv(timeout=5) == "just you"
        wait_for(lambda: reply(on_a, "count") == "3", 15, "a count of 3 from node A")
        with redis.Redis(port=redis_server.port) as client:  # a non-Python producer's view
            client.publish("axeom:topic:x", '{"text": "from redis-cli"}')
        for ws in (on_a, on_b, also_b):
            assert ws.recv(timeout=5) == "from redis-cli"


def test_redis_outage_keeps_nodes_running_and_delivery_resumes() -> None:
    """Redis down: local delivery goes on, one log line per outage; back up: remote resumes."""
    with running_redis() as redis_server, two_nodes(redis_server) as (a, b), ExitStack() as stack:
        sender, local_peer, remote = join(stack, a, "y"), join(stack, a, "y"), join(stack, b, "y")
        wait_for(lambda: channel_subscribers(redis_server, "y") == 2, 15, "both bridges")
        redis_server.stop()
        for i in range(5):
            sender.send(f"pub:down-{i}")
            assert local_peer.recv(timeout=5) == f"down-{i}"
        wait_for(lambda: "unreachable" in a.text() and "unreachable" in b.text(), 15, "the log")
        redis_server.start()
        wait_for(lambda: channel_subscribers(redis_server, "y") == 2, 30, "resubscribed bridges")
        sender.send("pub:back")
        assert local_peer.recv(timeout=5) == "back"
        assert remote.recv(timeout=5) == "back"
        assert a.proc.poll() is None and b.proc.poll() is None
        assert a.text().count("unreachable") == 1
        assert b.text().count("unreachable") == 1
        assert "is back" in a.text()
        roles = [p["role"] for p in status(a.port)["processes"]]
        assert "bridge" in roles


def test_chat_example_on_two_nodes() -> None:
    """examples/chat.py on two nodes sharing Redis: one room across machines."""
    with running_redis() as redis_server:
        args = (
            "examples/chat.py:app",
            "--port",
            "0",
            "--workers",
            "2",
            "--pubsub",
            redis_server.url,
        )
        with running_axeom(*args) as a, running_axeom(*args) as b:
            with ws_sync.connect(f"{a.url}/chat/lobby?user=ann") as ann:
                assert ann.recv(timeout=5) == "* ann joined lobby"
                wait_for(lambda: channel_subscribers(redis_server, "lobby") == 1, 15, "node A")
                with ws_sync.connect(f"{b.url}/chat/lobby?user=bob") as bob:
                    assert bob.recv(timeout=5) == "* bob joined lobby"
                    assert ann.recv(timeout=5) == "* bob joined lobby"
                    wait_for(lambda: channel_subscribers(redis_server, "lobby") == 2, 15, "B")
                    ann.send("hello from A")
                    assert bob.recv(timeout=5) == "ann: hello from A"
                    assert ann.recv(timeout=5) == "ann: hello from A"


def test_awaited_subscribe_is_in_effect_on_the_other_node() -> None:
    """`await ws.subscribe` on node A returns after Redis confirmed it: a publish
    from node B right after always reaches A."""
    with running_redis() as redis_server, two_nodes(redis_server) as (a, b):
        for i in range(5):
            topic = f"node-join-{i}"
            with ws_sync.connect(f"{a.url}/joins/{topic}?await=1", open_timeout=10) as joined:
                ready = joined.recv(timeout=10)
                assert isinstance(ready, str) and ready.startswith("ready ")
                with ws_sync.connect(f"{b.url}/announce/{topic}", open_timeout=10) as announcer:
                    assert str(announcer.recv(timeout=10)).startswith("announced ")
                    assert joined.recv(timeout=5) == "joined", f"lost in round {i}"
