"""The in-process server on 127.0.0.1 with real clients (the test kit's, websockets',
raw sockets)."""

from __future__ import annotations

import functools

import pytest
import trio
import websockets.sync.client as ws_sync
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from axeom import Axeom, serve
from axeom.testing import HandshakeRejected, WebSocketClosed, open_client
from axeom.trio_runtime import HandshakeLimits
from axeom.ws import ws_plugin
from tests._wsraw import Deflater, RawClient, client_frame, close_code, upgrade_request


def echo_app(**defaults: object) -> Axeom:
    app = Axeom().use(ws_plugin(**defaults))
    app.ws("/chat", message=lambda ws, msg: ws.send(f"Echo: {msg}"))
    app.ws("/raw", message=lambda ws, msg: ws.send(msg))
    return app


async def start(nursery: trio.Nursery, app: Axeom, **kwargs: object) -> int:
    host_port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0, **kwargs))
    return host_port[1]


async def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    return await trio.to_thread.run_sync(fn, *args)


def websockets_echo(port: int, messages: list[str | bytes], **kwargs: object) -> list[object]:
    with ws_sync.connect(f"ws://127.0.0.1:{port}/chat", open_timeout=5, **kwargs) as client:
        replies = []
        for message in messages:
            client.send(message)
            replies.append(client.recv(timeout=5))
        return replies


async def test_websockets_client_gets_echo(nursery: trio.Nursery) -> None:
    """A websockets client sending `hi` to /chat gets `Echo: hi`."""
    port = await start(nursery, echo_app())
    replies = await in_thread(websockets_echo, port, ["hi", "there"])
    assert replies == ["Echo: hi", "Echo: there"]


async def test_many_concurrent_clients(nursery: trio.Nursery) -> None:
    """Fifty clients in parallel each get their own echoes."""
    port = await start(nursery, echo_app())
    results: list[list[object]] = []

    async def one(i: int) -> None:
        async with open_client(f"ws://127.0.0.1:{port}/chat") as ws:
            replies = []
            for message in (f"{i}-a", f"{i}-b"):
                await ws.send(message)
                replies.append(await ws.receive())
            results.append(replies)

    async with trio.open_nursery() as clients:
        for i in range(50):
            clients.start_soon(one, i)
    assert sorted(results) == sorted([[f"Echo: {i}-a", f"Echo: {i}-b"] for i in range(50)])


async def test_first_frame_in_the_handshake_write_is_not_lost(nursery: trio.Nursery) -> None:
    """Bytes that arrive with the request head are the socket's first frame."""
    port = await start(nursery, echo_app())
    client = await RawClient.connect(port)
    await client.send(upgrade_request("/chat") + client_frame(0x1, b"early"))
    status, _ = await client.read_head()
    assert status == 101
    assert await client.read_frame() == (0x1, b"Echo: early")
    await client.aclose()


async def test_rejections_have_status_and_reason(nursery: trio.Nursery) -> None:
    """Bad handshakes get an HTTP status with a reason body, then the connection closes."""
    port = await start(nursery, echo_app())
    cases = [
        (upgrade_request("/nowhere"), 404, "no route"),
        (b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n", 426, "websocket"),
        (b"POST /chat HTTP/1.1\r\nHost: x\r\n\r\n", 405, "not allowed"),
        (b"GET /chat HTTP/1.1\r\nBad Header\r\n\r\n", 400, "header"),
        (b"GET /chat HTTP/1.0\r\nHost: x\r\n\r\n", 505, "HTTP/1.1"),
        (upgrade_request("/chat").replace(b"13", b"8"), 426, "13"),
    ]
    for request, expected, reason in cases:
        client = await RawClient.connect(port)
        await client.send(request)
        status, head = await client.read_head()
        body = await client.read_body()
        assert status == expected, (request, head)
        assert reason.lower() in body.decode().lower()
        assert "connection: close" in head.lower()
        await client.aclose()


UPGRADE_TAIL = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (f"GET /raw HTTP/1.1\r\n{UPGRADE_TAIL}\r\n".encode(), "missing Host"),
        (
            f"GET /raw HTTP/1.1\r\nHost: a\r\nHost: b\r\n{UPGRADE_TAIL}\r\n".encode(),
            "repeated Host",
        ),
        (
            upgrade_request("/raw", extra="Content-Length: 6\r\n") + client_frame(0x1, b""),
            "Content-Length",
        ),
        (
            upgrade_request("/raw", extra="Transfer-Encoding: chunked\r\n")
            + b"6\r\n\x81\x80abcd\r\n",
            "Transfer-Encoding",
        ),
        (
            b"GET /raw HTTP/1.1\nHost: x\n" + UPGRADE_TAIL.replace("\r\n", "\n").encode() + b"\n",
            "bare LF",
        ),
        (
            upgrade_request("/raw").replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\n"),
            "bare LF",
        ),
    ],
    ids=["no-host", "two-hosts", "content-length", "transfer-encoding", "bare-lf", "one-bare-lf"],
)
async def test_strict_handshakes_are_refused_at_once(
    nursery: trio.Nursery, request_bytes: bytes, reason: str
) -> None:
    """No Host, two Hosts, a body (whose bytes would be read as frames) or bare-LF
    lines: 400 with the reason, answered at once (not at the 10 s head deadline)."""
    port = await start(nursery, echo_app())
    client = await RawClient.connect(port)
    started = trio.current_time()
    try:
        with trio.fail_after(5):
            await client.send(request_bytes)
            status, head = await client.read_head()
            body = await client.read_body()
    finally:
        await client.aclose()
    # At once: well before the request timeout a parser waiting for more would hit.
    assert trio.current_time() - started < HandshakeLimits().timeout / 2
    assert status == 400, head
    assert reason in body.decode()


async def test_http_route_answers_a_get_with_content_length(nursery: trio.Nursery) -> None:
    """The body rule is for upgrades: an HTTP route answers a GET that has a body."""
    app = echo_app()
    app.get("/health", lambda ctx: "ok")
    port = await start(nursery, app)
    client = await RawClient.connect(port)
    try:
        with trio.fail_after(5):
            await client.send(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            status, _ = await client.read_head()
            assert (status, await client.read_body()) == (200, b"ok")
    finally:
        await client.aclose()


async def test_oversized_head_gets_431(nursery: trio.Nursery) -> None:
    """A request head over the size limit is answered 431."""
    port = await start(nursery, echo_app(), limits=HandshakeLimits(max_head_size=2048))
    client = await RawClient.connect(port)
    await client.send(upgrade_request("/chat", extra="X-Big: " + "a" * 4000 + "\r\n"))
    status, _ = await client.read_head()
    assert status == 431
    await client.aclose()


async def test_slow_head_gets_408(nursery: trio.Nursery) -> None:
    """A client that does not finish its head in time is answered 408."""
    port = await start(nursery, echo_app(), limits=HandshakeLimits(timeout=0.3))
    client = await RawClient.connect(port)
    await client.send(b"GET /chat HTTP/1.1\r\n")
    status, _ = await client.read_head()
    assert status == 408
    await client.aclose()


async def test_unanswered_pings_close_with_1011(nursery: trio.Nursery) -> None:
    """A peer that never answers pings is closed with 1011 after ping_timeout."""
    port = await start(nursery, echo_app(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.3))
    client = await RawClient.connect(port)
    await client.send(upgrade_request("/raw"))
    assert (await client.read_head())[0] == 101
    opcodes = []
    with trio.fail_after(5):
        while True:
            opcode, payload = await client.read_frame()
            opcodes.append(opcode)
            if opcode in (0x8, -1):
                break
    assert 0x9 in opcodes  # a ping came first
    assert opcode == 0x8 and close_code(payload) == 1011
    assert await client.read_frame() == (-1, b"")  # then the server dropped TCP
    await client.aclose()


async def test_slow_reader_does_not_stall_other_sockets(nursery: trio.Nursery) -> None:
    """A client that stops reading only fills its own outbox; others keep echoing."""
    app = Axeom().use(ws_plugin(backpressure_limit=64 * 2**20))
    statuses: list[str] = []

    def on_message(ws, msg):  # type: ignore[no-untyped-def]
        if msg == "flood":
            for _ in range(64):
                statuses.append(ws.send(b"x" * 2**20).value)
        else:
            ws.send(msg)

    app.ws("/raw", message=on_message)
    port = await start(nursery, app)
    slow = await RawClient.connect(port)
    await slow.send(upgrade_request("/raw") + client_frame(0x1, b"flood"))
    assert (await slow.read_head())[0] == 101
    with trio.fail_after(5):
        for i in range(20):
            async with open_client(f"ws://127.0.0.1:{port}/raw") as ws:
                await ws.send(f"m{i}")
                assert await ws.receive() == f"m{i}"
    assert statuses.count("queued") >= 60
    await slow.aclose()


async def test_compression_round_trip_with_websockets_client(nursery: trio.Nursery) -> None:
    """permessage-deflate negotiated with a real client; messages survive both ways."""
    app = Axeom().use(ws_plugin(compression=True))
    app.ws("/chat", message=lambda ws, msg: ws.send(msg * 3))

    def talk(port: int) -> tuple[object, str | None]:
        with ws_sync.connect(f"ws://127.0.0.1:{port}/chat", compression="deflate") as client:
            client.send("abc" * 1000)
            reply = client.recv(timeout=5)
            extensions = client.response.headers.get("Sec-WebSocket-Extensions")
            return reply, extensions

    port = await start(nursery, app)
    reply, extensions = await in_thread(talk, port)
    assert reply == "abc" * 3000
    assert extensions is not None and extensions.startswith("permessage-deflate")


async def deflate_echo_raw(
    port: int, extensions: list[str], count: int = 3
) -> tuple[str, list[bytes]]:
    """Handshake with exactly ``extensions`` as Sec-WebSocket-Extensions headers, send
    ``count`` messages compressed by hand (context takeover), return the 101's
    extension header and the decompressed echoes (each checked to be compressed)."""
    client = await RawClient.connect(port)
    extra = "".join(f"Sec-WebSocket-Extensions: {value}\r\n" for value in extensions)
    deflater = Deflater()
    replies = []
    try:
        with trio.fail_after(5):
            await client.send(upgrade_request("/raw", extra=extra))
            status, head = await client.read_head()
            assert status == 101, head
            for i in range(count):
                await client.send(deflater.frame(f"message {i} ".encode() * 50))
                opcode, payload = await client.read_frame()
                assert opcode == 0x1, (opcode, payload)
                assert client.rsv1, "the echo should be compressed too"
                replies.append(deflater.inflate(payload))
    finally:
        await client.aclose()
    agreed = [line for line in head.split("\r\n") if line.lower().startswith("sec-websocket-ext")]
    return (agreed[0].split(":", 1)[1].strip() if agreed else ""), replies


@pytest.mark.parametrize(
    "extensions",
    [
        ["permessage-deflate"],
        ["x-unknown; a=1, permessage-deflate"],
        ["permessage-deflate; x-unknown=1, permessage-deflate"],
        ["permessage-deflate; server_max_window_bits=16", "permessage-deflate"],
        ["permessage-deflate; server_no_context_takeover"],
    ],
)
async def test_bare_and_multiple_deflate_offers_compress_both_ways(
    nursery: trio.Nursery, extensions: list[str]
) -> None:
    """A bare offer (no parameters), alone or after an unknown or invalid one, in one
    header or two, negotiates compression that works: compressed frames built with
    zlib come back compressed and intact (no 1002 "reserved bits must be 0")."""
    port = await start(nursery, echo_app(compression=True))
    agreed, replies = await deflate_echo_raw(port, extensions)
    assert agreed.startswith("permessage-deflate")
    assert replies == [f"message {i} ".encode() * 50 for i in range(3)]


async def test_invalid_only_deflate_offer_means_no_compression(nursery: trio.Nursery) -> None:
    """An offer that cannot be accepted is declined: no extension, plain frames work."""
    port = await start(nursery, echo_app(compression=True))
    client = await RawClient.connect(port)
    extra = "Sec-WebSocket-Extensions: permessage-deflate; x-unknown=1\r\n"
    try:
        with trio.fail_after(5):
            await client.send(upgrade_request("/raw", extra=extra) + client_frame(0x1, b"plain"))
            status, head = await client.read_head()
            assert status == 101 and "sec-websocket-extensions" not in head.lower()
            assert await client.read_frame() == (0x1, b"plain")
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "factory",
    [
        ClientPerMessageDeflateFactory(client_max_window_bits=True),
        ClientPerMessageDeflateFactory(client_max_window_bits=10),
        ClientPerMessageDeflateFactory(server_max_window_bits=10),
        ClientPerMessageDeflateFactory(server_no_context_takeover=True),
        ClientPerMessageDeflateFactory(client_no_context_takeover=True),
    ],
)
async def test_deflate_offer_variants_with_websockets_client(
    nursery: trio.Nursery, factory: ClientPerMessageDeflateFactory
) -> None:
    """The offers real clients send (browser-style, window sizes, no context takeover)
    negotiate compression that a compressing client can use for several messages."""
    app = echo_app(compression=True)

    def talk(port: int) -> tuple[list[object], str | None]:
        url = f"ws://127.0.0.1:{port}/raw"
        with ws_sync.connect(url, compression=None, extensions=[factory]) as client:
            replies = []
            for i in range(3):
                client.send(f"{i} abc" * 1000)
                replies.append(client.recv(timeout=5))
            return replies, client.response.headers.get("Sec-WebSocket-Extensions")

    port = await start(nursery, app)
    replies, extensions = await in_thread(talk, port)
    assert replies == [f"{i} abc" * 1000 for i in range(3)]
    assert extensions is not None and extensions.startswith("permessage-deflate")


async def test_client_close_code_reaches_close_handler(nursery: trio.Nursery) -> None:
    """The code a real client closes with is what `close` receives."""
    closed: list[tuple[int, str]] = []
    done = trio.Event()
    app = Axeom().use(ws_plugin())
    app.ws("/chat", close=lambda ws, code, reason: (closed.append((code, reason)), done.set()))

    port = await start(nursery, app)
    async with open_client(f"ws://127.0.0.1:{port}/chat") as ws:
        await ws.close(4242, "done here")
    with trio.fail_after(5):
        await done.wait()
    assert closed == [(4242, "done here")]


async def test_open_client_speaks_to_a_running_server(nursery: trio.Nursery) -> None:
    """The test kit's real client: headers reach derive, subprotocols are negotiated
    and a server close arrives as WebSocketClosed."""
    app = Axeom().use(ws_plugin(subprotocols=["v2", "v1"]))
    app.derive(lambda ctx: {"user": ctx.headers.get("x-user")})

    def on_message(ws, msg):  # type: ignore[no-untyped-def]
        if msg == "bye":
            ws.close(4000, "bye now")
        else:
            ws.send(f"{ws.data['user']}: {msg}")

    app.ws("/chat", message=on_message)
    port = await start(nursery, app)
    url = f"ws://127.0.0.1:{port}/chat"
    with trio.fail_after(10):
        async with open_client(url, {"x-user": "ann"}, subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            await ws.send("hi")
            assert await ws.receive() == "ann: hi"
            await ws.send(b"\x00")
            assert await ws.receive() == "ann: b'\\x00'"
            await ws.send("bye")
            with pytest.raises(WebSocketClosed) as closed:
                await ws.receive()
            assert (closed.value.code, closed.value.reason) == (4000, "bye now")
            assert (ws.closed, ws.close_code, ws.close_reason) == (True, 4000, "bye now")


async def test_open_client_raises_handshake_rejected(nursery: trio.Nursery) -> None:
    """A refused handshake raises the test kit's HandshakeRejected, status and body included."""
    app = echo_app(allowed_origins=["https://good.example"])
    port = await start(nursery, app)
    with trio.fail_after(10), pytest.raises(HandshakeRejected) as rejected:
        async with open_client(f"ws://127.0.0.1:{port}/chat", {"origin": "https://evil"}):
            raise AssertionError("the handshake should have been refused")
    assert rejected.value.status == 403
    assert "not allowed" in rejected.value.text
    assert rejected.value.headers["content-type"].startswith("text/plain")


async def test_open_client_lets_a_failing_assert_out_as_itself(nursery: trio.Nursery) -> None:
    """An assert failing inside ``open_client`` is the AssertionError, not a group."""
    port = await start(nursery, echo_app())
    with trio.fail_after(10), pytest.raises(AssertionError, match="as itself"):
        async with open_client(f"ws://127.0.0.1:{port}/chat") as ws:
            await ws.send("hi")
            assert await ws.receive() == "Echo: hi"
            raise AssertionError("as itself")
