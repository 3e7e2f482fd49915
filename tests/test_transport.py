"""The production write path: ``SocketTransport`` under the socket runtime, over a
real TCP connection on 127.0.0.1 whose server end counts its write calls."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from axeom import Axeom, Headers, Request
from axeom.trio_runtime._runtime import SocketRuntime, open_socket_runtime
from axeom.trio_runtime._transport import SocketTransport
from axeom.ws import ws_plugin
from tests._wsraw import KEY, RawClient, client_frame

# Small kernel buffers on both ends, so that a few hundred KiB fill the
# connection and a write would block (Linux doubles these and has minimums).
SMALL_BUFFER = 16 * 1024
# Messages queued by one handler while the client reads nothing: far more
# than the connection can hold with SMALL_BUFFER at each end.
FLOOD_MESSAGES, FLOOD_SIZE = 64, 32 * 1024


class CountingSocket(socket.socket):
    """A real socket that records each write call: bytes written, or -1 when the
    kernel said it would block."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.family, sock.type, sock.proto, sock.detach())
        self.writes: list[int] = []

    def send(self, data: Any, flags: int = 0) -> int:
        return self._count(lambda: super(CountingSocket, self).send(data, flags))

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        return self._count(lambda: super(CountingSocket, self).sendmsg(buffers, *args))

    def _count(self, write: Any) -> int:
        try:
            written: int = write()
        except BlockingIOError:
            self.writes.append(-1)
            raise
        self.writes.append(written)
        return written


def tcp_pair(small_buffers: bool = False) -> tuple[CountingSocket, socket.socket]:
    """(server end, client end) of a TCP connection on 127.0.0.1."""
    with socket.socket() as listener:
        if small_buffers:  # inherited by the accepted socket
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        if small_buffers:  # before connecting: it sets the advertised window
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    return CountingSocket(server), client


def make_app(**handlers: Any) -> Axeom:
    app = Axeom().use(
        ws_plugin(ping_interval=None, idle_timeout=None, backpressure_limit=64 * 1024 * 1024)
    )
    app.ws("/w", **handlers)
    return app


@asynccontextmanager
async def running(
    app: Axeom, small_buffers: bool = False
) -> AsyncIterator[tuple[SocketRuntime, CountingSocket, RawClient]]:
    """One socket of ``app`` on a SocketTransport in a runtime, and a raw client."""
    server, client = tcp_pair(small_buffers)
    headers = Headers(
        [
            ("host", "127.0.0.1"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-version", "13"),
        ]
    )
    response = await app.handle(Request("GET", "/w", headers, ("127.0.0.1", 1)))
    assert response.status == 101 and response.upgrade is not None
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
    async with open_socket_runtime(app) as runtime, stream:
        runtime.nursery.start_soon(runtime.run_socket, SocketTransport(server), response.upgrade)
        yield runtime, server, RawClient(stream)


async def test_sends_of_one_handler_run_leave_in_one_write() -> None:
    """Five ws.send in one handler run are one write call on the socket, each run its own."""

    def burst(ws: Any, msg: str) -> None:
        for i in range(5):
            ws.send(f"{msg}-{i}")

    with trio.fail_after(10):
        async with running(make_app(message=burst)) as (_, server, client):
            for run in ("a", "b"):
                await client.send(client_frame(0x1, run.encode()))
                for i in range(5):
                    assert await client.read_frame() == (0x1, f"{run}-{i}".encode())
            assert server.writes == [5 * (2 + 3), 5 * (2 + 3)]
            await client.send(client_frame(0x8, b"\x03\xe8"))
            assert (await client.read_frame())[0] == 0x8


async def test_a_write_that_would_block_moves_to_a_writer_and_keeps_every_byte() -> None:
    """Sends from outside a handler go through the runtime's flusher; when the
    kernel takes only part, the rest moves to the socket's own writer task: the
    flusher still serves another socket meanwhile, and once the client reads,
    every byte arrives, in order."""

    async def echo(ws: Any, msg: str) -> None:
        await trio.sleep(0)  # suspended: the send below goes through the flusher
        ws.send(f"echo {msg}")

    app = make_app(message=echo)
    with trio.fail_after(20):
        async with running(app, small_buffers=True) as (runtime, server, slow):
            await trio.testing.wait_all_tasks_blocked()
            (conn,) = runtime.connections
            for i in range(FLOOD_MESSAGES):  # from no handler: the flusher writes them
                conn.ws.send(flood_message(i))
                if i % 8 == 7:
                    await trio.sleep(0)  # let the flusher run in the middle of the flood
            await trio.testing.wait_all_tasks_blocked()
            assert -1 in server.writes or len(server.writes) > 1  # the kernel took only part
            assert conn.writing  # the socket's own writer holds the rest
            # The flusher is free: another socket of this runtime is served.
            other_server, other_client = tcp_pair()
            other = RawClient(trio.SocketStream(trio.socket.from_stdlib_socket(other_client)))
            response = await app.handle(Request("GET", "/w", conn.ws.headers, ("127.0.0.1", 2)))
            assert response.upgrade is not None
            runtime.nursery.start_soon(
                runtime.run_socket, SocketTransport(other_server), response.upgrade
            )
            await other.send(client_frame(0x1, b"hi"))
            assert await other.read_frame() == (0x1, b"echo hi")
            await other.aclose()
            for i in range(FLOOD_MESSAGES):
                assert await slow.read_frame() == (0x2, flood_message(i))
            await slow.send(client_frame(0x8, b"\x03\xe8"))
            assert (await slow.read_frame())[0] == 0x8


def flood_message(i: int) -> bytes:
    """Message ``i`` of the flood: its number, then its own byte over and over."""
    return b"%06d" % i + bytes([i]) * FLOOD_SIZE


async def test_awaited_sends_of_one_handler_run_leave_in_one_write() -> None:
    """`await ws.send` under the backpressure limit is only a schedule point, not a
    wait: five of them in one handler run are still one write call."""

    async def burst(ws: Any, msg: str) -> None:
        for i in range(5):
            await ws.send(f"{msg}-{i}")

    with trio.fail_after(10):
        async with running(make_app(message=burst)) as (_, server, client):
            for run in ("a", "b"):
                await client.send(client_frame(0x1, run.encode()))
                for i in range(5):
                    assert await client.read_frame() == (0x1, f"{run}-{i}".encode())
            assert server.writes == [5 * (2 + 3), 5 * (2 + 3)]


async def test_what_a_handler_sent_leaves_while_it_waits() -> None:
    """After an awaited send, a handler that then waits for something has its
    messages written meanwhile, not held until it returns."""
    release = trio.Event()

    async def then_wait(ws: Any, msg: str) -> None:
        await ws.send("first")
        await release.wait()
        ws.send("second")

    with trio.fail_after(10):
        async with running(make_app(message=then_wait)) as (_, _server, client):
            await client.send(client_frame(0x1, b"go"))
            assert await client.read_frame() == (0x1, b"first")
            release.set()
            assert await client.read_frame() == (0x1, b"second")
