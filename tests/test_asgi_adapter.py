"""The ASGI adapter driven the way a server drives it (``await app(scope,
receive, send)``), for what a real server hides: exact send statuses under
backpressure, ``drain``, the close message, lifespan, denial messages and the
mount prefix. The servers themselves are in ``test_asgi_servers.py``."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from axeom import Axeom
from axeom.asgi._scope import split_root
from axeom.ws import SendStatus, ws_plugin

HEADERS = [
    (b"host", b"testserver"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
]


def ws_scope(path: str, *, denial: bool = True, root: str = "") -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": root + path,
        "raw_path": (root + path).encode(),
        "root_path": root,
        "query_string": b"",
        "headers": HEADERS,
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if denial else {},
    }


class FakeServer:
    """Runs one scope; what the app sends is recorded, and ``gate`` (when
    closed) holds every ``websocket.send`` like a peer that does not read."""

    def __init__(self, app: Axeom, scope: dict[str, Any]) -> None:
        self.app = app
        self.scope = scope
        self.to_app, self._from_test = trio.open_memory_channel[dict[str, Any]](100)
        self.sent: list[dict[str, Any]] = []
        self.gate: trio.Event | None = None
        self.done = trio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self._from_test.receive()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send" and self.gate is not None:
            await self.gate.wait()
        self.sent.append(message)

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        finally:
            self.done.set()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send" and "text" in m]

    async def wait_for(self, count: int) -> None:
        while len(self.texts()) < count:
            await trio.sleep(0.001)


async def accepted(nursery: trio.Nursery, app: Axeom, path: str) -> FakeServer:
    server = FakeServer(app, ws_scope(path))
    nursery.start_soon(server.run)
    await server.to_app.send({"type": "websocket.connect"})
    while not server.sent:
        await trio.sleep(0.001)
    assert server.sent[0]["type"] == "websocket.accept"
    return server


async def test_backpressure_statuses_and_drain() -> None:
    """Bytes handed to the server and not yet taken count against the limit:
    QUEUED, then BACKPRESSURE at the limit, then DROPPED; drain runs once
    everything is taken, and nothing queued is lost or reordered."""
    statuses: list[SendStatus] = []
    drains: list[int] = []
    app = Axeom().use(ws_plugin())

    def flood(ws: Any, msg: str) -> None:
        for index in range(6):
            statuses.append(ws.send(f"{index:029d}").status)  # 30 bytes each
        ws.send(f"buffered {ws.buffered_amount}")

    app.ws(
        "/f",
        message=flood,
        drain=lambda ws: drains.append(ws.buffered_amount),
        backpressure_limit=100,
    )
    async with trio.open_nursery() as nursery:
        server = await accepted(nursery, app, "/f")
        server.gate = trio.Event()
        await server.to_app.send({"type": "websocket.receive", "text": "go"})
        while len(statuses) < 6:
            await trio.sleep(0.001)
        assert (
            statuses
            == [SendStatus.QUEUED] * 3 + [SendStatus.BACKPRESSURE] + [SendStatus.DROPPED] * 2
        )
        server.gate.set()
        await server.wait_for(4)
        while not drains:
            await trio.sleep(0.001)
        assert server.texts() == [f"{index:029d}" for index in range(4)]
        assert drains == [0]
        nursery.cancel_scope.cancel()


async def test_awaited_sends_wait_instead_of_dropping() -> None:
    """A loop of ``await ws.send`` goes at the server's pace and never drops."""
    app = Axeom().use(ws_plugin())
    results: list[SendStatus] = []

    async def stream(ws: Any, msg: str) -> None:
        for index in range(20):
            results.append(await ws.send(f"{index:029d}"))

    app.ws("/s", message=stream, backpressure_limit=100)
    async with trio.open_nursery() as nursery:
        server = await accepted(nursery, app, "/s")
        server.gate = trio.Event()
        await server.to_app.send({"type": "websocket.receive", "text": "go"})
        await trio.sleep(0.05)
        assert len(results) < 20  # held while the server takes nothing
        server.gate.set()
        await server.wait_for(20)
        assert SendStatus.DROPPED not in results
        assert server.texts() == [f"{index:029d}" for index in range(20)]
        nursery.cancel_scope.cancel()


async def test_ws_close_sends_code_and_reason_and_close_runs_once() -> None:
    """``ws.close(4001, "bye")`` is a websocket.close with both; the close
    handler runs exactly once with them, and the app returns."""
    closes: list[tuple[int, str]] = []
    app = Axeom().use(ws_plugin())
    app.ws(
        "/c",
        message=lambda ws, msg: ws.close(4001, "bye"),
        close=lambda ws, code, reason: closes.append((code, reason)),
    )
    async with trio.open_nursery() as nursery:
        server = await accepted(nursery, app, "/c")
        await server.to_app.send({"type": "websocket.receive", "text": "x"})
        with trio.fail_after(5):
            await server.done.wait()
    assert server.sent[-1] == {"type": "websocket.close", "code": 4001, "reason": "bye"}
    assert closes == [(4001, "bye")]


async def test_peer_disconnect_runs_close_with_its_code() -> None:
    """The server's websocket.disconnect ends the socket: close(ws, 1001, "")."""
    closes: list[tuple[int, str]] = []
    app = Axeom().use(ws_plugin())
    app.ws("/d", message=lambda ws, m: None, close=lambda ws, c, r: closes.append((c, r)))
    async with trio.open_nursery() as nursery:
        server = await accepted(nursery, app, "/d")
        await server.to_app.send({"type": "websocket.disconnect", "code": 1001})
        with trio.fail_after(5):
            await server.done.wait()
    assert closes == [(1001, "")]


async def test_raising_handler_closes_1011() -> None:
    """A raising handler: error handler, then websocket.close 1011."""
    app = Axeom().use(ws_plugin())
    errors: list[str] = []

    def fail(ws: Any, msg: str) -> None:
        raise ValueError("expected by the test")

    app.ws("/e", message=fail, error=lambda ws, exc: errors.append(str(exc)))
    logging.getLogger("axeom.ws").disabled = True
    try:
        async with trio.open_nursery() as nursery:
            server = await accepted(nursery, app, "/e")
            await server.to_app.send({"type": "websocket.receive", "text": "x"})
            with trio.fail_after(5):
                await server.done.wait()
    finally:
        logging.getLogger("axeom.ws").disabled = False
    assert server.sent[-1]["code"] == 1011
    assert errors == ["expected by the test"]


@pytest.mark.parametrize("denial", [True, False])
async def test_denial(denial: bool) -> None:
    """A rejection is the engine's response through the denial extension, or
    a close before accept (the server then answers 403) without it."""
    app = Axeom().use(ws_plugin())
    app.ws("/only", message=lambda ws, m: None)
    server = FakeServer(app, ws_scope("/missing", denial=denial))
    await server.to_app.send({"type": "websocket.connect"})
    await server.run()
    if not denial:
        assert server.sent == [{"type": "websocket.close", "code": 1000}]
        return
    start, body = server.sent
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 404
    assert (b"connection", b"close") in start["headers"]
    assert body == {"type": "websocket.http.response.body", "body": b"no route for /missing\n"}


def test_mount_prefix_is_cut_before_routing() -> None:
    """root_path is cut from the path when the path carries it (the current
    spec), left alone when it does not (older servers), never mid-segment."""
    assert split_root({"root_path": "/rt", "path": "/rt/a", "raw_path": b"/rt/a"}) == ("/rt", "/a")
    assert split_root({"root_path": "/rt", "path": "/a"}) == ("/rt", "/a")
    assert split_root({"root_path": "/rt", "path": "/rtx/a"}) == ("/rt", "/rtx/a")
    assert split_root({"root_path": "", "path": "/a b", "query_string": b"x=1"}) == (
        "",
        "/a%20b?x=1",
    )


async def run_lifespan(app: Axeom) -> list[dict[str, Any]]:
    send_channel, receive_channel = trio.open_memory_channel[dict[str, Any]](10)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await send_channel.send({"type": "lifespan.startup"})
    await send_channel.send({"type": "lifespan.shutdown"})
    await app({"type": "lifespan"}, receive_channel.receive, send)
    return sent


async def test_lifespan_runs_on_start_and_on_stop() -> None:
    """lifespan.startup runs the app's on_start functions, shutdown its
    on_stop ones; without any the phases just complete; a failing on_start is
    reported as startup.failed with its error, not raised."""
    app = Axeom()
    assert await run_lifespan(app) == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    ran: list[str] = []

    @app.on_start
    async def startup() -> None:
        ran.append("start")

    @app.on_stop
    def shutdown() -> None:
        ran.append("stop")

    assert [m["type"] for m in await run_lifespan(app)] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert ran == ["start", "stop"]

    broken_app = Axeom()

    @broken_app.on_start
    async def broken() -> None:
        raise OSError("database down")

    logging.getLogger("axeom.asgi").disabled = True
    try:
        (failed,) = await run_lifespan(broken_app)
    finally:
        logging.getLogger("axeom.asgi").disabled = False
    assert failed["type"] == "lifespan.startup.failed"
    assert "OSError: database down" in failed["message"]


def app_with_slow_start(starts: list[int]) -> Axeom:
    """An app whose on_start yields before it decorates (a pool being opened)."""
    app = Axeom().use(ws_plugin())

    @app.on_start
    async def open_pool() -> None:
        await trio.sleep(0.05)
        starts.append(1)
        app.decorate(pool="the pool")

    app.ws("/pool", message=lambda ws, msg: ws.send(ws.pool))
    return app


async def test_no_lifespan_runs_on_start_once_at_the_first_connections(
    nursery: trio.Nursery,
) -> None:
    """A server (or parent app) that sends no lifespan startup: the first
    connections wait for one run of on_start, then see what it made."""
    starts: list[int] = []
    app = app_with_slow_start(starts)
    servers = [FakeServer(app, ws_scope("/pool")) for _ in range(2)]
    for server in servers:
        nursery.start_soon(server.run)
        await server.to_app.send({"type": "websocket.connect"})
    for server in servers:
        with trio.fail_after(5):
            while not server.sent:
                await trio.sleep(0.001)
        assert server.sent[0]["type"] == "websocket.accept"
        await server.to_app.send({"type": "websocket.receive", "text": "which"})
        with trio.fail_after(5):
            await server.wait_for(1)
        assert server.texts() == ["the pool"]
    assert starts == [1]


async def test_no_lifespan_and_a_failing_on_start_refuses_every_connection() -> None:
    """on_start that fails at the first connection: that one and the next are
    refused (the server sees the error), no handler runs without its pool."""
    app = Axeom().use(ws_plugin())

    @app.on_start
    def broken() -> None:
        raise OSError("database down")

    app.ws("/pool", message=lambda ws, msg: ws.send("unreachable"))
    for _ in range(2):
        server = FakeServer(app, ws_scope("/pool"))
        await server.to_app.send({"type": "websocket.connect"})
        with pytest.raises(Exception, match="on_start"):
            await server.run()
        assert server.sent == []


async def test_app_lifespan_is_a_parents_lifespan() -> None:
    """``FastAPI(lifespan=axeom_app.lifespan)``: on_start on entry, on_stop on
    exit, and then no late start at the first connection."""
    ran: list[str] = []
    app = Axeom().use(ws_plugin())
    app.on_start(lambda: ran.append("start"))
    app.on_stop(lambda: ran.append("stop"))
    async with app.lifespan(object()):
        assert ran == ["start"]
        assert app.started
    assert ran == ["start", "stop"]


async def test_http_body_is_read_and_limited() -> None:
    """A route reads the body; one over MAX_BODY_SIZE is answered 413."""
    from axeom.asgi import MAX_BODY_SIZE

    app = Axeom()
    app.route("POST", "/echo", lambda ctx: ctx.body)

    async def post(chunks: list[bytes]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        messages = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/echo", "headers": [], "root_path": ""}
        await app(scope, receive, send)
        return sent

    start, body = await post([b"ab", b"cd"])
    assert (start["status"], body["body"]) == (200, b"abcd")
    start, _ = await post([b"x" * MAX_BODY_SIZE, b"y"])
    assert start["status"] == 413
