"""Typed routes through the test kit: the handshake validated before `derive`,
typed messages, `on_invalid`, `ws.send(obj)`, named events with replies, and
the mistakes a route registration refuses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import msgspec
import pydantic
import pytest

from axeom import Axeom
from axeom.schema import ValidationFailure
from axeom.testing import HandshakeRejected, TestClient, WebSocketClosed
from axeom.ws import ws_plugin

pytestmark = pytest.mark.timeout(30)


class Query(pydantic.BaseModel):
    token: str
    limit: int = 10


class Params(msgspec.Struct):
    room: str
    seat: int


@dataclasses.dataclass
class Headers:
    x_user: str


class Note(msgspec.Struct):
    text: str


class Out(pydantic.BaseModel):
    text: str


class Say(pydantic.BaseModel):
    type: Literal["say"] = "say"
    text: str


class Add(msgspec.Struct, tag="add", tag_field="type"):
    a: int
    b: int


def new_app(debug: bool = False) -> Axeom:
    return Axeom(debug=debug).use(ws_plugin())


async def refused(app: Axeom, target: str, headers: dict[str, str] | None = None) -> Any:
    """The JSON body of a refused handshake (asserting it was a 400)."""
    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as rejected:
            async with client.websocket(target, headers):
                raise AssertionError("the socket opened")
    assert rejected.value.status == 400
    assert rejected.value.headers["content-type"] == "application/json"
    return json.loads(rejected.value.body)


# -- the handshake ----------------------------------------------------------------


async def test_handshake_400_names_every_failing_field_before_derive() -> None:
    """Query, params and headers are validated together; each failing field is
    named with where it was; `derive` does not run for a refused handshake."""
    derived: list[str] = []
    app = new_app()
    app.derive(lambda ctx: derived.append("ran"))
    app.ws("/r/:room/:seat", query=Query, params=Params, headers=Headers, message=print)
    body = await refused(app, "/r/lobby/front?limit=x")
    assert body == {
        "error": "invalid handshake",
        "errors": [
            {"in": "query", "loc": ["token"], "msg": "Field required", "type": "missing"},
            {
                "in": "query",
                "loc": ["limit"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "type": "int_parsing",
            },
            {
                "in": "params",
                "loc": ["seat"],
                "msg": "Expected `int`, got `str`",
                "type": "type_error",
            },
            {"in": "headers", "loc": ["x_user"], "msg": "Field required", "type": "missing"},
        ],
    }
    assert derived == []


async def test_protocol_checks_come_before_validation() -> None:
    """A request that is no upgrade at all gets the protocol's answer (426), not a 400."""
    app = new_app()
    app.ws("/r", query=Query, message=print)
    async with TestClient(app) as client:
        response = await client.request("GET", "/r")
    assert response.status == 426


async def test_handler_and_derive_see_the_validated_values() -> None:
    """`ws.query`, `ws.params` and `ws.headers` are the validated instances;
    `derive` reads them as `ctx.validated` while `ctx.query` stays the raw dict."""
    app = new_app()

    @app.derive
    def seen(ctx: Any) -> dict[str, Any]:
        return {"token": ctx.validated["query"].token, "raw": ctx.query["limit"]}

    def show(ws: Any, msg: Any) -> None:
        ws.send(
            f"{ws.query.token} {ws.query.limit + 1} {ws.params.room} {ws.params.seat + 1} "
            f"{ws.headers.x_user} {ws.data}"
        )

    app.ws("/r/:room/:seat", query=Query, params=Params, headers=Headers, message=show)
    async with TestClient(app) as client:
        async with client.websocket("/r/lobby/4?token=t&limit=2", {"X-User": "ann"}) as ws:
            await ws.send("?")
            assert await ws.receive() == "t 3 lobby 5 ann {'token': 't', 'raw': '2'}"


# -- typed messages ------------------------------------------------------------------


async def test_handler_receives_the_typed_message() -> None:
    """A text message is decoded as JSON into the route's body type."""
    got: list[Any] = []
    app = new_app()
    app.ws("/n", body=Note, message=lambda ws, note: got.append(note) or ws.send("ok"))
    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send('{"text": "hi"}')
            assert await ws.receive() == "ok"
    assert got == [Note(text="hi")]


async def test_route_as_a_decorator() -> None:
    """`@app.ws(path, body=T)` takes the message function, as the untyped route does."""
    app = new_app()

    @app.ws("/n", body=Note)
    async def shout(ws: Any, note: Note) -> None:
        ws.send(note.text.upper())

    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send('{"text": "hi"}')
            assert await ws.receive() == "HI"


async def test_on_invalid_reply_is_the_default_and_keeps_the_socket() -> None:
    """The error envelope, in the one error shape; the socket stays open and
    the app's handler never sees the bad message; the app counts it."""
    app = new_app()
    app.ws("/n", body=Note, message=lambda ws, note: ws.send(note.text))
    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send('{"txt": "typo"}')
            assert json.loads(await ws.receive()) == {
                "type": "error",
                "error": "invalid message",
                "errors": [{"loc": ["text"], "msg": "Field required", "type": "missing"}],
            }
            await ws.send('{"text": "fine"}')
            assert await ws.receive() == "fine"
    assert app.invalid_messages == 1


async def test_on_invalid_close_is_1007() -> None:
    """`on_invalid="close"`: 1007 with a short reason; no 1011, no app exception."""
    app = new_app()
    app.ws("/n", body=Note, on_invalid="close", message=lambda ws, note: ws.send(note.text))
    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send("[1, 2]")
            with pytest.raises(WebSocketClosed) as closed:
                await ws.receive()
    assert closed.value.code == 1007
    assert closed.value.reason == "invalid message: Expected `object`, got `array`"


async def test_on_invalid_close_reason_fits_a_close_frame() -> None:
    """A long error message is cut to the 123 bytes a close reason may carry."""
    schema = {"type": "object", "required": ["x" * 300]}
    app = new_app()
    app.ws("/n", body=schema, on_invalid="close", message=print)
    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send("{}")
            with pytest.raises(WebSocketClosed) as closed:
                await ws.receive()
    assert closed.value.code == 1007
    assert len(closed.value.reason.encode()) <= 123


async def test_on_invalid_function_gets_socket_raw_and_errors() -> None:
    """`on_invalid=f`: called (awaited if a coroutine) with ws, the raw message, the errors."""
    calls: list[Any] = []

    async def on_invalid(ws: Any, raw: Any, errors: list[dict[str, Any]]) -> None:
        calls.append((raw, errors))
        ws.send("noted")

    app = new_app()
    app.ws("/n", body=Note, on_invalid=on_invalid, message=print)
    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send(b"\x93")
            assert await ws.receive() == "noted"
    [(raw, errors)] = calls
    assert raw == b"\x93" and errors[0]["type"] == "json_invalid"


async def test_msgpack_binary() -> None:
    """`binary="msgpack"` decodes binary messages as msgpack; text stays JSON."""
    import msgpack

    app = new_app()
    app.ws("/n", body=Note, binary="msgpack", message=lambda ws, note: ws.send(note))
    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send(msgpack.packb({"text": "packed"}))
            assert await ws.receive() == '{"text":"packed"}'
            await ws.send('{"text": "json"}')
            assert await ws.receive() == '{"text":"json"}'


# -- ws.send(obj) ---------------------------------------------------------------------


async def test_send_encodes_models_structs_and_dataclasses() -> None:
    """`ws.send` takes a pydantic model, a msgspec Struct or a dataclass, as JSON text."""

    def send_all(ws: Any, msg: str) -> None:
        ws.send(Out(text="model"))
        ws.send(Note(text="struct"))
        ws.send(Headers(x_user="dataclass"))

    app = new_app()
    app.ws("/s", message=send_all)
    async with TestClient(app) as client:
        async with client.websocket("/s") as ws:
            await ws.send("go")
            assert [json.loads(await ws.receive()) for _ in range(3)] == [
                {"text": "model"},
                {"text": "struct"},
                {"x_user": "dataclass"},
            ]


@pytest.mark.parametrize("debug", [True, False])
async def test_send_type_is_checked_in_debug_mode(debug: bool) -> None:
    """With `send=T`, sending an object that does not match is a TypeError in
    debug mode (the handler fails: 1011); outside debug mode it is not checked."""
    app = new_app(debug=debug)
    app.ws("/s", send=Out, message=lambda ws, msg: ws.send({"wrong": msg}))
    async with TestClient(app) as client:
        async with client.websocket("/s") as ws:
            await ws.send("x")
            if debug:
                with pytest.raises(WebSocketClosed) as closed:
                    await ws.receive()
                assert closed.value.code == 1011
            else:
                assert await ws.receive() == '{"wrong":"x"}'


def test_debug_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Axeom()` is in debug mode when AXEOM_DEBUG says so; the argument wins."""
    monkeypatch.setenv("AXEOM_DEBUG", "1")
    assert Axeom().debug and not Axeom(debug=False).debug
    monkeypatch.setenv("AXEOM_DEBUG", "0")
    assert not Axeom().debug


# -- named events ------------------------------------------------------------------------


async def test_events_by_decorator_with_replies_in_arrival_order() -> None:
    """`@route.on(T)` handlers run in arrival order; a message with an id gets
    its handler's return value back with that id (after an await too)."""
    app = new_app()
    route = app.ws("/e", events=[Say, Add])
    order: list[str] = []

    @route.on(Say)
    def say(ws: Any, msg: Say) -> str:
        order.append(msg.text)
        return msg.text.upper()

    @route.on(Add)
    async def add(ws: Any, msg: Add) -> int:
        order.append("add")
        return msg.a + msg.b

    async with TestClient(app) as client:
        async with client.websocket("/e") as ws:
            await ws.send('{"type": "add", "id": 1, "a": 2, "b": 3}')
            await ws.send('{"type": "say", "id": "two", "text": "hi"}')
            await ws.send('{"type": "say", "text": "no id, no reply"}')
            await ws.send('{"type": "add", "id": 3, "a": 1, "b": 1}')
            replies = [json.loads(await ws.receive()) for _ in range(3)]
    assert replies == [
        {"type": "reply", "id": 1, "data": 5},
        {"type": "reply", "id": "two", "data": "HI"},
        {"type": "reply", "id": 3, "data": 2},
    ]
    assert order == ["add", "hi", "no id, no reply", "add"]


async def test_events_by_handler_class_and_reply_objects() -> None:
    """A handler class handles event `x` with its method `on_x`, one instance
    per socket; a returned model is the reply's data as JSON."""

    class Sum(pydantic.BaseModel):
        total: int

    app = new_app()

    @app.ws("/e", events=Say | Add, discriminator="type")
    class Calc:
        def __init__(self) -> None:
            self.said: list[str] = []

        def on_say(self, ws: Any, msg: Say) -> list[str]:
            self.said.append(msg.text)
            return self.said

        def on_add(self, ws: Any, msg: Add) -> Sum:
            return Sum(total=msg.a + msg.b)

    async with TestClient(app) as client:
        async with client.websocket("/e") as ws:
            await ws.send('{"type": "say", "id": 1, "text": "a"}')
            await ws.send('{"type": "say", "id": 2, "text": "b"}')
            await ws.send('{"type": "add", "id": 3, "a": 4, "b": 5}')
            assert [json.loads(await ws.receive())["data"] for _ in range(3)] == [
                ["a"],
                ["a", "b"],
                {"total": 9},
            ]
        async with client.websocket("/e") as other:  # a fresh instance
            await other.send('{"type": "say", "id": 1, "text": "c"}')
            assert json.loads(await other.receive())["data"] == ["c"]


async def test_unknown_or_invalid_event_goes_through_on_invalid() -> None:
    """An unknown type, a message that is no object and an event that fails
    its schema are invalid messages, answered with the id when there is one."""
    app = new_app()
    route = app.ws("/e", events={"say": Say})
    route.on(Say)(lambda ws, msg: msg.text)
    async with TestClient(app) as client:
        async with client.websocket("/e") as ws:
            await ws.send('{"type": "shout", "id": 9}')
            unknown = json.loads(await ws.receive())
            await ws.send("[]")
            not_object = json.loads(await ws.receive())
            await ws.send('{"type": "say", "id": 10}')
            invalid = json.loads(await ws.receive())
    assert unknown == {
        "type": "error",
        "error": "invalid message",
        "id": 9,
        "errors": [
            {
                "loc": ["type"],
                "msg": "unknown event 'shout'; this route handles: say",
                "type": "unknown_event",
            }
        ],
    }
    assert "id" not in not_object and not_object["errors"][0]["type"] == "model_type"
    assert invalid["id"] == 10 and invalid["errors"][0]["loc"] == ["text"]
    assert app.invalid_messages == 3


async def test_custom_discriminator() -> None:
    """`discriminator="kind"` names events by that field, in the envelopes too."""

    class Ping(msgspec.Struct, tag="ping", tag_field="kind"):
        n: int

    app = new_app()
    route = app.ws("/e", events=[Ping], discriminator="kind")
    route.on(Ping)(lambda ws, msg: msg.n + 1)
    async with TestClient(app) as client:
        async with client.websocket("/e") as ws:
            await ws.send('{"kind": "ping", "id": 1, "n": 1}')
            assert json.loads(await ws.receive()) == {"kind": "reply", "id": 1, "data": 2}


# -- registration mistakes ---------------------------------------------------------------


def test_registration_refuses_mistakes() -> None:
    """Each mistake is a clear error when the route is registered."""
    app = new_app()
    with pytest.raises(TypeError, match="cannot use int as a schema"):
        app.ws("/a", body=int, message=print)
    with pytest.raises(ValueError, match="on_invalid must be"):
        app.ws("/a", body=Note, on_invalid="ignore", message=print)
    with pytest.raises(ValueError, match="binary must be"):
        app.ws("/a", body=Note, binary="cbor", message=print)
    with pytest.raises(TypeError, match=r"either body= .* or events="):
        app.ws("/a", body=Note, events=[Say], message=print)
    with pytest.raises(TypeError, match="remove the message handler"):
        app.ws("/a", events=[Say], message=print)
    with pytest.raises(TypeError, match=r"unknown handler or option 'bdy'.*did you mean 'body'"):
        app.ws("/a", bdy=Note, message=print)

    class Other(msgspec.Struct):  # also named "note": it would replace Note silently
        other: int

    Other.__name__ = "Note"
    with pytest.raises(TypeError, match="two event types are named 'note'"):
        app.ws("/a", events=[Note, Other])

    class NoMethods:
        def on_say(self, ws: Any, msg: Any) -> None: ...

    with pytest.raises(TypeError, match="lacks on_add"):
        app.ws("/a", NoMethods, events=[Say, Add])

    class OpenOnly:
        def open(self, ws: Any) -> None: ...

    with pytest.raises(TypeError, match="needs a message"):
        app.ws("/a", OpenOnly, body=Note)


async def test_handler_class_with_a_typed_body() -> None:
    """A handler class on a `body=` route gets typed values in `message`, with
    its `open` and per-socket state as usual."""
    app = new_app()

    @app.ws("/n", body=Note)
    class Counter:
        def open(self, ws: Any) -> None:
            self.seen = 0

        def message(self, ws: Any, note: Note) -> None:
            self.seen += 1
            ws.send(f"{self.seen} {note.text}")

    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send('{"text": "a"}')
            await ws.send('{"text": "b"}')
            assert [await ws.receive(), await ws.receive()] == ["1 a", "2 b"]


def test_validation_failure_text() -> None:
    """`str(ValidationFailure)` reads as where: what, for logs."""
    failure = ValidationFailure([{"loc": ["a", 0], "msg": "bad", "type": "t"}])
    assert str(failure) == "a.0: bad"


class Total(pydantic.BaseModel):
    total: int


class Wrong(pydantic.BaseModel):
    other: str


def total_of(ws: Any, msg: Add) -> Total:
    return Total(total=msg.a + msg.b)


def test_route_typing_records_what_the_route_declares() -> None:
    """`route.typing` holds every schema (what document generators read); a
    reply type comes from `reply=` or from the handler's return annotation."""

    class Calc:
        def on_say(self, ws: Any, msg: Say) -> Total:
            return Total(total=0)

    app = new_app()
    route = app.ws("/e", events=[Say, Add], query=Query, on_invalid="close")
    route.on(Add)(total_of)
    typing = route.typing
    assert typing.query is not None and typing.query.name == "Query"
    assert typing.params is None and typing.headers is None and typing.body is None
    assert (typing.discriminator, typing.on_invalid, typing.binary) == ("type", "close", "json")
    assert list(typing.events) == ["say", "add"]
    schema, handler, reply = typing.events["add"]
    assert (schema.name, handler, reply and reply.name) == ("Add", total_of, "Total")
    assert typing.events["say"].reply is None
    other = app.ws("/c", Calc, events=[Say], send=Note)
    assert other.typing.events["say"].reply is not None
    assert other.typing.send is not None and other.typing.send.json_schema()["required"] == ["text"]
    untyped = app.ws("/u", message=print)
    assert untyped.typing.events == {} and untyped.typing.body is None


async def test_reply_type_is_checked_in_debug_mode() -> None:
    """A reply that does not match its declared type fails the handler in debug mode."""
    app = new_app(debug=True)
    route = app.ws("/e", events=[Add])
    route.on(Add, reply=Wrong)(total_of)
    async with TestClient(app) as client:
        async with client.websocket("/e") as ws:
            await ws.send('{"type": "add", "id": 1, "a": 1, "b": 1}')
            with pytest.raises(WebSocketClosed) as closed:
                await ws.receive()
    assert closed.value.code == 1011


# -- hostile input ----------------------------------------------------------------


class Anything(msgspec.Struct):
    data: Any = None


@dataclasses.dataclass
class AnythingDC:
    data: Any = None


RECURSIVE_SCHEMA = {"type": "object", "additionalProperties": {"$ref": "#"}}
TOO_DEEP_ARRAY = '{"data": ' + "[" * 100_000 + "]" * 100_000 + "}"
TOO_DEEP_OBJECT = '{"a":' * 900 + "{}" + "}" * 900


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (Anything, TOO_DEEP_ARRAY),
        (AnythingDC, TOO_DEEP_ARRAY),
        ({"type": "object"}, TOO_DEEP_ARRAY),
        (RECURSIVE_SCHEMA, TOO_DEEP_OBJECT),
        (Query, TOO_DEEP_ARRAY),
    ],
    ids=["msgspec", "dataclass", "jsonschema", "jsonschema-recursive", "pydantic"],
)
async def test_a_message_nested_too_deeply_is_invalid_not_1011(body: Any, message: str) -> None:
    """Nesting deeper than a decoder or validator follows (a RecursionError in
    json, msgspec or jsonschema) is an invalid message like any other: the
    error reply, the socket still open; never the handler's 1011."""
    app = new_app()
    app.ws("/n", body=body, message=lambda ws, value: ws.send("valid"))
    async with TestClient(app) as client:
        async with client.websocket("/n") as ws:
            await ws.send(message)
            reply = json.loads(await ws.receive())
            await ws.send("[]")  # the socket still serves
            assert json.loads(await ws.receive())["error"] == "invalid message"
    assert reply["error"] == "invalid message", reply
    assert app.invalid_messages == 2


async def test_an_event_nested_too_deeply_is_invalid_not_1011() -> None:
    """The same on an events route, whose envelope is decoded before dispatch,
    and for an event whose schema recurses: the error keeps the id."""
    app = new_app()
    tree = {**RECURSIVE_SCHEMA, "title": "Tree"}
    route = app.ws("/e", events=[Say, tree])
    route.on(Say)(lambda ws, msg: msg.text)
    route.on(tree)(lambda ws, msg: "grown")
    deep_event = '{"type": "tree", "id": 5, "a": ' + '{"a":' * 900 + "{}" + "}" * 900 + "}"
    async with TestClient(app) as client:
        async with client.websocket("/e") as ws:
            await ws.send('{"type": "say", "id": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
            envelope = json.loads(await ws.receive())
            await ws.send(deep_event)
            event = json.loads(await ws.receive())
            await ws.send('{"type": "say", "id": 2, "text": "still here"}')
            assert json.loads(await ws.receive())["data"] == "still here"
    assert envelope["error"] == "invalid message" and envelope["errors"][0]["type"] == "too_deep"
    assert event["error"] == "invalid message" and event["id"] == 5
    assert app.invalid_messages == 2
