"""Pub/sub and addressable sockets in one process, through the test kit."""

from __future__ import annotations

import pytest
import trio

from axeom import Axeom
from axeom.testing import TestClient
from axeom.ws import ws_plugin
from tests.apps.pubsub_app import make_app as make_pubsub_app


@pytest.fixture
def pubsub_app() -> Axeom:
    """A fresh pub/sub test app for each test: no subscription, socket or
    counter left over from another test."""
    return make_pubsub_app()


async def test_publish_reaches_other_subscribers_not_the_sender(pubsub_app: Axeom) -> None:
    """ws.publish delivers to every subscriber of the topic except the publisher."""
    async with TestClient(pubsub_app) as client:
        async with (
            client.websocket("/sub/room") as a,
            client.websocket("/sub/room") as b,
            client.websocket("/sub/other") as c,
        ):
            await a.send("pub:hello")
            assert await b.receive() == "hello"
            await c.send("pid")
            assert (await c.receive()).startswith("R:")  # c got nothing before its reply
            await a.send("pid")
            assert (await a.receive()).startswith("R:")  # nor did the publisher


async def test_publish_to_self_when_the_route_says_so(pubsub_app: Axeom) -> None:
    """publish_to_self=True delivers to the publishing socket too."""
    async with TestClient(pubsub_app) as client, client.websocket("/echo-self/t") as ws:
        await ws.send("pub:mine")
        assert await ws.receive() == "mine"


async def test_unsubscribe_and_close_stop_delivery(pubsub_app: Axeom) -> None:
    """After unsubscribe, or once closed, a socket gets nothing and is not counted."""
    async with TestClient(pubsub_app) as client:
        async with client.websocket("/sub/t") as a, client.websocket("/sub/t") as b:
            await b.send("count")
            assert await b.receive() == "R:2"
            await a.send("unsub")
            assert await a.receive() == "R:unsubscribed False"
            await b.send("count")
            assert await b.receive() == "R:1"
            await b.send("app-pub:x")
            assert await b.receive() == "x"
            await a.send("pid")
            assert (await a.receive()).startswith("R:")
        assert pubsub_app.subscriber_count("t") == 0
        assert pubsub_app.pubsub.statistics()["topics"] == 0


async def test_app_publish_and_send_from_outside_a_handler(pubsub_app: Axeom) -> None:
    """app.publish and app.send work from anywhere in the process."""
    async with TestClient(pubsub_app) as client:
        async with client.websocket("/sub/news") as ws:
            await ws.send("id")
            socket_id = (await ws.receive())[2:]
            assert pubsub_app.publish("news", {"headline": "hi"}) == 1
            assert await ws.receive() == '{"headline":"hi"}'
            assert pubsub_app.send(socket_id, b"direct")
            assert await ws.receive() == b"direct"
        assert not pubsub_app.send(socket_id, "gone")


async def test_subscriptions_api() -> None:
    """subscribe, is_subscribed, subscriptions and unsubscribe on the ws object."""
    seen: list[object] = []
    app = Axeom().use(ws_plugin())

    def on_open(ws):  # type: ignore[no-untyped-def]
        ws.subscribe("a")
        ws.subscribe("b")
        ws.subscribe("a")
        seen.append(ws.subscriptions)
        ws.unsubscribe("a")
        seen.append((ws.is_subscribed("a"), ws.is_subscribed("b"), ws.subscriptions))
        ws.send("ok")

    app.ws("/s", open=on_open)
    async with TestClient(app) as client, client.websocket("/s") as ws:
        assert await ws.receive() == "ok"
    assert seen == [frozenset({"a", "b"}), (False, True, frozenset({"b"}))]


async def test_publish_order_is_kept_per_publisher(pubsub_app: Axeom) -> None:
    """Messages from one publisher on one topic arrive in publish order."""
    async with TestClient(pubsub_app) as client:
        async with client.websocket("/sub/o") as pub, client.websocket("/sub/o") as sub:
            for i in range(200):
                await pub.send(f"pub:{i}")
            assert [await sub.receive() for _ in range(200)] == [str(i) for i in range(200)]


async def test_publish_with_bad_data_is_a_clear_error(pubsub_app: Axeom) -> None:
    """Publishing something that is not a message raises TypeError naming the type."""
    with pytest.raises(TypeError, match="not set"):
        pubsub_app.publish("t", {1, 2})  # type: ignore[arg-type]
    await trio.sleep(0)


def test_topics_and_ids_must_be_text(pubsub_app: Axeom) -> None:
    """A non-str topic or socket id fails in the caller, not later in the hub."""
    with pytest.raises(TypeError, match="topic must be a str"):
        pubsub_app.publish(123, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="socket id must be a str"):
        pubsub_app.send(42, "x")  # type: ignore[arg-type]


async def test_error_handler_may_wait_for_its_message_to_leave() -> None:
    """An `error` handler that sends and awaits ws.drained() does not hang."""
    app = Axeom().use(ws_plugin(ping_interval=None, idle_timeout=None))

    def on_message(ws, msg):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    async def on_error(ws, exc):  # type: ignore[no-untyped-def]
        ws.send("sorry")
        await ws.drained()

    app.ws("/e", message=on_message, error=on_error)
    async with TestClient(app) as client, client.websocket("/e") as ws:
        await ws.send("x")
        with trio.fail_after(3):
            assert await ws.receive() == "sorry"
            await ws.wait_closed()
        assert ws.close_code == 1011
