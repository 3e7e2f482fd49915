"""Test an Axeom app in-process: the real engine and the real socket actor,
with no network and no processes.

    async with TestClient(app) as client:
        async with client.websocket("/chat?room=1", headers={"x-user": "ann"}) as ws:
            await ws.send("hi")
            assert await ws.receive() == "Echo: hi"

The handshake goes through ``app.handle`` exactly as on a server. The app
runs on the loop of the test that uses the client: in a trio test (pytest-trio)
on the trio runtime, over ``trio.testing.memory_stream_pair``; in an asyncio
test (anyio's or pytest-asyncio's plugin) on the asyncio runtime, over a
``socket.socketpair()`` handed to it as a worker hands it an accepted socket
(``AsyncioRuntime.start_socket``), so handlers, hooks and ``on_start`` can
await asyncio libraries. The client end (``TestWebSocket``) is the same code
on both; only its stream and a few primitives are the loop's (``_ClientLoop``).

Against a running server (``serve`` in a nursery, or ``axeom run`` in a
subprocess, process tree included), ``open_client`` is a real client over
TCP (trio-websocket) with the same calls and the same exceptions:

    async with open_client("ws://127.0.0.1:8000/chat") as ws:
        await ws.send("hi")
        assert await ws.receive() == "Echo: hi"
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, cast
from typing import Protocol as TypingProtocol

import sniffio
import trio
import trio.testing
import trio_websocket
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side

from ._app import Axeom, OnStartError
from ._headers import Headers
from ._loops import wrong_loop_hint
from ._messages import Request, Response
from .security import connection_limits
from .trio_runtime._runtime import SocketRuntime, open_socket_runtime
from .trio_runtime._transport import StreamTransport
from .ws._handshake import accept_key

if TYPE_CHECKING:
    from .asyncio_runtime import AsyncioRuntime

__all__ = [
    "ClientStream",
    "ClientWebSocket",
    "HandshakeRejected",
    "TestClient",
    "TestWebSocket",
    "WebSocketClosed",
    "WrongTestLoop",
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
# Messages a TestWebSocket holds unread before it stops reading (then the
# server's writes back up, as with a real client that stops reading).
INBOX_SIZE = 1000
# Longest wait for the server's half of a closing handshake when a test
# leaves ``client.websocket(...)`` or the ``TestClient`` with sockets open.
CLOSE_GRACE = 5.0
# Bytes the client end reads at a time.
READ_SIZE = 65536


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
    """Drives one app on the loop of the test that enters it: trio (the trio
    runtime) or asyncio, uvloop included (the asyncio runtime). Every socket
    opened through it shares one runtime."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: Axeom, *, client: tuple[str, int] = ("testclient", 50000)) -> None:
        self.app = app
        self.client = client
        self._server: _TrioServer | _AsyncioServer | None = None

    async def __aenter__(self) -> TestClient:
        loop = _test_loop()
        # The app's on_start functions first, as a server process runs them
        # (an OnStartError fails the test as itself); on_stop after the sockets.
        await _run_on_start(self.app, loop)
        server = _TrioServer(self.app) if loop == "trio" else _AsyncioServer(self.app)
        connection_limits(self.app)  # held here, as the one process of a server holds them
        await server.open()
        self._server = server
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        server, self._server = self._opened(), None
        try:
            return await server.close(exc_info)
        finally:
            await self.app.run_on_stop()

    def _opened(self) -> _TrioServer | _AsyncioServer:
        if self._server is None:
            raise RuntimeError("use TestClient in 'async with TestClient(app) as client:'")
        return self._server

    @property
    def runtime(self) -> SocketRuntime | AsyncioRuntime:
        """The runtime the sockets run in (trio's or asyncio's, as the test's loop)."""
        return self._opened().runtime

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
        request = Request("GET", target, hdrs, self.client)
        response = await self.app.handle(request)
        admission = request.admission  # the security plugin's connection limits
        if response.status != 101 or response.upgrade is None:
            if admission is not None:
                admission.release()
            raise HandshakeRejected(response)
        if response.header("sec-websocket-accept") != accept_key(key):
            raise AssertionError("server answered with a wrong Sec-WebSocket-Accept")
        if admission is not None:
            response.upgrade.on_end = admission.release  # counted open until it ends
        async with self._opened().connect(response) as ws:
            yield ws


def _test_loop() -> str:
    """ "trio" or "asyncio": the loop of the calling test (uvloop is asyncio)."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError(
            "TestClient runs in an async test: 'async with TestClient(app)'"
        ) from None
    if library not in ("trio", "asyncio"):
        raise RuntimeError(f"TestClient runs apps on trio or asyncio, not on {library}")
    return library


async def _run_on_start(app: Axeom, loop: str) -> None:
    """``app.run_on_start()``; when an ``on_start`` function awaited the
    other loop's primitive, the error says which loop the test runs on and
    what to change, instead of the server's advice (a ``--loop`` option)."""
    try:
        await app.run_on_start()
    except OnStartError as exc:
        if wrong_loop_hint(exc.error) is None:
            raise
        other = "asyncio" if loop == "trio" else "trio"
        raise OnStartError(exc.hook, WrongTestLoop(loop, other)) from exc.error


class WrongTestLoop(RuntimeError):
    """App code awaited a primitive of the loop the test does not run on."""

    def __init__(self, loop: str, other: str) -> None:
        plugin = "pytest-trio" if other == "trio" else "anyio's or pytest-asyncio's plugin"
        super().__init__(
            f"it awaited a {other} object, but this test runs on {loop} and TestClient "
            f"runs the app on the test's loop: run the test on {other} ({plugin})"
        )


class _TrioServer:
    """The app's sockets on the trio runtime, over in-memory streams."""

    def __init__(self, app: Axeom) -> None:
        self.app = app
        self._stack: Any = None
        self._runtime: SocketRuntime | None = None

    @property
    def runtime(self) -> SocketRuntime:
        assert self._runtime is not None
        return self._runtime

    async def open(self) -> None:
        self._stack = open_socket_runtime(self.app)
        self._runtime = await self._stack.__aenter__()

    async def close(self, exc_info: tuple[Any, ...]) -> bool:
        try:
            return bool(await self._stack.__aexit__(*exc_info))
        except BaseExceptionGroup as group:
            lone = _lone_exception(group)
            if lone is None:
                raise
            if lone is exc_info[1]:
                return False  # the test's own exception goes on as itself
            _reraise(lone)

    @asynccontextmanager
    async def connect(self, response: Response) -> AsyncIterator[TestWebSocket]:
        assert response.upgrade is not None
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


class _AsyncioServer:
    """The app's sockets on the asyncio runtime of the test's loop, each over
    a ``socket.socketpair()``: the server end goes to ``start_socket`` (what
    a worker does with a socket the acceptor handed it), so the test runs
    the code a server runs, TCP-like backpressure included, with no network."""

    def __init__(self, app: Axeom) -> None:
        self.app = app
        self._runtime: AsyncioRuntime | None = None

    @property
    def runtime(self) -> AsyncioRuntime:
        assert self._runtime is not None
        return self._runtime

    async def open(self) -> None:
        from .asyncio_runtime import AsyncioRuntime  # only asyncio tests need it

        loop = asyncio.get_running_loop()
        name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        self._runtime = AsyncioRuntime(self.app, loop_name=name)

    async def close(self, exc_info: tuple[Any, ...]) -> bool:
        """Close what is still open (1001) and wait for its close handlers."""
        try:
            await self.runtime.drain(CLOSE_GRACE)
        finally:
            self.runtime.close()
        return False

    @asynccontextmanager
    async def connect(self, response: Response) -> AsyncIterator[TestWebSocket]:
        assert response.upgrade is not None
        server_sock, client_sock = socket.socketpair()
        try:
            self.runtime.start_socket(server_sock, response.upgrade)
            reader, writer = await asyncio.open_connection(sock=client_sock, limit=READ_SIZE)
        except BaseException:
            server_sock.close()
            client_sock.close()
            raise
        ws = TestWebSocket(_AsyncioStream(reader, writer), response)
        # A task of its own, as the trio side's nursery task: the test may
        # enter and leave this block from different tasks.
        reading = asyncio.get_running_loop().create_task(ws._read_loop())
        try:
            yield ws
        finally:
            try:
                await ws._finish()
            finally:
                reading.cancel()
                await asyncio.wait([reading])
                writer.close()
        if not reading.cancelled() and reading.exception() is not None:
            raise cast(BaseException, reading.exception())


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


class ClientStream(TypingProtocol):
    """The byte stream under a ``TestWebSocket``: a ``trio.abc.Stream``, or
    ``_AsyncioStream`` in an asyncio test."""

    async def send_all(self, data: bytes) -> None: ...

    async def receive_some(self, max_bytes: int) -> bytes | bytearray: ...

    async def aclose(self) -> None: ...


class _Event(TypingProtocol):
    """What trio.Event and asyncio.Event both offer."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> Any: ...


@dataclass(frozen=True)
class _ClientLoop:
    """The little a ``TestWebSocket`` needs of the loop it runs on; the frame
    logic above it is one and the same for trio and asyncio."""

    event: Callable[[], _Event]
    lock: Callable[[], AbstractAsyncContextManager[Any]]
    # What the stream raises once the connection is gone (read as EOF).
    broken: tuple[type[BaseException], ...]
    move_on_after: Callable[[float], AbstractAsyncContextManager[None]]
    abort: Callable[[ClientStream], Awaitable[None]]

    @staticmethod
    def current() -> _ClientLoop:
        return _ASYNCIO if _test_loop() == "asyncio" else _TRIO


@asynccontextmanager
async def _trio_move_on_after(seconds: float) -> AsyncIterator[None]:
    with trio.move_on_after(seconds):
        yield


@asynccontextmanager
async def _asyncio_move_on_after(seconds: float) -> AsyncIterator[None]:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            yield


async def _trio_abort(stream: ClientStream) -> None:
    await trio.aclose_forcefully(cast(trio.abc.AsyncResource, stream))


async def _asyncio_abort(stream: ClientStream) -> None:
    cast(_AsyncioStream, stream).abort()


_TRIO = _ClientLoop(
    trio.Event,
    trio.Lock,
    (trio.BrokenResourceError, trio.ClosedResourceError),
    _trio_move_on_after,
    _trio_abort,
)
_ASYNCIO = _ClientLoop(
    asyncio.Event, asyncio.Lock, (OSError,), _asyncio_move_on_after, _asyncio_abort
)


class _AsyncioStream:
    """An asyncio (reader, writer) pair as a ``ClientStream``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send_all(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.writer.write(data)
        await self.writer.drain()

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self.reader.read(max_bytes)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    def abort(self) -> None:
        self.writer.transport.abort()


class _Inbox:
    """Messages received and not yet taken, at most ``size``: a test that
    stops reading makes the read loop wait, and the server's writes back up
    as with a real client. Only needs the loop's ``Event`` (one per change:
    every waiter wakes and looks again)."""

    def __init__(self, event: Callable[[], _Event], size: int) -> None:
        self._event = event
        self._changed = event()
        self._items: deque[str | bytes] = deque()
        self._size = size
        self.closed = False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = self._event()

    async def put(self, item: str | bytes) -> None:
        while len(self._items) >= self._size:
            await self._changed.wait()
        self._items.append(item)
        self._notify()

    async def get(self) -> str | bytes | None:
        """The next message; None once closed and empty."""
        while not self._items:
            if self.closed:
                return None
            await self._changed.wait()
        item = self._items.popleft()
        self._notify()
        return item

    def close(self) -> None:
        self.closed = True
        self._notify()


class TestWebSocket:
    """The client end of one test socket, on the test's loop (trio or asyncio)."""

    __test__ = False

    def __init__(self, stream: ClientStream | trio.abc.Stream, response: Response) -> None:
        self.response = response
        self.subprotocol = response.header("sec-websocket-protocol")
        self._loop = _ClientLoop.current()
        self._stream = cast(ClientStream, stream)
        self._protocol = Protocol(Side.CLIENT, state=OPEN, max_size=None)
        self._send_lock = self._loop.lock()
        self._inbox = _Inbox(self._loop.event, INBOX_SIZE)
        self._fragments: list[bytes] = []
        self._text = False
        self._closed = self._loop.event()
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
        message = await self._inbox.get()
        if message is None:
            raise WebSocketClosed(
                self.close_code or CloseCode.ABNORMAL_CLOSURE, self.close_reason or ""
            )
        return message

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake and wait for the server to end it."""
        if self._protocol.state is OPEN:
            self._protocol.send_close(code, reason)
            await self._write_pending()
        await self.wait_closed()

    async def abort(self) -> None:
        """Drop the connection without a closing handshake (the server sees 1006)."""
        await self._loop.abort(self._stream)

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
                    except self._loop.broken:
                        return

    async def _read_loop(self) -> None:
        protocol = self._protocol
        try:
            while True:
                try:
                    data = await self._stream.receive_some(READ_SIZE)
                except self._loop.broken:
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
            self._inbox.close()
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
                await self._inbox.put(message)

    async def _finish(self) -> None:
        async with self._loop.move_on_after(CLOSE_GRACE):
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
