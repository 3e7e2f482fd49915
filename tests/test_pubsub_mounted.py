"""One pub/sub per server: a mounted sub-app publishes, sends and counts through it."""

from __future__ import annotations

import websockets.sync.client as ws_sync

from axeom import Axeom
from axeom.testing import TestClient
from axeom.ws import ws_plugin
from tests._processes import running_axeom
from tests.apps.mounted_app import app, rooms


async def test_mounted_app_publishes_to_the_servers_subscribers() -> None:
    """rooms.publish, rooms.send and rooms.subscriber_count see the parent's sockets."""
    async with TestClient(app) as client:
        async with client.websocket("/rooms/r") as a, client.websocket("/rooms/r") as b:
            assert await a.receive() == "ready"
            assert await b.receive() == "ready"
            await a.send("count")
            assert await a.receive() == "count 2"
            assert rooms.subscriber_count("r") == app.subscriber_count("r") == 2
            await a.send("hello")
            assert await b.receive() == "hello"
            assert await a.receive() == "hello"  # app.publish: every subscriber
            assert await a.receive() == "published 2"
            await b.send("id")
            b_id = (await b.receive()).removeprefix("id ")
            await a.send(f"to:{b_id}:direct")
            assert await b.receive() == "direct"


def test_mounting_twice_deep_shares_one_pubsub() -> None:
    """An app mounted in an app that is mounted later still shares the top one."""
    inner, middle, top = Axeom(), Axeom(), Axeom().use(ws_plugin())
    middle.use(inner)
    top.use(middle)
    assert inner.pubsub is middle.pubsub is top.pubsub


def test_mounted_app_publishes_with_workers_0() -> None:
    """The same through a real single-process server."""
    with running_axeom("tests/apps/mounted_app.py:app", "--port", "0", "--workers", "0") as server:
        url = f"{server.url}/rooms/lobby"
        with ws_sync.connect(url) as a, ws_sync.connect(url) as b:
            assert a.recv(timeout=5) == "ready"
            assert b.recv(timeout=5) == "ready"
            a.send("hi")
            assert b.recv(timeout=5) == "hi"
            assert a.recv(timeout=5) == "hi"
            assert a.recv(timeout=5) == "published 2"
