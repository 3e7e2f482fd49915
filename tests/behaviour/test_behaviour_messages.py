"""Messages on every runtime: echo, `derive`, subprotocols, ordering under a slow
handler, backpressure and `drain`, `await ws.send`."""

from __future__ import annotations

from tests._wsraw import client_frame
from tests.apps.behaviour_app import FLOOD_CHUNK
from tests.behaviour._client import Target
from tests.behaviour._runtimes import limitation

# Messages sent back-to-back to the slow handler (5 ms each: the whole run is short).
BURST = 20
# `await ws.send` of this many chunks of this size: 2 MiB, more than the loopback
# buffers take, so a real server has to wait for the client to read.
FLOW_COUNT = 256
FLOW_CHUNK = 8 * 1024


@limitation("daphne", "never sends an empty message (it skips an empty text or bytes)")
async def test_echo_text_and_binary(target: Target) -> None:
    """Text comes back as text and binary as binary, byte for byte, any size."""
    messages: list[str | bytes] = [
        "hi",
        "",
        "h\u00e9llo \u2603",
        bytes(range(256)),
        b"",
        b"x" * 70_000,
    ]
    async with target.connect("/echo") as ws:
        for message in messages:
            await ws.send(message)
        assert await ws.receive_many(len(messages)) == messages


async def test_derive_result_is_ws_data(target: Target) -> None:
    """What `derive` returns from the handshake is `ws.data` in the handlers."""
    async with target.connect("/echo?tag=t1", {"x-user": "ann"}) as ws:
        assert await ws.ask("data") == '{"user":"ann","tag":"t1"}'
    async with target.connect("/echo") as ws:
        assert await ws.ask("data") == '{"user":"anon","tag":""}'


async def test_subprotocol_is_the_servers_first_choice(target: Target) -> None:
    """Of the offered subprotocols, the route's most preferred one is chosen."""
    async with target.connect("/proto", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert await ws.ask("still echoing") == "still echoing"
    async with target.connect("/proto", subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1"


async def test_slow_handler_takes_messages_one_at_a_time_in_order(target: Target) -> None:
    """Messages written in one burst to a handler that awaits come back in
    order, and no two of the socket's handlers ever run at once."""
    messages = [f"m{i}" for i in range(BURST)]
    async with target.connect("/slow") as ws:
        await ws.send_raw(b"".join(client_frame(0x1, m.encode()) for m in messages))
        assert await ws.receive_many(BURST) == messages
        assert await ws.ask("most") == "most 1"


async def test_backpressure_drops_then_drain_runs(target: Target) -> None:
    """Past `backpressure_limit` a send reports BACKPRESSURE then DROPPED; the
    queued ones arrive, then `drain` runs once they are written."""
    async with target.connect("/flood") as ws:
        await ws.send("go")
        assert await ws.receive_many(3) == [bytes(FLOOD_CHUNK)] * 3
        assert await ws.receive() == "drained QUEUED QUEUED BACKPRESSURE DROPPED DROPPED"


async def test_awaited_send_is_flow_control(target: Target) -> None:
    """A loop of `await ws.send` far past `backpressure_limit` drops nothing
    and goes at the client's pace: every chunk, in order."""
    async with target.connect("/flow") as ws:
        await ws.send(f"{FLOW_COUNT} {FLOW_CHUNK}")
        for i in range(FLOW_COUNT):
            chunk = await ws.receive()
            assert isinstance(chunk, bytes) and len(chunk) == FLOW_CHUNK
            assert int.from_bytes(chunk[:4], "big") == i
        assert await ws.receive() == "flowed 0 dropped"
