"""A synchronous test client, for test suites of plain functions (no async
plugin), in the habit of Starlette's ``TestClient.websocket_connect``:

    def test_chat():
        with SyncTestClient(app) as client:
            with client.websocket_connect("/chat/1", headers={"x-user": "ann"}) as ws:
                assert ws.receive_text() == "welcome"
                ws.send_text("hi")
                assert ws.receive_text() == "ann in 1: hi"

It drives ``axeom.testing.TestClient`` (the real engine and the real socket
actor over in-memory streams, no server) on a trio loop in a background
thread of its own; every call crosses to that thread and waits for the
answer, within ``timeout`` seconds, so a test that expects a message that
never comes fails instead of hanging. Handlers run on that trio loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import trio
import trio.testing
from websockets.frames import CloseCode

from ._app import Axeom
from ._messages import Response
from .testing import HandshakeRejected, TestClient, TestWebSocket, WebSocketClosed

__all__ = ["HandshakeRejected", "SyncTestClient", "SyncWebSocket", "WebSocketClosed"]

T = TypeVar("T")
Held = tuple[TestWebSocket, trio.Event, trio.Event]  # the socket, its release, its end

# How long one call (a receive, a handshake) may take before the test fails:
# long enough for a loaded machine, short enough that a missing message fails fast.
DEFAULT_TIMEOUT = 10.0
# How long the background loop gets to close its sockets when the client exits.
SHUTDOWN_TIMEOUT = 10.0


class SyncTestClient:
    """Runs ``app``'s test kit on a background trio loop; use it in ``with``."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: Axeom,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client: tuple[str, int] = ("testclient", 50000),
    ) -> None:
        self.app = app
        self.timeout = timeout
        self._client_address = client
        self._token: trio.lowlevel.TrioToken | None = None
        self._client: TestClient | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._held: set[trio.Event] = set()  # one release per open socket

    def __enter__(self) -> SyncTestClient:
        self._thread = threading.Thread(target=self._run, name="axeom-sync-testclient", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.timeout) or self._token is None:
            raise RuntimeError(f"the test client's loop did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(SHUTDOWN_TIMEOUT)
        failure, self._failure = self._failure, None
        if failure is not None and exc_info[1] is None:
            raise failure

    # -- the background loop ---------------------------------------------------

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by __exit__ (or __enter__)
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with TestClient(self.app, client=self._client_address) as client:
            async with trio.open_nursery() as nursery:
                self._client, self._nursery = client, nursery
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await self._stop.wait()
                for release in list(self._held):  # sockets the test left open: close them
                    release.set()
                nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_TIMEOUT

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on the client's loop, within ``timeout``."""
        if self._token is None:
            raise RuntimeError("use SyncTestClient in 'with SyncTestClient(app) as client:'")

        async def bounded() -> T:
            with trio.fail_after(self.timeout):
                return await fn(*args)

        try:
            return trio.from_thread.run(bounded, trio_token=self._token)
        except trio.TooSlowError:
            raise TimeoutError(f"no answer within {self.timeout} s") from None

    # -- what tests call -------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        *,
        body: bytes = b"",
    ) -> Response:
        """One HTTP request through the engine (see ``TestClient.request``)."""
        client = self._client
        assert client is not None, "use SyncTestClient in a with block"
        return self.call(lambda: client.request(method, target, headers, body=body))

    def get(self, target: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("GET", target, headers)

    @contextmanager
    def websocket_connect(
        self,
        target: str,
        headers: Mapping[str, str] | None = None,
        *,
        subprotocols: list[str] | None = None,
    ) -> Iterator[SyncWebSocket]:
        """Open a socket; raises ``HandshakeRejected`` if the app refuses it.
        Leaving the block closes it (1000) if it is still open."""
        nursery = self._nursery
        assert nursery is not None, "use SyncTestClient in a with block"
        ws, release, finished = self.call(
            lambda: nursery.start(self._hold, target, headers, subprotocols)
        )
        try:
            yield SyncWebSocket(self, ws)
        finally:
            self.call(self._release, release, finished)

    @staticmethod
    async def _release(release: trio.Event, finished: trio.Event) -> None:
        """Leave the socket's block and wait until it is closed (its ``close``
        handler has run by then, for the test's next assertion)."""
        release.set()
        await finished.wait()
        # The app's side of the socket ends in a task of its own: let it run
        # until everything waits, so its close handler is done.
        await trio.testing.wait_all_tasks_blocked()

    async def _hold(
        self,
        target: str,
        headers: Mapping[str, str] | None,
        subprotocols: list[str] | None,
        task_status: trio.TaskStatus[Held] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep one socket's context open (entered and left in one task, as trio
        wants) from the handshake until the test leaves its block."""
        assert self._client is not None
        release, finished = trio.Event(), trio.Event()
        self._held.add(release)
        try:
            async with self._client.websocket(target, headers, subprotocols=subprotocols) as ws:
                task_status.started((ws, release, finished))
                await release.wait()
        finally:
            self._held.discard(release)
            finished.set()


class SyncWebSocket:
    """The test's end of one socket, with blocking calls."""

    __test__ = False

    def __init__(self, client: SyncTestClient, ws: TestWebSocket) -> None:
        self._client = client
        self._ws = ws

    @property
    def subprotocol(self) -> str | None:
        return self._ws.subprotocol

    @property
    def response(self) -> Response:
        """The 101 the app answered (its headers, for assertions)."""
        return self._ws.response

    def send(self, data: str | bytes) -> None:
        self._client.call(self._ws.send, data)

    def send_text(self, data: str) -> None:
        self.send(data)

    def send_bytes(self, data: bytes) -> None:
        self.send(data)

    def send_json(self, value: Any) -> None:
        self.send(json.dumps(value))

    def receive(self) -> str | bytes:
        """The next message; ``WebSocketClosed`` once closed, ``TimeoutError``
        if none comes within the client's ``timeout``."""
        return self._client.call(self._ws.receive)

    def receive_text(self) -> str:
        message = self.receive()
        if not isinstance(message, str):
            raise TypeError(f"expected a text message, got binary {message!r}")
        return message

    def receive_bytes(self) -> bytes:
        message = self.receive()
        if not isinstance(message, bytes):
            raise TypeError(f"expected a binary message, got text {message!r}")
        return message

    def receive_json(self) -> Any:
        return json.loads(self.receive())

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake and wait for the app to end it."""
        self._client.call(self._ws.close, code, reason)

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code
