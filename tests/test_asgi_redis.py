"""Pub/sub across an ASGI server and a native node through one real Redis:
``uvicorn --workers 2`` (configured by ``AXEOM_PUBSUB``) and ``axeom run
--workers 2 --pubsub``; a publish from any process reaches the sockets of
every process, and ``app.send`` reaches a socket wherever it lives."""

from __future__ import annotations

from contextlib import AsyncExitStack

from axeom.pubsub import socket_prefix
from axeom.testing import ClientWebSocket, open_client
from tests._asgi_servers import running_asgi
from tests._processes import running_axeom
from tests._redis import running_redis

ANN = {"x-user": "ann"}
# Connections tried until both server processes hold at least one: the
# kernel decides which uvicorn worker accepts each one.
MAX_TRIES = 40


async def spread(stack: AsyncExitStack, url: str) -> list[tuple[str, ClientWebSocket]]:
    """Sockets on ``url`` until two processes hold some: (socket id, socket)."""
    sockets: list[tuple[str, ClientWebSocket]] = []
    for _ in range(MAX_TRIES):
        ws = await stack.enter_async_context(open_client(url, ANN))
        socket_id = await ws.receive()
        assert isinstance(socket_id, str)
        sockets.append((socket_id, ws))
        if len({socket_prefix(s) for s, _ in sockets}) == 2:
            return sockets
    raise AssertionError(f"{MAX_TRIES} connections to {url} all landed in one process")


async def all_receive(sockets: list[tuple[str, ClientWebSocket]], expected: str) -> None:
    for _, ws in sockets:
        assert await ws.receive() == expected


async def test_publish_and_send_reach_every_process_of_both_nodes() -> None:
    """uvicorn's two workers and a native node's two workers share topics and app.send."""
    with (
        running_redis() as redis,
        running_axeom(
            "tests/apps/asgi_app.py:app", "--port", "0", "--workers", "2", "--pubsub", redis.url
        ) as native,
        running_asgi(
            "uvicorn", "asgi_app:app", args=("--workers", "2"), env={"AXEOM_PUBSUB": redis.url}
        ) as asgi,
    ):
        async with AsyncExitStack() as stack:
            on_asgi = await spread(stack, f"ws://127.0.0.1:{asgi.port}/node")
            on_native = await spread(stack, f"{native.url}/node")
            everyone = on_asgi + on_native
            await on_asgi[0][1].send("pub:from uvicorn")
            await all_receive(everyone, "from uvicorn")
            await on_native[0][1].send("pub:from native")
            await all_receive(everyone, "from native")
            native_id, native_ws = on_native[-1]
            await on_asgi[-1][1].send(f"to:{native_id}:direct to native")
            assert await native_ws.receive() == "direct to native"
            asgi_id, asgi_ws = on_asgi[0]
            await native_ws.send(f"to:{asgi_id}:direct to uvicorn")
            assert await asgi_ws.receive() == "direct to uvicorn"
