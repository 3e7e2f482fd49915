"""One client for every runtime: a test opens sockets and sends requests through
a ``Target`` and cannot tell which runtime answers, except by what it answers.

The frames are the test kit's own client (``TestWebSocket``: any bytes, exact
close codes) in both cases: over in-memory streams for the test kit, over TCP
after a handshake written by hand for a real server. So a difference between
two runtimes is the servers', never the clients'.

The test code is trio's. For the test kit on asyncio it runs as a guest of
the asyncio loop, and every call into the test kit goes through ``Run``
(``call_in_asyncio``): it runs in an asyncio task, as in an asyncio test.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Protocol, TypeVar

import trio

from axeom import Axeom, Response
from axeom.asyncio_runtime import call_in_asyncio
from axeom.testing import HandshakeRejected, TestClient, TestWebSocket
from tests.behaviour._runtimes import Runtime

T = TypeVar("T")
# How the test's trio code calls the test kit: directly, or in an asyncio task.
Run = Callable[..., Awaitable[Any]]

# Every wait of the suite on a server: long enough for a loaded 2-core machine,
# short enough that a hung server fails the test promptly.
TIMEOUT = 10.0
# The same waits in a test expected to fail on its row (a server's documented
# limitation): what would pass arrives far sooner, what fails never arrives.
EXPECTED_FAILURE_TIMEOUT = 2.0
HOST = "127.0.0.1"
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_HEAD_END = b"\r\n\r\n"
# Sockets opened per wanted one before giving up on spreading them over the
# processes (the acceptor picks the worker with the fewest: a few suffice).
SPREAD_TRIES = 4


async def direct(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``Run`` for a test kit on the test's own loop (trio)."""
    return await fn(*args)


class Peer:
    """The client end of one socket, on any runtime; every wait is bounded."""

    def __init__(self, ws: TestWebSocket, run: Run = direct, timeout: float = TIMEOUT) -> None:
        self.ws = ws
        self.run = run
        self.timeout = timeout  # the bound of every wait below

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    async def send(self, data: str | bytes) -> None:
        await self.run(self.ws.send, data)

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are: a broken frame, or several frames in one write."""
        await self.run(self.ws.send_raw, data)

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``WebSocketClosed`` once the server closed."""
        with trio.fail_after(timeout or self.timeout):
            message: str | bytes = await self.run(self.ws.receive)
            return message

    async def receive_many(self, count: int) -> list[str | bytes]:
        return [await self.receive() for _ in range(count)]

    async def ask(self, command: str) -> str:
        """Send a command and return the text answer."""
        await self.send(command)
        answer = await self.receive()
        assert isinstance(answer, str), answer
        return answer

    async def closed(self, timeout: float | None = None) -> tuple[int, str]:
        """Wait until the server closed; (code, reason) of its close frame."""
        with trio.fail_after(timeout or self.timeout):
            await self.run(self.ws.wait_closed)
        return self.ws.close_code or 0, self.ws.close_reason or ""

    async def close(self, code: int = 1000, reason: str = "") -> tuple[int, str]:
        with trio.fail_after(self.timeout):
            await self.run(self.ws.close, code, reason)
        return self.ws.close_code or 0, self.ws.close_reason or ""

    async def abort(self) -> None:
        """Drop the connection without a close frame (the server sees 1006)."""
        await self.run(self.ws.abort)


class Target(Protocol):
    """A running app, in memory or behind a port."""

    def connect(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        subprotocols: Sequence[str] | None = None,
        early: bytes = b"",
    ) -> AbstractAsyncContextManager[Peer]:
        """Open a socket; ``early``: raw bytes the client sends at once (over
        TCP in the same write as the upgrade request, before the 101)."""
        ...

    async def request(
        self, method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """One plain HTTP request (or a broken upgrade): (status, body)."""
        ...


@asynccontextmanager
async def entered(manager: AbstractAsyncContextManager[T], run: Run) -> AsyncIterator[T]:
    """``async with manager``, its entry and exit made through ``run``; the
    exit shielded, as the test kit's own clean-up is (it is bounded)."""
    if run is direct:  # on trio: as it is (its nurseries need their own nesting)
        async with manager as same:
            yield same
        return
    value: T = await run(manager.__aenter__)
    try:
        yield value
    except BaseException as exc:
        with trio.CancelScope(shield=True):
            if not await run(manager.__aexit__, type(exc), exc, exc.__traceback__):
                raise
    else:
        with trio.CancelScope(shield=True):
            await run(manager.__aexit__, None, None, None)


@asynccontextmanager
async def memory_target(app: Axeom, runtime: Runtime) -> AsyncIterator[MemoryTarget]:
    """The test kit serving ``app`` on the runtime's loop (see ``Run``)."""
    run: Run = call_in_asyncio if runtime.asyncio_test else direct
    async with entered(TestClient(app), run) as client:
        yield MemoryTarget(client, run)


class MemoryTarget:
    """The test kit: the engine and the socket actor, with no network."""

    def __init__(self, client: TestClient, run: Run = direct) -> None:
        self.client = client
        self.run = run

    @asynccontextmanager
    async def connect(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        subprotocols: Sequence[str] | None = None,
        early: bytes = b"",
    ) -> AsyncIterator[Peer]:
        offered = list(subprotocols) if subprotocols else None
        opening = self.client.websocket(path, headers, subprotocols=offered)
        async with entered(opening, self.run) as ws:
            if early:
                await self.run(ws.send_raw, early)
            yield Peer(ws, self.run)

    async def request(
        self, method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        response: Response = await self.run(self.client.request, method, target, headers)
        return response.status, response.body


class TcpTarget:
    """A real server on 127.0.0.1: each socket's reader runs in ``nursery``."""

    def __init__(self, port: int, nursery: trio.Nursery, timeout: float = TIMEOUT) -> None:
        self.port = port
        self.nursery = nursery
        self.timeout = timeout  # the bound of every wait on the server

    @asynccontextmanager
    async def connect(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        subprotocols: Sequence[str] | None = None,
        early: bytes = b"",
    ) -> AsyncIterator[Peer]:
        key = base64.b64encode(os.urandom(16)).decode()
        extra = dict(headers or {})
        if subprotocols:
            extra["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
        upgrade = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            **extra,
        }
        with trio.fail_after(self.timeout):
            stream = await trio.open_tcp_stream(HOST, self.port)
        try:
            with trio.fail_after(self.timeout):
                await stream.send_all(self._head("GET", path, upgrade) + early)
                status, response_headers, rest = await _read_head(stream)
                if status != 101:
                    body = await _read_body(stream, rest, response_headers)
                    raise HandshakeRejected(Response(status, response_headers, body))
            accept = dict(response_headers).get("sec-websocket-accept")
            assert accept == _accept(key), "wrong Sec-WebSocket-Accept"
            ws = TestWebSocket(Prefixed(stream, rest), Response(101, response_headers))
            reader = trio.CancelScope()
            self.nursery.start_soon(_run_in, reader, ws)
            try:
                yield Peer(ws, timeout=self.timeout)
            finally:
                with trio.CancelScope(shield=True):
                    await ws._finish()
                reader.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    async def request(
        self, method: str, target: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        with trio.fail_after(self.timeout):
            stream = await trio.open_tcp_stream(HOST, self.port)
            try:
                await stream.send_all(self._head(method, target, headers))
                status, response_headers, rest = await _read_head(stream)
                return status, await _read_body(stream, rest, response_headers)
            finally:
                await trio.aclose_forcefully(stream)

    def _head(self, method: str, target: str, headers: Mapping[str, str]) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _run_in(scope: trio.CancelScope, ws: TestWebSocket) -> None:
    with scope:
        await ws._read_loop()


class Prefixed(trio.abc.Stream):
    """A stream that first returns the bytes read past the response head."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self.stream = stream
        self.prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _read_head(stream: trio.SocketStream) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers with lower-case names, bytes past the head)."""
    buffer = b""
    while _HEAD_END not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(f"closed before the response head: {buffer!r}")
        buffer += data
    head, _, rest = buffer.partition(_HEAD_END)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return int(status_line.split(" ", 2)[1]), headers, rest


async def _read_body(
    stream: trio.SocketStream, rest: bytes, headers: list[tuple[str, str]]
) -> bytes:
    """The body of an answer: by Content-Length, else until the server closes."""
    length = dict(headers).get("content-length")
    body = rest
    while length is None or len(body) < int(length):
        data = await stream.receive_some(65536)
        if not data:
            break
        body += data
    return body if length is None else body[: int(length)]


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


async def pid_of(peer: Peer) -> str:
    """The process the socket runs in (the app answers "pid" on every route)."""
    answer = await peer.ask("pid")
    assert answer.startswith("pid "), answer
    return answer[4:]


async def one_process_each(
    stack: AsyncExitStack, target: Target, path: str, processes: int, per_process: int = 1
) -> list[list[Peer]]:
    """Open sockets to ``path`` until each of ``processes`` holds ``per_process``
    of them (where they land is the server's choice: ask each for its pid)."""
    groups: dict[str, list[Peer]] = {}
    for _ in range(SPREAD_TRIES * processes * per_process):
        peer = await stack.enter_async_context(target.connect(path))
        groups.setdefault(await pid_of(peer), []).append(peer)
        if len(groups) == processes and all(len(g) >= per_process for g in groups.values()):
            return list(groups.values())
    raise AssertionError(f"sockets did not spread over {processes} processes: {list(groups)}")
