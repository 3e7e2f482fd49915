"""Typed routes on every runtime: the handshake validated (400 naming each
field), messages decoded and validated, `on_invalid`, named events with replies."""

from __future__ import annotations

import json

import msgpack
import pytest

from axeom.testing import HandshakeRejected, WebSocketClosed
from tests.behaviour._client import Target
from tests.behaviour._runtimes import limitation


@limitation("daphne", "no denial response extension: every refusal is a 403 with an empty body")
async def test_invalid_handshake_is_400_naming_each_field(target: Target) -> None:
    """A query that fails its schema is refused with 400 and one JSON error per field."""
    with pytest.raises(HandshakeRejected) as refused:
        async with target.connect("/typed/lobby?limit=many"):
            raise AssertionError("the socket opened")
    assert refused.value.status == 400
    body = json.loads(refused.value.body)
    assert body["error"] == "invalid handshake"
    assert [(e["in"], e["loc"], e["type"]) for e in body["errors"]] == [
        ("query", ["token"], "missing"),
        ("query", ["limit"], "int_parsing"),
    ]


async def test_handler_gets_validated_values(target: Target) -> None:
    """The handler sees the typed query, params and headers and the decoded
    message; an object it sends arrives as JSON."""
    async with target.connect("/typed/lobby?token=t1&limit=3", {"x-user": "ann"}) as ws:
        await ws.send('{"text": "hi", "count": 1}')
        assert json.loads(await ws.receive()) == {"text": "ann/lobby/t1/3: hi", "count": 2}
        await ws.send(b'{"text": "bytes too"}')  # binary is JSON too by default
        assert json.loads(await ws.receive())["text"] == "ann/lobby/t1/3: bytes too"


async def test_invalid_message_gets_an_error_reply_and_the_socket_stays(target: Target) -> None:
    """By default an invalid message is answered with the error envelope; the
    next valid one is handled as usual."""
    async with target.connect("/typed/lobby?token=t1") as ws:
        await ws.send('{"text": 5}')
        assert json.loads(await ws.receive()) == {
            "type": "error",
            "error": "invalid message",
            "errors": [{"loc": ["text"], "msg": "Expected `str`, got `int`", "type": "type_error"}],
        }
        await ws.send("not json")
        assert json.loads(await ws.receive())["errors"][0]["type"] == "json_invalid"
        await ws.send('{"text": "still here"}')
        assert json.loads(await ws.receive())["text"] == "anon/lobby/t1/10: still here"


@pytest.mark.parametrize("text", ["short", "é" * 100], ids=["ascii", "utf8-over-125-bytes"])
async def test_objects_sent_arrive_as_json_text_frames(target: Target, text: str) -> None:
    """A msgspec Struct, a pydantic model and a dataclass given to ``ws.send``
    arrive as text frames of compact JSON, the first send of each type and
    the next ones alike (those go out as the encoder's UTF-8 bytes)."""
    async with target.connect("/typed-objects") as ws:
        await ws.send(json.dumps({"text": text, "count": 3}))
        received = await ws.receive_many(6)
    note = json.dumps({"text": text, "count": 3}, separators=(",", ":"), ensure_ascii=False)
    say = json.dumps({"type": "say", "text": text}, separators=(",", ":"), ensure_ascii=False)
    assert received == [note, say, note] * 2


@limitation("daphne", "refuses close code 1007: it arrives as 1000, with no reason")
async def test_invalid_message_closes_with_1007(target: Target) -> None:
    """`on_invalid="close"` closes with 1007 and a short reason (never 1011)."""
    async with target.connect("/typed-close") as ws:
        await ws.send('{"count": 2}')
        with pytest.raises(WebSocketClosed):
            await ws.receive()
        assert await ws.closed() == (1007, "invalid message: text: Field required")


async def test_on_invalid_function(target: Target) -> None:
    """`on_invalid=f` is called with the socket, the raw message and the errors."""
    async with target.connect("/typed-custom") as ws:
        await ws.send('{"text": []}')
        assert await ws.receive() == "invalid 12 ['text']"


async def test_msgpack_binary_messages(target: Target) -> None:
    """`binary="msgpack"`: a binary message is decoded as msgpack."""
    async with target.connect("/typed-msgpack") as ws:
        await ws.send(msgpack.packb({"text": "packed", "count": 4}))
        assert json.loads(await ws.receive()) == {"text": "packed", "count": 4}


@pytest.mark.parametrize("path", ["/events", "/events-class"])
async def test_events_dispatch_in_order_with_replies(target: Target, path: str) -> None:
    """Each event goes to its handler in arrival order; one with an id gets
    what its handler returned back with that id; an unknown type is invalid."""
    async with target.connect(path) as ws:
        await ws.send('{"type": "add", "id": 7, "a": 1, "b": 2}')
        await ws.send('{"type": "say", "id": 1, "text": "hello"}')
        await ws.send('{"type": "shout", "id": 8}')
        await ws.send('{"type": "add", "id": "x", "a": "one", "b": 2}')
        first, second, unknown, invalid = [json.loads(m) for m in await ws.receive_many(4)]
    if path == "/events":
        assert first == {"type": "reply", "id": 7, "data": 3}  # after a real await
        assert second == {"said": "hello"}  # it returned None: no reply
    else:
        assert first == {"type": "reply", "id": 7, "data": {"sum": 3}}
        assert second == {"type": "reply", "id": 1, "data": "heard hello"}
    assert unknown["id"] == 8 and unknown["errors"][0]["type"] == "unknown_event"
    assert invalid["id"] == "x" and invalid["errors"][0]["loc"] == ["a"]
