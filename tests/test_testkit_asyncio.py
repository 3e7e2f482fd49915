"""The test kit in an asyncio test: ``TestClient`` runs the app on the test's
own loop, so handlers, hooks and lifespan functions can await asyncio
libraries. These tests are marked ``anyio`` (anyio's pytest plugin) and run
on asyncio, and on uvloop, not on trio (see conftest)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio
import trio
import uvloop

from axeom import Axeom
from axeom._app import OnStartError
from axeom.testing import TestClient, WebSocketClosed, WrongTestLoop
from axeom.ws import ws_plugin
from tests._redis import RedisServer, running_redis

pytestmark = pytest.mark.anyio

INTERNAL_ERROR = 1011
# Every wait on the app: generous for a loaded machine, short for a hung one.
TIMEOUT = 10.0


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("uvloop", id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    if request.param == "uvloop":
        return ("asyncio", {"loop_factory": uvloop.new_event_loop})
    return ("asyncio", {})


@pytest.fixture
async def line_echo() -> AsyncIterator[int]:
    """An asyncio TCP server on loopback echoing each line; its port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def receive(ws: object) -> str | bytes:
    async with asyncio.timeout(TIMEOUT):
        return await ws.receive()  # type: ignore[attr-defined, no-any-return]


async def test_handler_awaits_an_asyncio_client(line_echo: int) -> None:
    """A handler round-trips through `asyncio.open_connection` to a server of
    the test's: it runs on the test's loop, in a task."""
    app = Axeom().use(ws_plugin())
    seen: list[tuple[asyncio.AbstractEventLoop, bool]] = []

    async def through_asyncio(ws, msg):
        seen.append((asyncio.get_running_loop(), asyncio.current_task() is not None))
        reader, writer = await asyncio.open_connection("127.0.0.1", line_echo)
        writer.write(msg.encode() + b"\n")
        ws.send("echoed " + (await reader.readline()).decode().strip())
        writer.close()
        await writer.wait_closed()

    app.ws("/aio", message=through_asyncio)
    async with TestClient(app) as client:
        async with client.websocket("/aio") as ws:
            await ws.send("hello")
            assert await receive(ws) == "echoed hello"
    assert seen == [(asyncio.get_running_loop(), True)]


async def test_redis_pool_opened_in_on_start(redis_server: RedisServer) -> None:
    """The README's pattern: a redis.asyncio pool opened in `on_start`,
    reached as `ws.redis` in a handler and `ctx.redis` in a hook, closed in
    `on_stop`; all on the test's loop."""
    app = Axeom().use(ws_plugin())
    pools: list[redis.asyncio.Redis] = []
    closed: list[bool] = []

    @app.on_start
    async def open_pool():
        pool = redis.asyncio.from_url(redis_server.url)
        await pool.delete("visits", "hits")
        pools.append(pool)
        app.decorate(redis=pool)

    @app.on_stop
    async def close_pool():
        await pools[0].aclose()
        closed.append(True)

    @app.derive
    async def visits(ctx):
        return {"visit": await ctx.redis.incr("visits")}

    async def count(ws, msg):
        ws.send(f"visit {ws.data['visit']}, {msg} {await ws.redis.incr(msg)}")

    app.ws("/count", message=count)
    async with TestClient(app) as client:
        for visit in (1, 2):
            async with client.websocket("/count") as ws:
                await ws.send("hits")
                assert await receive(ws) == f"visit {visit}, hits {visit}"
        assert not closed
    assert closed == [True]


async def test_lifespan_runs_on_the_test_loop() -> None:
    """`on_start` before the first socket, `on_stop` after the last, both on
    the test's loop; what `on_start` decorates reaches the handler."""
    app = Axeom().use(ws_plugin())
    events: list[str] = []
    loop = asyncio.get_running_loop()

    @app.on_start
    async def start():
        assert asyncio.get_running_loop() is loop
        await asyncio.sleep(0)
        events.append("start")
        app.decorate(greeting="hello from on_start")

    @app.on_stop
    async def stop():
        assert asyncio.get_running_loop() is loop
        await asyncio.sleep(0)
        events.append("stop")

    app.ws("/hi", message=lambda ws, msg: ws.send(ws.greeting))
    async with TestClient(app) as client:
        assert events == ["start"]
        async with client.websocket("/hi") as ws:
            await ws.send("?")
            assert await receive(ws) == "hello from on_start"
        assert events == ["start"]
    assert events == ["start", "stop"]


async def test_raising_handler_costs_its_socket_only() -> None:
    """1011 isolation: a handler that raises closes its socket with 1011;
    the neighbour goes on, and a coroutine handler too."""
    app = Axeom().use(ws_plugin())

    async def handler(ws, msg):
        if msg == "raise":
            raise RuntimeError("a handler bug")
        await asyncio.sleep(0.001)
        ws.send(msg)

    app.ws("/h", message=handler)
    async with TestClient(app) as client:
        async with client.websocket("/h") as neighbour, client.websocket("/h") as ws:
            await ws.send("raise")
            async with asyncio.timeout(TIMEOUT):
                await ws.wait_closed()
            assert ws.close_code == INTERNAL_ERROR
            with pytest.raises(WebSocketClosed):
                await ws.receive()
            await neighbour.send("still here")
            assert await receive(neighbour) == "still here"


async def test_awaited_sends_past_the_limit_all_arrive() -> None:
    """`await ws.send` far past the limit over the test kit's socket pair:
    the handler waits for the client, every chunk arrives in order."""
    app = Axeom().use(ws_plugin())
    count, size = 256, 8 * 1024

    async def flow(ws, msg):
        for i in range(count):
            await ws.send(i.to_bytes(4, "big") + bytes(size - 4))
        ws.send("done")

    app.ws("/flow", message=flow, backpressure_limit=16 * 1024)
    async with TestClient(app) as client:
        async with client.websocket("/flow") as ws:
            await ws.send("go")
            for i in range(count):
                chunk = await receive(ws)
                assert isinstance(chunk, bytes) and int.from_bytes(chunk[:4], "big") == i
            assert await receive(ws) == "done"


async def test_on_start_awaiting_trio_names_the_test_loop() -> None:
    """An app written for trio used from an asyncio test: one error that says
    the test runs on asyncio and what to do, not trio's bare one."""
    app = Axeom().use(ws_plugin())

    @app.on_start
    async def trio_only():
        await trio.sleep(0)

    with pytest.raises(OnStartError) as failed:
        async with TestClient(app):
            raise AssertionError("entered")
    message = str(failed.value)
    assert isinstance(failed.value.error, WrongTestLoop)
    assert "on_start function" in message and "trio_only" in message
    assert "this test runs on asyncio" in message and "pytest-trio" in message
    assert "\n" not in message


async def test_handler_awaiting_trio_closes_1011_and_names_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler awaiting a trio primitive: its socket closes with 1011 and
    the log says which loop it runs on."""
    app = Axeom().use(ws_plugin())

    async def trio_only(ws, msg):
        await trio.sleep(0)

    app.ws("/t", message=trio_only)
    with caplog.at_level(logging.ERROR, logger="axeom"):
        async with TestClient(app) as client:
            async with client.websocket("/t") as ws:
                await ws.send("x")
                async with asyncio.timeout(TIMEOUT):
                    await ws.wait_closed()
    assert ws.close_code == INTERNAL_ERROR
    loop = asyncio.get_running_loop()
    name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    assert f"it awaited a trio object, but this server runs on {name}" in caplog.text
