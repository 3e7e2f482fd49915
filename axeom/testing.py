"""Test an Axeom app in-process: the real engine and the real socket actor,
over in-memory streams, with no sockets and no processes.

    async with TestClient(app) as client:
        async with client.websocket("/chat?room=1", headers={"x-user": "ann"}) as ws:
            await ws.send("hi")
            assert await ws.receive() == "Echo: hi"

The handshake goes through ``app.handle`` exactly as on a server; the
accepted socket runs in the same task loop the native runtime uses, fed by
``trio.testing.memory_stream_pair``.

Against a running server (``serve`` in a nursery, or ``axeom run`` in a
subprocess, process tree included), ``open_client`` is a real client over
TCP (trio-websocket) with the same calls and the same exceptions:

    async with open_client("ws://127.0.0.1:8000/chat") as ws:
        await ws.send("hi")
        assert await ws.receive() == "Echo: hi"
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn, cast

import trio
import trio.testing
import trio_websocket
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side

from ._app import Axeom
from ._headers import Headers
from ._messages import Request, Response
from .trio_runtime._runtime import SocketRuntime, open_socket_runtime
from .trio_runtime._transport import StreamTransport
from .ws._handshake import accept_key

__all__ = [
    "ClientWebSocket",
    "HandshakeRejected",
    "TestClient",
    "TestWebSocket",
    "WebSocketClosed",
    "open_client",
]

# A test waits this long for a real server's handshake or closing handshake
# before failing, rather than trio-websocket's minute: long enough for a
# loaded machine, short enough that a hung server fails the test promptly.
CLIENT_TIMEOUT = 10.0
# Largest message the real client accepts: trio-websocket's default (1 MiB)
# would refuse a larger message a server may well send (max_message_size only
# limits what the server receives), so well above what a test sends.
CLIENT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class HandshakeRejected(Exception):
    """The app answered the upgrade with something other than 101.

    ``body`` is the response body as ``bytes``, the same type as ``Response.body``;
    ``text`` is it decoded (UTF-8, undecodable bytes replaced) for assertions.
    """

    def __init__(self, response: Response) -> None:
        self.response = response
        self.status = response.status
        self.body: bytes = response.body
        self.headers = Headers(response.headers)
        super().__init__(f"handshake rejected: {self.status} {self.text.strip()}")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class WebSocketClosed(Exception):
    """The socket is closed; ``code`` and ``reason`` are the server's close frame."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"WebSocket closed: {code} {reason}".rstrip())


class TestClient:
    """Drives one app; every socket opened through it shares one runtime."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: Axeom, *, client: tuple[str, int] = ("testclient", 50000)) -> None:
        self.app = app
        self.client = client
        self._runtime: SocketRuntime | None = None
        self._stack: Any = None

    async def __aenter__(self) -> TestClient:
        # The app's on_start functions first, as a server process runs them
        # (an OnStartError fails the test as itself); on_stop after the sockets.
        await self.app.run_on_start()
        self._stack = open_socket_runtime(self.app)
        self._runtime = await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        try:
            return bool(await self._stack.__aexit__(*exc_info))
        except BaseExceptionGroup as group:
            lone = _lone_exception(group)
            if lone is None:
                raise
            if lone is exc_info[1]:
                return False  # the test's own exception goes on as itself
            _reraise(lone)
        finally:
            await self.app.run_on_stop()

    @property
    def runtime(self) -> SocketRuntime:
        if self._runtime is None:
            raise RuntimeError("use TestClient in 'async with TestClient(app) as client:'")
        return self._runtime

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        *,
        body: bytes = b"",
    ) -> Response:
        """Run one plain HTTP request through the engine (``body``: its body,
        with the ``Content-Length`` a client would send)."""
        hdrs = Headers({"host": "testserver", **(headers or {})})
        if body:
            hdrs.add("content-length", str(len(body)))
        return await self.app.handle(Request(method, target, hdrs, self.client, body=body))

    @asynccontextmanager
    async def websocket(
        self,
        target: str,
        headers: Mapping[str, str] | None = None,
        *,
        subprotocols: list[str] | None = None,
    ) -> AsyncIterator[TestWebSocket]:
        """Open a socket to ``target``; raises ``HandshakeRejected`` if refused."""
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = Headers(
            {
                "host": "testserver",
                "upgrade": "websocket",
                "connection": "Upgrade",
                "sec-websocket-key": key,
                "sec-websocket-version": "13",
            }
        )
        if subprotocols:
            hdrs.add("sec-websocket-protocol", ", ".join(subprotocols))
        for name, value in (headers or {}).items():
            hdrs.add(name, value)
        response = await self.app.handle(Request("GET", target, hdrs, self.client))
        if response.status != 101 or response.upgrade is None:
            raise HandshakeRejected(response)
        if response.header("sec-websocket-accept") != accept_key(key):
            raise AssertionError("server answered with a wrong Sec-WebSocket-Accept")
        server_stream, client_stream = trio.testing.memory_stream_pair()
        runtime = self.runtime
        runtime.nursery.start_soon(
            runtime.run_socket, StreamTransport(server_stream), response.upgrade
        )
        try:
            async with trio.open_nursery() as nursery:
                ws = TestWebSocket(client_stream, response)
                nursery.start_soon(ws._read_loop)
                try:
                    yield ws
                finally:
                    await ws._finish()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            lone = _lone_exception(group)
            if lone is None:
                raise
            _reraise(lone)


def _lone_exception(group: BaseExceptionGroup) -> BaseException | None:
    """The one exception inside ``group`` (through nested groups), or None if several.

    trio wraps whatever leaves a nursery in an ExceptionGroup; a failing ``assert``
    in a test must read as the AssertionError it is, not as two nested groups.
    """
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


def _reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc`` as it was: without the group it came in as its context."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context


class TestWebSocket:
    """The client end of one in-memory socket."""

    __test__ = False

    def __init__(self, stream: trio.abc.Stream, response: Response) -> None:
        self.response = response
        self.subprotocol = response.header("sec-websocket-protocol")
        self._stream = stream
        self._protocol = Protocol(Side.CLIENT, state=OPEN, max_size=None)
        self._send_lock = trio.Lock()
        self._inbox_send, self._inbox = trio.open_memory_channel[str | bytes](1000)
        self._fragments: list[bytes] = []
        self._text = False
        self._closed = trio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.pings_received = 0

    async def send(self, data: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""
        if isinstance(data, str):
            self._protocol.send_text(data.encode())
        else:
            self._protocol.send_binary(data)
        await self._write_pending()

    async def send_fragments(self, parts: list[bytes], *, text: bool) -> None:
        """Send one message as several frames (first, continuations, final)."""
        for index, part in enumerate(parts):
            fin = index == len(parts) - 1
            if index == 0:
                (self._protocol.send_text if text else self._protocol.send_binary)(part, fin=fin)
            else:
                self._protocol.send_continuation(part, fin=fin)
        await self._write_pending()

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (to test how the server treats broken frames)."""
        async with self._send_lock:
            await self._stream.send_all(data)

    async def send_frame(self, opcode: Opcode, payload: bytes, *, fin: bool = True) -> None:
        """Send a correctly masked frame with any opcode and payload."""
        raw = Frame(opcode, payload, fin).serialize(mask=True, extensions=[])
        await self.send_raw(raw)

    async def ping(self, payload: bytes = b"") -> None:
        self._protocol.send_ping(payload)
        await self._write_pending()

    async def receive(self) -> str | bytes:
        """The next message; raises ``WebSocketClosed`` once the socket is closed."""
        try:
            return await self._inbox.receive()
        except trio.EndOfChannel:
            raise WebSocketClosed(
                self.close_code or CloseCode.ABNORMAL_CLOSURE, self.close_reason or ""
            ) from None

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake and wait for the server to end it."""
        if self._protocol.state is OPEN:
            self._protocol.send_close(code, reason)
            await self._write_pending()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the server closed the connection."""
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def _write_pending(self) -> None:
        async with self._send_lock:
            for chunk in self._protocol.data_to_send():
                if chunk:
                    try:
                        await self._stream.send_all(chunk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return

    async def _read_loop(self) -> None:
        protocol = self._protocol
        try:
            while True:
                try:
                    data = await self._stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                for event in protocol.events_received():
                    await self._deliver(cast(Frame, event))
                await self._write_pending()
                if not data:
                    break
        finally:
            close = protocol.close_rcvd
            self.close_code = close.code if close is not None else CloseCode.ABNORMAL_CLOSURE
            self.close_reason = close.reason if close is not None else ""
            self._inbox_send.close()
            self._closed.set()

    async def _deliver(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            self.pings_received += 1
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._fragments.append(bytes(frame.data))
            if frame.opcode is not Opcode.CONT:
                self._text = frame.opcode is Opcode.TEXT
            if frame.fin:
                payload = b"".join(self._fragments)
                self._fragments = []
                message = payload.decode() if self._text else payload
                await self._inbox_send.send(message)

    async def _finish(self) -> None:
        with trio.move_on_after(5):
            if not self.closed:
                await self.close()


@asynccontextmanager
async def open_client(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    subprotocols: Sequence[str] | None = None,
    timeout: float = CLIENT_TIMEOUT,
    max_message_size: int = CLIENT_MAX_MESSAGE_SIZE,
) -> AsyncIterator[ClientWebSocket]:
    """Connect a real WebSocket client to ``url`` (``ws://host:port/path?query``).

    For tests against a running server or process tree; in-process,
    ``TestClient`` needs no socket. ``headers`` are sent with the upgrade
    request, ``subprotocols`` offered in that order. Raises
    ``HandshakeRejected`` if the server answers anything but 101, ``OSError``
    if it cannot be reached, ``trio.TooSlowError`` if it does not answer
    within ``timeout`` seconds. Leaving the block closes the socket with 1000
    if it is still open (waiting at most ``timeout`` for the server's close),
    and the TCP connection in every case.
    """
    host, port, resource = _split_ws_url(url)
    extra = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    ]
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(host, port)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(timeout):
                connection = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                    resource,
                    subprotocols=subprotocols,
                    extra_headers=extra,
                    max_message_size=max_message_size,
                )
            try:
                yield ClientWebSocket(connection)
            finally:
                with trio.move_on_after(timeout, shield=True):
                    await connection.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The connection's reader task runs in the nursery: what it raises (a
        # refused handshake) or what the test raised comes out as itself.
        lone = _lone_exception(group)
        if lone is None:
            raise
        if isinstance(lone, trio_websocket.ConnectionRejected):
            response = Response(lone.status_code, _decoded(lone.headers), lone.body or b"")
            raise HandshakeRejected(response) from None
        _reraise(lone)
    finally:
        # trio-websocket leaves the stream open when the handshake is refused.
        await trio.aclose_forcefully(stream)


def _split_ws_url(url: str) -> tuple[str, int, str]:
    """(host, port, path with query) of a ``ws://`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"open_client needs a ws://host:port/path URL, not {url!r}")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, resource


def _decoded(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


class ClientWebSocket:
    """The client end of a real socket: the calls of ``TestWebSocket``.

    ``connection`` is the trio-websocket connection under it, for anything
    else (``remote``, ``local``, a ``ping`` with a payload of one's own).
    """

    def __init__(self, connection: trio_websocket.WebSocketConnection) -> None:
        self.connection = connection

    @property
    def subprotocol(self) -> str | None:
        return self.connection.subprotocol

    async def send(self, data: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""
        try:
            await self.connection.send_message(data)
        except trio_websocket.ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    async def receive(self) -> str | bytes:
        """The next message; raises ``WebSocketClosed`` once the socket is closed."""
        try:
            return await self.connection.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong."""
        try:
            await self.connection.ping(payload)
        except trio_websocket.ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake and wait for the server to end it."""
        await self.connection.aclose(code, reason)

    @property
    def closed(self) -> bool:
        return self.connection.closed is not None

    @property
    def close_code(self) -> int | None:
        """The close code once closed (the server's, or the one this side sent)."""
        closed = self.connection.closed
        return None if closed is None else closed.code

    @property
    def close_reason(self) -> str | None:
        closed = self.connection.closed
        return None if closed is None else closed.reason or ""

    def _closed_error(self, exc: trio_websocket.ConnectionClosed) -> WebSocketClosed:
        reason = exc.reason
        if reason is None:
            return WebSocketClosed(CloseCode.ABNORMAL_CLOSURE, "")
        return WebSocketClosed(reason.code, reason.reason or "")
