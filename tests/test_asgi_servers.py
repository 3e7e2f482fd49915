"""The same app on real ASGI servers: uvicorn, hypercorn (asyncio and trio
workers), granian, daphne, and mounted under ``/rt`` in FastAPI and Starlette
(on uvicorn). One server per configuration for the module, real clients."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
import trio

from axeom.testing import WebSocketClosed, open_client
from tests._asgi_servers import ASGIServer, running_asgi
from tests._wsraw import RawClient, upgrade_request

# (server, app, mount prefix): every server on the app itself, and the two
# ways a framework mounts it, on the most used server.
CONFIGS = {
    "uvicorn": ("uvicorn", "asgi_app:app", ""),
    "hypercorn": ("hypercorn", "asgi_app:app", ""),
    "hypercorn-trio": ("hypercorn-trio", "asgi_app:app", ""),
    "granian": ("granian", "asgi_app:app", ""),
    "daphne": ("daphne", "asgi_app:app", ""),
    "fastapi-mount": ("uvicorn", "asgi_mounts:fastapi_app", "/rt"),
    "starlette-mount": ("uvicorn", "asgi_mounts:starlette_app", "/rt"),
}
# Servers without the WebSocket denial response extension: a refused
# handshake can only be a 403 with the server's own body.
NO_DENIAL_EXTENSION = {"daphne"}
# Servers that ignore ``headers`` in ``websocket.accept``: a hook's
# ``set_header`` does not reach the 101.
NO_ACCEPT_HEADERS = {"daphne", "granian"}
# Servers that send no close code but 1000 and 3000-4999 (autobahn's rule):
# Axeom's 1009 arrives as 1000 (its 1011 is sent by the server itself).
ONLY_1000_AND_PRIVATE_CODES = {"daphne"}
# Servers whose send() returns before the transport took the bytes: awaited
# sends are not held back by a client that does not read.
UNBOUNDED_SEND_BUFFER = {"daphne"}
ANN = {"x-user": "ann"}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def server(request: pytest.FixtureRequest) -> Iterator[ASGIServer]:
    name, target, prefix = CONFIGS[request.param]
    with running_asgi(name, target, prefix) as running:
        yield running


async def handshake(server: ASGIServer, path: str, extra: str = "") -> tuple[int, str, bytes]:
    """(status, head, body) of a raw upgrade request: the exact answer."""
    client = await RawClient.connect(server.port)
    try:
        await client.send(upgrade_request(server.prefix + path, extra=extra))
        status, head = await client.read_head()
        body = b"" if status == 101 else await client.read_body()
        return status, head, body
    finally:
        await client.stream.aclose()


async def firehose_sent(server: ASGIServer) -> int:
    return int(json.loads(await http_get(server, "/firehose/sent"))["count"])


async def test_quick_start(server: ASGIServer) -> None:
    """The README quick start works as written: welcome, then the room's echo."""
    async with open_client(server.url("/chat/1"), ANN) as ws:
        assert await ws.receive() == "welcome"
        await ws.send("hi")
        assert await ws.receive() == "ann in 1: hi"


async def test_rejection_has_the_engine_status(server: ASGIServer) -> None:
    """A refused handshake is the engine's status and body (403 where the server
    has no denial extension), never a 101."""
    status, _, body = await handshake(server, "/chat/1")
    if server.name in NO_DENIAL_EXTENSION:
        assert status == 403
    else:
        assert (status, body) == (401, b"send x-user\n")
    status, _, body = await handshake(server, "/chat/1?deny=1", "x-user: ann\r\n")
    assert status == 403
    if server.name not in NO_DENIAL_EXTENSION:
        assert body == b"denied by a hook\n"


async def test_derive_subprotocol_and_headers(server: ASGIServer) -> None:
    """derive reaches ws.data, ws.path carries the mount prefix, the route's
    preferred subprotocol is chosen and a hook's header is on the 101."""
    async with open_client(server.url("/whoami"), ANN, subprotocols=["v1", "v2"]) as ws:
        seen = json.loads(await ws.receive())
        assert ws.subprotocol == "v2"
    assert seen == {"data": {"user": "ann"}, "path": f"{server.prefix}/whoami", "subprotocol": "v2"}
    status, head, _ = await handshake(server, "/whoami", "x-user: ann\r\n")
    assert status == 101
    assert ("x-axeom: yes" in head.lower()) is (server.name not in NO_ACCEPT_HEADERS)


async def test_a_raising_handler_closes_only_its_socket(server: ASGIServer) -> None:
    """1011 for the socket whose handler raised; its neighbour goes on."""
    async with open_client(server.url("/boom"), ANN) as healthy:
        async with open_client(server.url("/boom"), ANN) as failing:
            await failing.send("boom")
            with pytest.raises(WebSocketClosed) as closed:
                await failing.receive()
            assert closed.value.code == 1011
        await healthy.send("still")
        assert await healthy.receive() == "ok still"


async def test_messages_are_handled_in_order(server: ASGIServer) -> None:
    """A coroutine handler that sometimes sleeps still answers in arrival order."""
    count = 60
    async with open_client(server.url("/ordered"), ANN) as ws:
        for number in range(count):
            await ws.send(str(number))
        got = [await ws.receive() for _ in range(count)]
    assert got == [str(number) for number in range(count)]


async def test_pubsub_between_sockets_and_from_http(server: ASGIServer) -> None:
    """A socket's publish reaches the other subscriber; an HTTP route's
    app.publish reaches both."""
    async with open_client(server.url("/room/r1"), ANN) as ann:
        async with open_client(server.url("/room/r1"), {"x-user": "bob"}) as bob:
            assert await ann.receive() == "joined"
            assert await bob.receive() == "joined"
            await ann.send("hello")
            assert await bob.receive() == "ann: hello"
            reply = await http_get(server, "/publish/r1")
            assert json.loads(reply) == {"delivered": 2}
            assert await ann.receive() == "from http"
            assert await bob.receive() == "from http"


async def test_http_route(server: ASGIServer) -> None:
    """app.get routes are served over ASGI, under the mount prefix too."""
    assert await http_get(server, "/health") == b"ok"


async def test_message_over_the_route_limit_closes_1009(server: ASGIServer) -> None:
    """max_message_size is Axeom's own: 1009 though the server allows more."""
    async with open_client(server.url("/big"), ANN) as ws:
        await ws.send("x" * 999)
        assert await ws.receive() == "got 999"
        await ws.send("x" * 1001)
        with pytest.raises(WebSocketClosed) as closed:
            await ws.receive()
        assert closed.value.code == (1000 if server.name in ONLY_1000_AND_PRIVATE_CODES else 1009)


async def http_get(server: ASGIServer, path: str) -> bytes:
    url = f"http://127.0.0.1:{server.port}{server.prefix}{path}"

    def get() -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bytes(response.read())

    return await trio.to_thread.run_sync(get)


async def test_awaited_sends_wait_for_a_client_that_does_not_read(server: ASGIServer) -> None:
    """await ws.send stalls while the client reads nothing (the server's send
    waits for its transport), and everything arrives once it reads; on a
    server that buffers without limit it runs to the end at once."""
    total, chunk = 400, 128 * 1024  # asgi_app.FIREHOSE_COUNT, FIREHOSE_CHUNK
    client = await RawClient.connect(server.port)
    try:
        await client.send(upgrade_request(server.prefix + "/firehose", extra="x-user: ann\r\n"))
        status, _ = await client.read_head()
        assert status == 101
        previous = -1
        while True:  # until the count stops moving (or reaches the end)
            await trio.sleep(0.3)
            count = await firehose_sent(server)
            if count in (previous, total):
                break
            previous = count
        if server.name in UNBOUNDED_SEND_BUFFER:
            assert count == total
        else:
            assert count < total
        for _ in range(total):
            opcode, payload = await client.read_frame()
            assert (opcode, len(payload)) == (2, chunk)
        assert await firehose_sent(server) == total
    finally:
        await client.stream.aclose()
