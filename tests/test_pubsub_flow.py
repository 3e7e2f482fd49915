"""Flow control and drop counting of the pub/sub path, piece by piece."""

from __future__ import annotations

import functools
import logging
import tempfile

import pytest
import trio
import trio.testing

from axeom import Axeom, serve, wire
from axeom.pubsub import FLOW_LIMIT, MAX_OUTGOING, WORK_BUDGET, PubSub
from axeom.testing import TestClient, open_client
from axeom.ws import WebSocket, ws_plugin
from axeom_supervisor import _hub


class ManualLink:
    """A link that sends only when told to."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self.flowing = trio.Event()

    def wakeup(self) -> None:
        pass

    async def wait_flowing(self) -> None:
        while self.pubsub.congested:
            await self.flowing.wait()

    async def wait_subscribed(self) -> None:
        pass

    def drain(self) -> None:
        self.pubsub.take_outgoing(len(self.pubsub.outgoing))
        self.flowing.set()


async def test_awaited_publish_waits_while_the_link_is_congested() -> None:
    """Past FLOW_LIMIT waiting operations, `await publish` waits for the link."""
    pubsub = PubSub()
    link = ManualLink(pubsub)
    pubsub.link = link
    for _ in range(FLOW_LIMIT - 1):
        assert await pubsub.publish("t", "x") == 0  # not congested: at once
    result = pubsub.publish("t", "x")
    assert result == 0 and pubsub.congested
    done = trio.Event()

    async def waiter() -> None:
        await result
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        link.drain()
    assert done.is_set()


async def test_awaited_forms_return_the_plain_values_without_a_link() -> None:
    """Without a link (--workers 0, test kit), awaiting returns at once, same values."""
    pubsub = PubSub()
    assert await pubsub.publish("t", "x") == 0
    assert (await pubsub.send("nobody", "x")) is False
    assert repr(pubsub.send("nobody", "x")) == "False"


def test_link_queue_overflow_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Beyond MAX_OUTGOING, publishes are dropped, counted, logged once per episode."""
    pubsub = PubSub()
    pubsub.link = ManualLink(pubsub)
    with caplog.at_level(logging.WARNING, logger="axeom.pubsub"):
        for _ in range(MAX_OUTGOING + 500):
            pubsub.publish("t", "x")
        assert pubsub.dropped == 500
        assert pubsub.statistics()["dropped"] == 500
        pubsub.take_outgoing(MAX_OUTGOING)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "500 operations were dropped" in messages[1]


async def test_hub_drops_for_a_stuck_worker_are_counted() -> None:
    """A worker that takes nothing: the hub queues a bounded amount, counts the rest."""
    with tempfile.TemporaryDirectory() as run_dir:
        async with trio.open_nursery() as nursery:
            hub = _hub.Hub(nursery)
            hub.add_worker("w.1", f"ipc://{run_dir}/nobody.ipc", "p1")
            hub.handle("w.1", [(wire.SUB, "t", None)], {"t": 1000})
            for _ in range(_hub.QUEUE_WORK // 1000 // 100 + 10):
                hub.handle(None, [(wire.PUB, "t", "x")] * 100, {})
            stats = hub.statistics()
            assert stats["dropped_hub"] > 0
            assert stats["forwarded"] * 1000 <= _hub.QUEUE_WORK
            hub.drop_worker("w.1")
            assert hub.statistics()["dropped_hub"] == stats["dropped_hub"]
            nursery.cancel_scope.cancel()


class CountingSocket:
    """Stands for a subscriber: takes every message."""

    id = "counting"

    def send(self, data: object) -> bool:
        return True


async def test_awaited_publish_lets_the_rest_of_the_process_run() -> None:
    """A loop of `await publish` to many subscribers yields every WORK_BUDGET deliveries."""
    pubsub = PubSub()
    pubsub.checkpoint = trio.lowlevel.checkpoint
    for _ in range(1000):
        pubsub.subscribe(CountingSocket(), "t")  # type: ignore[arg-type]
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        before = turns
        for _ in range(100):  # 100,000 deliveries
            assert await pubsub.publish("t", "x") == 1000
        assert turns - before >= 100_000 // WORK_BUDGET - 1
        nursery.cancel_scope.cancel()


async def test_a_publishing_socket_is_not_read_while_the_link_is_congested() -> None:
    """Backpressure at the source: the publisher's messages wait in its stream
    until the link has room again; nothing is lost."""
    app = Axeom().use(ws_plugin())
    handled: list[str] = []

    def on_message(ws: WebSocket, msg: str) -> None:
        handled.append(msg)
        ws.publish("t", msg)

    app.ws("/pub", message=on_message)
    link = ManualLink(app.pubsub)
    app.pubsub.link = link
    total = FLOW_LIMIT + 2000
    async with TestClient(app) as client, client.websocket("/pub") as ws:
        for _ in range(total):
            await ws.send("m")
        await trio.testing.wait_all_tasks_blocked()
        assert FLOW_LIMIT <= len(handled) < total
        link.drain()
        await trio.testing.wait_all_tasks_blocked()
        assert len(handled) == total


class SilentLink(ManualLink):
    """A link whose hub never acknowledges a subscription."""

    async def wait_subscribed(self) -> None:
        await trio.sleep_forever()


async def test_a_plain_handler_returning_an_awaitable_result_does_not_wait() -> None:
    """`open=lambda ws: ws.subscribe(t)` is the fire-and-forget form: the actor
    must not await what the lambda returns (subscribe, publish, send, close)."""
    app = Axeom().use(ws_plugin())
    app.pubsub.link = SilentLink(app.pubsub)
    app.ws(
        "/s",
        open=lambda ws: ws.subscribe("t"),
        message=lambda ws, msg: ws.publish("t", msg) if msg == "pub" else ws.send("echo:" + msg),
    )
    with trio.fail_after(5):
        async with TestClient(app) as client, client.websocket("/s") as ws:
            await ws.send("pub")
            await ws.send("hi")
            assert await ws.receive() == "echo:hi"


async def test_awaited_unsubscribe_over_a_real_server(nursery: trio.Nursery) -> None:
    """`await ws.unsubscribe(t)`, the pair of `await ws.subscribe(t)`, is valid: it
    used to raise TypeError (None in an await) and close the socket with 1011."""
    app = Axeom().use(ws_plugin())

    async def message(ws: WebSocket, msg: object) -> None:
        await ws.subscribe("t")
        await ws.unsubscribe("t")
        await ws.unsubscribe("never-subscribed")
        app.publish("t", "must not arrive")
        ws.send(f"subscribed={ws.is_subscribed('t')}")

    app.ws("/u", message=message)
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0))

    async with open_client(f"ws://127.0.0.1:{port}/u") as client:
        await client.send("go")
        assert await client.receive() == "subscribed=False"
