"""The socket actor through the test kit: real engine, real task loop, no sockets."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from websockets.frames import Opcode

from axeom import Axeom, Unauthorized
from axeom.testing import HandshakeRejected, TestClient, WebSocketClosed
from axeom.ws import SendStatus, ws_plugin


def make_app(**defaults: object) -> Axeom:
    return Axeom().use(ws_plugin(**defaults))


async def test_text_is_str_and_binary_is_bytes() -> None:
    """Text frames reach `message` as str, binary frames as bytes."""
    seen: list[object] = []
    app = make_app()
    app.ws("/t", message=lambda ws, msg: (seen.append(msg), ws.send(msg)))
    async with TestClient(app) as client, client.websocket("/t") as ws:
        await ws.send("héllo")
        assert await ws.receive() == "héllo"
        await ws.send(b"\x00\xff")
        assert await ws.receive() == b"\x00\xff"
    assert seen == ["héllo", b"\x00\xff"]
    assert isinstance(seen[0], str) and isinstance(seen[1], bytes)


async def test_messages_handled_one_at_a_time_in_arrival_order() -> None:
    """A coroutine handler that awaits never overlaps with the next message."""
    running = 0
    overlaps = 0
    order: list[str] = []
    app = make_app()

    async def on_message(ws, msg):  # type: ignore[no-untyped-def]
        nonlocal running, overlaps
        running += 1
        overlaps += running > 1
        await trio.sleep(0.001 * (int(msg) % 3))
        order.append(msg)
        running -= 1
        ws.send(msg)

    app.ws("/o", message=on_message)
    async with TestClient(app) as client, client.websocket("/o") as ws:
        for i in range(50):
            await ws.send(str(i))
        echoed = [await ws.receive() for _ in range(50)]
    assert order == [str(i) for i in range(50)]
    assert echoed == order
    assert overlaps == 0


async def test_raising_socket_leaves_sibling_working(caplog: pytest.LogCaptureFixture) -> None:
    """A handler exception closes only its socket, with 1011 and no exception text."""
    errors: list[BaseException] = []
    app = make_app()

    def on_message(ws, msg):  # type: ignore[no-untyped-def]
        if msg == "boom":
            raise RuntimeError("secret database password")
        ws.send(msg)

    app.ws("/e", message=on_message, error=lambda ws, exc: errors.append(exc))
    async with TestClient(app) as client:
        async with client.websocket("/e") as bad, client.websocket("/e") as good:
            await good.send("before")
            assert await good.receive() == "before"
            await bad.send("boom")
            with pytest.raises(WebSocketClosed) as closed:
                await bad.receive()
            assert closed.value.code == 1011
            assert "secret" not in closed.value.reason
            await good.send("after")
            assert await good.receive() == "after"
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is errors[0]]
    assert len(logged) == 1, "the handler's exception is logged once, with its traceback"
    assert logged[0].levelno == logging.ERROR


async def test_error_in_open_closes_with_1011() -> None:
    """An exception in `open` is contained like any other handler's."""
    app = make_app()

    def on_open(ws):  # type: ignore[no-untyped-def]
        raise ValueError("nope")

    app.ws("/x", open=on_open)
    async with TestClient(app) as client, client.websocket("/x") as ws:
        await ws.wait_closed()
        assert ws.close_code == 1011


async def test_invalid_utf8_closes_1007() -> None:
    """A text frame that is not UTF-8 ends the socket with 1007."""
    app = make_app()
    app.ws("/u", message=lambda ws, msg: ws.send(msg))
    async with TestClient(app) as client, client.websocket("/u") as ws:
        await ws.send_frame(Opcode.TEXT, b"ok \xff\xfe")
        await ws.wait_closed()
        assert ws.close_code == 1007


async def test_invalid_utf8_across_fragments_closes_1007() -> None:
    """UTF-8 is checked on the reassembled message."""
    app = make_app()
    app.ws("/u", message=lambda ws, msg: ws.send(msg))
    async with TestClient(app) as client, client.websocket("/u") as ws:
        await ws.send_fragments([b"ab", b"\xc3"], text=True)
        await ws.wait_closed()
        assert ws.close_code == 1007


async def test_fragmented_messages_are_reassembled() -> None:
    """Continuation frames arrive as one message, text or binary."""
    app = make_app()
    app.ws("/f", message=lambda ws, msg: ws.send(msg))
    async with TestClient(app) as client, client.websocket("/f") as ws:
        await ws.send_fragments(["é".encode()[:1], "é".encode()[1:], b"!"], text=True)
        assert await ws.receive() == "é!"
        await ws.send_fragments([b"\x01", b"\x02"], text=False)
        assert await ws.receive() == b"\x01\x02"


async def test_message_too_big_closes_1009() -> None:
    """A message over max_message_size ends the socket with 1009, fragmented or not."""
    app = make_app(max_message_size=1000)
    app.ws("/b", message=lambda ws, msg: ws.send("ok"))
    async with TestClient(app) as client:
        async with client.websocket("/b") as ws:
            await ws.send(b"x" * 1000)
            assert await ws.receive() == "ok"
            await ws.send(b"x" * 1001)
            await ws.wait_closed()
            assert ws.close_code == 1009
        async with client.websocket("/b") as ws:
            await ws.send_fragments([b"x" * 600, b"x" * 600], text=False)
            await ws.wait_closed()
            assert ws.close_code == 1009


async def test_protocol_violation_closes_1002() -> None:
    """Reserved bits, unknown opcodes and unmasked frames end the socket with 1002."""
    app = make_app()
    app.ws("/p", message=lambda ws, msg: ws.send(msg))
    bad_frames = [
        bytes([0x81 | 0x40, 0x80, 0, 0, 0, 0]),  # RSV1 without an extension
        bytes([0x83, 0x80, 0, 0, 0, 0]),  # opcode 3 is reserved
        bytes([0x81, 0x02]) + b"hi",  # client frame without a mask
        bytes([0x80, 0x80, 0, 0, 0, 0]),  # continuation with nothing to continue
    ]
    async with TestClient(app) as client:
        for raw in bad_frames:
            async with client.websocket("/p") as ws:
                await ws.send_raw(raw)
                await ws.wait_closed()
                assert ws.close_code == 1002, raw


async def test_close_runs_exactly_once_whatever_ended_the_socket() -> None:
    """`close(ws, code, reason)` runs once for client close, server close, error and reset."""
    closes: list[tuple[str, int]] = []
    app = make_app()

    def on_message(ws, msg):  # type: ignore[no-untyped-def]
        if msg == "server-close":
            ws.close(4000, "bye")
            ws.close(4001, "twice")
        elif msg == "raise":
            raise RuntimeError("x")

    app.ws(
        "/c",
        message=on_message,
        close=lambda ws, code, reason: closes.append((ws.query["case"], code)),
    )
    async with TestClient(app) as client:
        async with client.websocket("/c?case=client") as ws:
            await ws.close(4100, "client")
        async with client.websocket("/c?case=server") as ws:
            await ws.send("server-close")
            await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (4000, "bye")
        async with client.websocket("/c?case=error") as ws:
            await ws.send("raise")
            await ws.wait_closed()
        async with client.websocket("/c?case=reset") as ws:
            await ws._stream.aclose()
            await ws.wait_closed()
        with trio.fail_after(2):
            while len(closes) < 4:
                await trio.sleep(0.01)
    # Leaving TestClient joined every socket's task: a second call of
    # ``close`` for any of them would be in ``closes`` by now.
    assert sorted(closes) == sorted(
        [("client", 4100), ("server", 4000), ("error", 1011), ("reset", 1006)]
    )


async def test_idle_timeout_closes_1001(autojump_clock: trio.testing.MockClock) -> None:
    """A socket that hears nothing for idle_timeout seconds is closed with 1001."""
    closes: list[int] = []
    app = make_app(idle_timeout=5, ping_interval=None)
    app.ws("/i", close=lambda ws, code, reason: closes.append(code))
    async with TestClient(app) as client, client.websocket("/i") as ws:
        await trio.sleep(3)
        await ws.send("still here")
        await trio.sleep(3)
        assert not ws.closed
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (1001, "idle timeout")
        assert trio.current_time() >= 8


async def test_keepalive_pings_keep_a_quiet_socket_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Pings go out every ping_interval and the pongs count as activity."""
    app = make_app(idle_timeout=3, ping_interval=1, ping_timeout=1)
    app.ws("/k", message=lambda ws, msg: ws.send(msg))
    async with TestClient(app) as client, client.websocket("/k") as ws:
        await trio.sleep(10)
        assert not ws.closed
        assert ws.pings_received >= 4
        await ws.send("alive")
        assert await ws.receive() == "alive"


async def test_sends_queued_in_one_handler_leave_in_one_write() -> None:
    """Everything queued while a handler runs goes out in a single write."""
    writes: list[bytes] = []
    app = make_app()

    def burst(ws, msg):  # type: ignore[no-untyped-def]
        for i in range(5):
            ws.send(f"{msg}-{i}")

    app.ws("/w", message=burst)
    async with TestClient(app) as client, client.websocket("/w") as ws:
        await trio.testing.wait_all_tasks_blocked()
        server_conn = next(iter(client.runtime.connections))
        transport = server_conn.transport
        stream = transport.stream

        class CountingStream:
            receive_some = stream.receive_some
            aclose = stream.aclose

            async def send_all(self, data: bytes) -> None:
                writes.append(bytes(data))
                await stream.send_all(data)

        transport.stream = CountingStream()
        await ws.send("m")
        assert [await ws.receive() for _ in range(5)] == [f"m-{i}" for i in range(5)]
    assert len(writes[0]) == 5 * (2 + 3)
    assert writes[0].count(b"m-") == 5


async def test_backpressure_drops_and_drain_runs_when_outbox_empties() -> None:
    """Over backpressure_limit, sends are dropped; `drain` runs once it is written."""
    statuses: list[SendStatus] = []
    drained = trio.Event()
    app = make_app(backpressure_limit=1000)

    def flood(ws, msg):  # type: ignore[no-untyped-def]
        for _ in range(5):
            statuses.append(ws.send(b"x" * 400))

    app.ws("/bp", message=flood, drain=lambda ws: drained.set())
    async with TestClient(app) as client, client.websocket("/bp") as ws:
        await ws.send("go")
        received = [await ws.receive() for _ in range(3)]
        with trio.fail_after(2):
            await drained.wait()
    assert statuses == [
        SendStatus.QUEUED,
        SendStatus.QUEUED,
        SendStatus.BACKPRESSURE,
        SendStatus.DROPPED,
        SendStatus.DROPPED,
    ]
    assert received == [b"x" * 400] * 3


async def test_drained_waits_for_the_outbox() -> None:
    """`await ws.drained()` returns once queued frames are written."""
    buffered_after: list[int] = []
    app = make_app()

    async def on_message(ws, msg):  # type: ignore[no-untyped-def]
        ws.send(msg * 1000)
        await ws.drained()
        buffered_after.append(ws.buffered_amount)
        ws.send("done")

    app.ws("/d", message=on_message)
    async with TestClient(app) as client, client.websocket("/d") as ws:
        await ws.send("a")
        assert await ws.receive() == "a" * 1000
        assert await ws.receive() == "done"
    assert buffered_after == [0]


async def test_send_before_await_leaves_before_handler_returns() -> None:
    """A coroutine handler's sends are flushed when it suspends, not held until it ends."""
    release = trio.Event()
    app = make_app()

    async def on_message(ws, msg):  # type: ignore[no-untyped-def]
        ws.send("first")
        await release.wait()
        ws.send("second")

    app.ws("/s", message=on_message)
    async with TestClient(app) as client, client.websocket("/s") as ws:
        await ws.send("go")
        assert await ws.receive() == "first"
        release.set()
        assert await ws.receive() == "second"


async def test_send_to_another_socket_from_a_handler() -> None:
    """ws.send on a socket other than the handler's own is delivered (flusher path)."""
    sockets: dict[str, object] = {}
    app = make_app()
    app.ws(
        "/r/:name",
        open=lambda ws: sockets.__setitem__(ws.params["name"], ws),
        message=lambda ws, msg: sockets["b"].send(f"from {ws.params['name']}: {msg}"),  # type: ignore[attr-defined]
    )
    async with TestClient(app) as client:
        async with client.websocket("/r/a") as a, client.websocket("/r/b") as b:
            await a.send("hi")
            assert await b.receive() == "from a: hi"


async def test_ws_attributes() -> None:
    """ws exposes id, data (from derive), params, query, headers, address, subprotocol."""
    seen: dict[str, object] = {}
    app = make_app()

    @app.derive
    def who(ctx):  # type: ignore[no-untyped-def]
        return {"user": ctx.headers.get("x-user")}

    def on_open(ws):  # type: ignore[no-untyped-def]
        seen.update(
            id=ws.id,
            data=ws.data,
            params=ws.params,
            query=ws.query,
            agent=ws.headers.get("x-user"),
            address=ws.remote_address,
            subprotocol=ws.subprotocol,
            route=ws.route,
        )

    app.ws("/chat/:room", open=on_open, subprotocols=["v2", "v1"])
    async with TestClient(app) as client:
        async with client.websocket(
            "/chat/lobby?x=1", headers={"x-user": "ann"}, subprotocols=["v1", "v2"]
        ) as ws:
            assert ws.subprotocol == "v2"
        first = dict(seen)
        async with client.websocket("/chat/other", headers={"x-user": "bob"}):
            pass
    assert first["data"] == {"user": "ann"}
    assert first["params"] == {"room": "lobby"}
    assert first["query"] == {"x": "1"}
    assert first["agent"] == "ann"
    assert first["address"] == ("testclient", 50000)
    assert first["subprotocol"] == "v2"
    assert first["route"] == "/chat/:room"
    assert seen["id"] != first["id"]


async def test_class_handlers_get_one_instance_per_socket() -> None:
    """A handler class keeps per-socket state on self."""
    app = make_app()

    @app.ws("/count")
    class Counter:
        def __init__(self) -> None:
            self.count = 0

        async def message(self, ws, msg):  # type: ignore[no-untyped-def]
            self.count += 1
            ws.send(str(self.count))

    async with TestClient(app) as client:
        async with client.websocket("/count") as a, client.websocket("/count") as b:
            for _ in range(3):
                await a.send("x")
                await a.receive()
            await b.send("x")
            assert await b.receive() == "1"
            await a.send("x")
            assert await a.receive() == "4"


async def test_rejected_handshake_raises_with_status_and_body() -> None:
    """The test kit raises HandshakeRejected carrying the status and reason."""
    app = make_app()

    @app.derive
    def auth(ctx):  # type: ignore[no-untyped-def]
        raise Unauthorized("bad token")

    app.ws("/a", message=lambda ws, msg: None)
    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as rejected:
            async with client.websocket("/a"):
                pass
        assert rejected.value.status == 401
        assert "bad token" in rejected.value.text
        assert type(rejected.value.body) is bytes  # the type of Response.body
        assert rejected.value.body == rejected.value.response.body
        with pytest.raises(HandshakeRejected) as missing:
            async with client.websocket("/nope"):
                pass
        assert missing.value.status == 404


async def test_receive_after_close_raises_with_code_and_reason() -> None:
    """After the server closes, receive() raises and close_code/close_reason are set."""
    app = make_app()
    app.ws("/bye", open=lambda ws: ws.close(4321, "see you"))
    async with TestClient(app) as client, client.websocket("/bye") as ws:
        with pytest.raises(WebSocketClosed) as closed:
            await ws.receive()
        assert (closed.value.code, closed.value.reason) == (4321, "see you")
        assert (ws.close_code, ws.close_reason) == (4321, "see you")


async def test_send_after_close_reports_closed() -> None:
    """ws.send on a closing socket returns CLOSED instead of raising."""
    statuses: list[SendStatus] = []
    app = make_app()

    def on_open(ws):  # type: ignore[no-untyped-def]
        ws.close()
        statuses.append(ws.send("late"))

    app.ws("/late", open=on_open)
    async with TestClient(app) as client, client.websocket("/late") as ws:
        await ws.wait_closed()
    assert statuses == [SendStatus.CLOSED]


async def test_invalid_close_code_from_handler_is_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ws.close with a code that may not be sent raises ValueError (contained: 1011)."""
    app = make_app()
    app.ws("/cc", open=lambda ws: ws.close(1005))
    with caplog.at_level(logging.ERROR):
        async with TestClient(app) as client, client.websocket("/cc") as ws:
            await ws.wait_closed()
            assert ws.close_code == 1011
    assert any(
        "close code 1005 cannot be sent" in str(r.exc_info[1]) for r in caplog.records if r.exc_info
    )


async def test_invalid_utf8_in_a_first_fragment_fails_at_once() -> None:
    """A fragmented text message is validated as it arrives: 1007 before it ends."""
    app = make_app()
    app.ws("/u", message=lambda ws, msg: ws.send(msg))
    async with TestClient(app) as client, client.websocket("/u") as ws:
        await ws.send_frame(Opcode.TEXT, b"ok \xff\xfe", fin=False)
        with trio.fail_after(2):
            await ws.wait_closed()
        assert ws.close_code == 1007
