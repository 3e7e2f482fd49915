"""Typed routes: the handshake's query, params and headers, and the messages.

``app.ws(path, ..., query=Q, params=P, headers=H, body=T, send=S,
events=[...], discriminator="type", on_invalid="reply", binary="json")``
records a ``RouteTyping`` on the route (``route.typing``). This module is
sans-IO: it turns raw values into validated ones and wraps a socket's
``message`` handler; the actor and every runtime run the result unchanged. A
route without ``body`` or ``events`` keeps its handler as it was: no work per
message is added to an untyped route.

The envelopes (the route's ``discriminator`` key, ``"type"`` by default)::

    client -> {"type": "add", "id": 7, "a": 1, "b": 2}     an event with a correlation id
    server <- {"type": "reply", "id": 7, "data": 3}         what its handler returned
    server <- {"type": "error", "error": "invalid message", "id": 7,
               "errors": [{"loc": ["b"], "msg": "...", "type": "..."}]}
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Union, get_args, get_origin, get_type_hints

import msgpack
from websockets.frames import CloseCode

from .._call import _NOT_AWAITED
from ..errors import HTTPError
from ..schema import ErrorDict, Schema, ValidationFailure, adapt
from ..schema._base import Decoder
from ..schema._encode import to_builtins
from ..schema._failure import json_invalid

if TYPE_CHECKING:
    from .._context import Context
    from .._headers import Headers
    from ._handlers import BoundHandlers, Handler
    from ._socket import WebSocket
    from ._upgrade import Upgrade

__all__ = [
    "BINARY_MODES",
    "CORRELATION_KEY",
    "INVALID_MODES",
    "TYPING_OPTIONS",
    "Event",
    "RouteTyping",
    "event_method",
]

logger = logging.getLogger("axeom.ws")

# The keywords of app.ws that make a route typed (not WSOptions).
TYPING_OPTIONS = frozenset(
    {
        "query",
        "params",
        "headers",
        "body",
        "send",
        "events",
        "discriminator",
        "on_invalid",
        "binary",
    }
)
INVALID_MODES = ("reply", "close")
# How a binary message of a typed route is decoded: JSON in UTF-8 (as a text
# one), or msgpack.
BINARY_MODES = ("json", "msgpack")
# The envelope key that carries a request's correlation id.
CORRELATION_KEY = "id"
REPLY_TYPE = "reply"
ERROR_TYPE = "error"
INVALID_DATA = CloseCode.INVALID_DATA  # 1007: "inconsistent with the type of the message"
# RFC 6455 section 5.5: a close reason fits in 123 bytes.
MAX_CLOSE_REASON = 123

OnInvalid = Union[str, Callable[..., Any]]  # noqa: UP007 (a runtime alias)


class Event(NamedTuple):
    """One named event of a route: its schema, its handler (a function, or
    None while a handler class provides the ``on_<name>`` method) and the
    schema of its reply (None: the reply is not described)."""

    schema: Schema
    handler: Handler | None
    reply: Schema | None


def event_method(name: str) -> str:
    """The handler-class method for event ``name``: ``on_`` and the name with
    every character that cannot be in an identifier as ``_`` (``chat.say``:
    ``on_chat_say``)."""
    return "on_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


class RouteTyping:
    """What one route declares about its values (``WSRoute.typing``).

    Read by the engine and by document generators (AsyncAPI):

    query, params, headers: ``Schema`` or None; validated at the handshake
        (headers by lower-cased name with ``-`` as ``_``: ``X-Token`` is
        field ``x_token``).
    body: ``Schema`` of incoming messages, or None.
    send: ``Schema`` of what the server sends, or None (checked by
        ``ws.send`` in debug mode, see ``Axeom(debug=...)``).
    events: ``{name: Event(schema, handler, reply)}`` in declaration order.
    discriminator: the field that names an event (``"type"``).
    on_invalid: ``"reply"``, ``"close"`` or a function ``f(ws, raw, errors)``.
    binary: ``"json"`` or ``"msgpack"``: how binary messages are decoded.
    """

    __slots__ = (
        "_decoders",
        "binary",
        "body",
        "discriminator",
        "events",
        "headers",
        "on_invalid",
        "params",
        "query",
        "send",
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        self.query = _maybe_adapt(options.get("query"))
        self.params = _maybe_adapt(options.get("params"))
        self.headers = _maybe_adapt(options.get("headers"))
        self.body = _maybe_adapt(options.get("body"))
        self.send = _maybe_adapt(options.get("send"))
        self.discriminator: str = options.get("discriminator", "type")
        if not isinstance(self.discriminator, str) or not self.discriminator:
            raise TypeError(f"discriminator must be a field name, got {self.discriminator!r}")
        self.on_invalid: OnInvalid = options.get("on_invalid", "reply")
        if not callable(self.on_invalid) and self.on_invalid not in INVALID_MODES:
            raise ValueError(
                f"on_invalid must be 'reply', 'close' or a function f(ws, raw, errors), "
                f"got {self.on_invalid!r}"
            )
        self.binary: str = options.get("binary", "json")
        if self.binary not in BINARY_MODES:
            raise ValueError(f"binary must be 'json' or 'msgpack', got {self.binary!r}")
        self.events: dict[str, Event] = {}
        self._decoders: tuple[Decoder, Decoder] | None = None  # body's, made once
        for name, schema in _event_types(options.get("events"), self.discriminator):
            self.add_event(schema, None, name=name)

    # -- registration ----------------------------------------------------------

    def add_event(
        self, type_: Any, handler: Handler | None, *, name: str | None = None, reply: Any = None
    ) -> str:
        """Declare (or give a handler to) an event; returns its name."""
        if self.body is not None:
            raise TypeError("give a route either body= (one message type) or events=, not both")
        schema = adapt(type_)
        name = name or event_name(schema, self.discriminator)
        known = self.events.get(name)
        if known is not None and not _same_source(known.schema.source, type_):
            raise TypeError(
                f"two event types are named {name!r} ({known.schema.name} and {schema.name}): "
                f"give each its own {self.discriminator!r} value, or name them in a dict"
            )
        reply_schema = _maybe_adapt(reply) if reply is not None else returned_schema(handler)
        if known is not None:
            handler = handler or known.handler
            reply_schema = reply_schema or known.reply
        self.events[name] = Event(schema, handler, reply_schema)
        return name

    @property
    def handshake(self) -> bool:
        """True when the handshake has anything to validate."""
        return self.query is not None or self.params is not None or self.headers is not None

    @property
    def messages(self) -> bool:
        """True when incoming messages are decoded and validated."""
        return self.body is not None or bool(self.events)

    def check_handlers(self, factory: type | None, message: Handler | None) -> None:
        """At registration: a handler class gives ``message`` on a ``body=``
        route, and an ``on_<event>`` for every event without a function
        handler (functions may still come: ``route.on``, the route used as a
        decorator)."""
        if factory is None:
            return
        if self.body is not None:
            if message is None:
                raise TypeError(
                    f"WebSocket handler class {factory.__name__} is on a route with body=: "
                    f"it needs a message(self, ws, msg) method"
                )
            return
        for name, event in self.events.items():
            method = getattr(factory, event_method(name), None)
            if event.handler is None and event.reply is None and method is not None:
                self.events[name] = event._replace(reply=returned_schema(method))
        missing = [
            event_method(name)
            for name, event in self.events.items()
            if event.handler is None and not callable(getattr(factory, event_method(name), None))
        ]
        if missing:
            raise TypeError(
                f"WebSocket handler class {factory.__name__} handles events by methods "
                f"named on_<event>: it lacks {', '.join(missing)}"
            )

    # -- the handshake -----------------------------------------------------------

    def validate_handshake(self, ctx: Context) -> tuple[Any, Any, Any]:
        """(query, params, headers) validated, or the raw ones where the route
        declares no schema; ``HTTPError`` 400 naming every failing field."""
        errors: list[dict[str, Any]] = []
        query = _validate_part("query", self.query, ctx.query, errors)
        params = _validate_part("params", self.params, ctx.params, errors)
        headers = _validate_part("headers", self.headers, ctx.headers, errors)
        if errors:
            raise HTTPError(
                400,
                "invalid handshake",
                json={"error": "invalid handshake", "errors": errors},
            )
        return query, params, headers

    def revalidate(self, upgrade: Upgrade) -> tuple[Any, Any, Any]:
        """The validated values of a handshake accepted in another process
        (only the raw values cross it). The same app accepted them there; if
        they fail here anyway (the code changed), the raw values are kept."""
        errors: list[dict[str, Any]] = []
        values = (
            _validate_part("query", self.query, upgrade.query, errors),
            _validate_part("params", self.params, upgrade.params, errors),
            _validate_part("headers", self.headers, upgrade.headers, errors),
        )
        if errors:
            logger.error("handshake of %s no longer validates here: %s", upgrade.path, errors)
            return upgrade.query, upgrade.params, upgrade.headers
        return values

    # -- messages ----------------------------------------------------------------

    def bind(self, bound: BoundHandlers, instance: object | None) -> BoundHandlers:
        """``bound`` with its ``message`` handler wrapped for this route's types."""
        if self.body is not None:
            if bound.message is not None:
                if self._decoders is None:  # once per route (a msgspec Decoder is built)
                    self._decoders = _decoders(self, self.body)
                bound.message = _body_handler(self, self.body, self._decoders, bound.message)
        elif self.events:
            bound.message = _event_handler(self, instance)
        return bound

    def send_check(self) -> Callable[[Any], None] | None:
        """For ``ws.send`` in debug mode: raise ``TypeError`` for an object
        that does not match ``send``."""
        schema = self.send
        if schema is None:
            return None

        def check(value: Any) -> None:
            try:
                schema.validate(to_builtins(value))
            except ValidationFailure as failure:
                raise TypeError(
                    f"ws.send: the message does not match the route's send type "
                    f"{schema.name}: {failure}"
                ) from None

        return check


def _maybe_adapt(obj: Any) -> Schema | None:
    return None if obj is None else adapt(obj)


def returned_schema(handler: Handler | None) -> Schema | None:
    """The reply type of an event handler from its return annotation, when
    that is a schema type (``-> Sum``); None for ``-> int``, ``-> None`` or none."""
    if handler is None:
        return None
    try:
        returned = get_type_hints(handler).get("return")
    except Exception:  # an annotation that does not resolve: no reply type, no error
        return None
    if returned is None or returned is type(None):
        return None
    try:
        return adapt(returned)
    except TypeError:
        return None


def _event_types(events: Any, discriminator: str) -> Iterable[tuple[str | None, Any]]:
    """(name or None, type) of each event given as ``events=``: a list, a
    union (``Say | Add``) or a dict ``{name: type}``."""
    if events is None:
        return []
    if isinstance(events, Mapping):
        return list(events.items())
    if get_origin(events) is Union or isinstance(events, types.UnionType):
        return [(None, t) for t in get_args(events)]
    if isinstance(events, list | tuple):
        return [(None, t) for t in events]
    raise TypeError(
        f"events must be a list of types, a union (Say | Add) or a dict {{name: type}}, "
        f"not {type(events).__name__}"
    )


def _same_source(declared: Any, given: Any) -> bool:
    """``given`` is the type an event was declared with (``route.on(Type)``
    after ``events=[Type]``), not another type of the same event name."""
    return declared is given or (isinstance(declared, dict) and declared == given)


def event_name(schema: Schema, discriminator: str) -> str:
    """The name of an event type: the one value its discriminator field
    allows (``type: Literal["say"]``, a msgspec tag, a JSON-Schema ``const``),
    else its name in lower case (``Say``: ``say``)."""
    value = schema.const(discriminator)
    return str(value) if value is not None else schema.name.lower()


def _validate_part(part: str, schema: Schema | None, raw: Any, errors: list[dict[str, Any]]) -> Any:
    if schema is None:
        return raw
    if part == "headers":
        raw = _header_fields(raw)
    try:
        return schema.validate_strings(raw)
    except ValidationFailure as failure:
        errors.extend({"in": part, **error} for error in failure.errors)
        return raw


def _header_fields(headers: Headers | Mapping[str, str]) -> dict[str, str]:
    """Headers as fields: lower-cased, ``-`` as ``_``, the first value of each."""
    fields: dict[str, str] = {}
    for name, value in headers.items():
        fields.setdefault(name.lower().replace("-", "_"), value)
    return fields


# -- the per-message wrappers ------------------------------------------------------


def _decoders(typing: RouteTyping, schema: Schema) -> tuple[Decoder, Decoder]:
    """The body's decoders of text and of binary messages."""
    text = schema.json_decoder()
    binary = schema.msgpack_decoder() if typing.binary == "msgpack" else text
    return text, binary


def _body_handler(
    typing: RouteTyping, schema: Schema, decoders: tuple[Decoder, Decoder], handler: Handler
) -> Handler:
    """``message(ws, raw)`` that gives the handler the decoded, valid value."""
    text, binary = decoders
    errors = schema.decode_errors
    failure = schema.failure

    if text is binary:  # JSON either way: the decoders take str and bytes alike

        def message_json(ws: WebSocket, raw: str | bytes) -> Any:
            try:
                value = text(raw)
            except errors as exc:
                return invalid(typing, ws, raw, failure(exc).errors, None)
            return handler(ws, value)

        return message_json

    def message(ws: WebSocket, raw: str | bytes) -> Any:
        try:
            value = text(raw) if type(raw) is str else binary(raw)
        except errors as exc:
            return invalid(typing, ws, raw, failure(exc).errors, None)
        return handler(ws, value)

    return message


def _event_handler(typing: RouteTyping, instance: object | None) -> Handler:
    """``message(ws, raw)`` that dispatches each event to its handler, in
    arrival order (the actor runs one message at a time), and replies with
    what a handler returned to a message that carried an id."""
    loads_binary = msgpack.unpackb if typing.binary == "msgpack" else json.loads
    discriminator = typing.discriminator
    events = typing.events
    table = {
        name: (target, event.schema.validate, event.reply)
        for name, event in events.items()
        if (target := _event_target(name, event, instance)) is not None
    }

    def message(ws: WebSocket, raw: str | bytes) -> Any:
        try:
            envelope = json.loads(raw) if type(raw) is str else loads_binary(raw)
        except (ValueError, msgpack.UnpackException, RecursionError) as exc:
            return invalid(typing, ws, raw, json_invalid(exc).errors, None)
        if type(envelope) is not dict:
            return invalid(typing, ws, raw, [_not_an_event(discriminator)], None)
        correlation = envelope.get(CORRELATION_KEY)
        name = envelope.get(discriminator)
        entry = table.get(name) if type(name) is str else None
        if entry is None:
            return invalid(
                typing, ws, raw, [_unknown_event(discriminator, name, table)], correlation
            )
        handler, validate, reply = entry
        try:
            value = validate(envelope)
        except ValidationFailure as failure:
            return invalid(typing, ws, raw, failure.errors, correlation)
        result = handler(ws, value)
        if correlation is None:
            return result
        return _reply(ws, typing, correlation, reply, result)

    return message


def _event_target(name: str, event: Event, instance: object | None) -> Handler | None:
    if event.handler is not None:
        return event.handler
    if instance is not None:
        return getattr(instance, event_method(name), None)  # type: ignore[no-any-return]
    return None


def _not_an_event(discriminator: str) -> ErrorDict:
    return {
        "loc": [],
        "msg": f"an event is a JSON object with a {discriminator!r} field",
        "type": "model_type",
    }


def _unknown_event(discriminator: str, name: Any, events: Mapping[str, Any]) -> ErrorDict:
    return {
        "loc": [discriminator],
        "msg": f"unknown event {name!r}; this route handles: {', '.join(events)}",
        "type": "unknown_event",
    }


def _reply(
    ws: WebSocket, typing: RouteTyping, correlation: Any, schema: Schema | None, result: Any
) -> Any:
    """Send what the handler returned (now, or once its coroutine ends)."""
    if result is None or type(result) in _NOT_AWAITED:
        return result
    if isinstance(result, Awaitable):
        return _reply_later(ws, typing, correlation, schema, result)
    _send_reply(ws, typing, correlation, schema, result)
    return None


async def _reply_later(
    ws: WebSocket, typing: RouteTyping, correlation: Any, schema: Schema | None, pending: Any
) -> None:
    result = await pending
    if result is not None and type(result) not in _NOT_AWAITED:
        _send_reply(ws, typing, correlation, schema, result)


def _send_reply(
    ws: WebSocket, typing: RouteTyping, correlation: Any, schema: Schema | None, value: Any
) -> None:
    data = schema.to_builtins(value) if schema is not None else to_builtins(value)
    if schema is not None and ws.app is not None and ws.app.debug:
        try:
            schema.validate(data)
        except ValidationFailure as failure:
            raise TypeError(
                f"the reply does not match the event's reply type {schema.name}: {failure}"
            ) from None
    envelope = {typing.discriminator: REPLY_TYPE, CORRELATION_KEY: correlation, "data": data}
    ws.send(json.dumps(envelope, separators=(",", ":")))


def invalid(
    typing: RouteTyping, ws: WebSocket, raw: str | bytes, errors: list[ErrorDict], correlation: Any
) -> Awaitable[Any] | None:
    """What the route's ``on_invalid`` says to do with an invalid message;
    counted in ``app.invalid_messages`` (``axeom status``)."""
    app = ws.app
    if app is not None:
        app.invalid_messages += 1
    mode = typing.on_invalid
    if mode == "reply":
        error: dict[str, Any] = {typing.discriminator: ERROR_TYPE, "error": "invalid message"}
        if correlation is not None:
            error[CORRELATION_KEY] = correlation
        error["errors"] = errors
        ws.send(json.dumps(error, separators=(",", ":"), default=str))
        return None
    if mode == "close":
        ws.close(INVALID_DATA, _close_reason(errors))
        return None
    return mode(ws, raw, errors)  # type: ignore[operator,no-any-return]


def _close_reason(errors: list[ErrorDict]) -> str:
    """``invalid message: <where>: <what>`` cut to what a close frame carries."""
    first = errors[0] if errors else {"loc": [], "msg": ""}
    where = ".".join(str(part) for part in first["loc"])
    reason = f"invalid message: {where + ': ' if where else ''}{first['msg']}"
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON:
        return reason
    return encoded[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."
