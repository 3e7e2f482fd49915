"""The synchronous test client: plain test functions drive the real engine
and socket actor, with no server and no async plugin."""

from __future__ import annotations

import time

import pytest

from axeom import Axeom, Unauthorized
from axeom.sync_testing import HandshakeRejected, SyncTestClient, WebSocketClosed
from axeom.ws import ws_plugin


def chat_app(closed: list[tuple[int, str]] | None = None) -> Axeom:
    """The README quick start, with a close handler that records its calls."""
    app = Axeom().use(ws_plugin())
    record = closed if closed is not None else []

    @app.derive
    async def who(ctx):  # type: ignore[no-untyped-def]
        user = ctx.headers.get("x-user")
        if user is None:
            raise Unauthorized("send x-user")
        return {"user": user}

    def on_message(ws, msg):  # type: ignore[no-untyped-def]
        if msg == "boom":
            raise RuntimeError("expected by the test")
        ws.send(f"{ws.data['user']} in {ws.params['room']}: {msg}")

    app.ws(
        "/chat/:room",
        open=lambda ws: ws.send("welcome"),
        message=on_message,
        close=lambda ws, code, reason: record.append((code, reason)),
    )
    app.get("/health", lambda ctx: {"ok": True})
    return app


def test_quick_start_from_a_plain_function() -> None:
    """Open, receive, send, receive: the README quick start, synchronously."""
    with SyncTestClient(chat_app()) as client:
        with client.websocket_connect("/chat/1", headers={"x-user": "ann"}) as ws:
            assert ws.receive_text() == "welcome"
            ws.send_text("hi")
            assert ws.receive_text() == "ann in 1: hi"


def test_rejection_and_http_route() -> None:
    """A refused handshake raises HandshakeRejected with the engine's status;
    HTTP routes answer through the same client."""
    with SyncTestClient(chat_app()) as client:
        with pytest.raises(HandshakeRejected) as rejected:
            with client.websocket_connect("/chat/1"):
                pass
        assert rejected.value.status == 401
        response = client.get("/health", headers={"x-user": "ann"})
        assert (response.status, response.body) == (200, b'{"ok":true}')


def test_close_handler_has_run_when_the_block_ends() -> None:
    """Leaving the block closes the socket (1000) and waits for the close handler."""
    closed: list[tuple[int, str]] = []
    with SyncTestClient(chat_app(closed)) as client:
        with client.websocket_connect("/chat/1", headers={"x-user": "ann"}) as ws:
            ws.receive_text()
        assert closed == [(1000, "")]


def test_handler_error_is_1011_and_a_missing_message_times_out() -> None:
    """A raising handler closes its socket with 1011; waiting for a message
    that never comes fails within the timeout instead of hanging."""
    with SyncTestClient(chat_app(), timeout=0.5) as client:
        with client.websocket_connect("/chat/1", headers={"x-user": "ann"}) as ws:
            ws.receive_text()
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                ws.receive()
            assert time.monotonic() - started < 5
            ws.send_text("boom")
            with pytest.raises(WebSocketClosed) as closed:
                ws.receive()
            assert closed.value.code == 1011
