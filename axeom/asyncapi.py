"""The AsyncAPI 3.0 document of an app: a pure function of its routes.

AsyncAPI is to a WebSocket API what OpenAPI is to an HTTP one. Each
WebSocket route becomes one channel (a WebSocket connection *is* the
channel: RFC 6455 has no topics inside a connection), whose address is the
route's pattern with ``:name`` written ``{name}``. The handshake's query and
headers go in the channel's ``ws`` binding (the AsyncAPI WebSockets binding
0.1.0, whose ``query`` and ``headers`` are JSON Schemas); the messages are
the channel's, and the operations say who sends them: ``receive`` for what
the server receives, ``send`` for what it sends, with a ``reply`` where an
event's handler answers.

Payload schemas come from each schema library's own generator
(``Schema.json_schema()``); their ``$defs`` are hoisted into
``components.schemas``, where a name appears once however many routes use
it. Nothing here is asked of the network: the server block is the address
the caller names (``axeom asyncapi --host/--port``, or the ``Host`` header of
the request that fetched it from ``app.asyncapi_route``).

Not described, and why: what a handler sends with ``ws.send`` on an
untyped route (the app never said), pub/sub topics (they are not addressable
from a client), and binary (msgpack) payloads beyond their schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .schema import Schema
from .ws._typed import CORRELATION_KEY, ERROR_TYPE, REPLY_TYPE, Event, RouteTyping

if TYPE_CHECKING:
    from ._app import Axeom
    from .ws._route import WSRoute

__all__ = [
    "ASYNCAPI_VERSION",
    "DEFAULT_HOST",
    "JSON",
    "asyncapi_document",
    "to_yaml",
]

ASYNCAPI_VERSION = "3.0.0"
WS_BINDING_VERSION = "0.1.0"  # the AsyncAPI WebSockets binding the ``ws`` objects follow
DEFAULT_HOST = "127.0.0.1:8000"  # where ``axeom run`` listens when given no --host/--port
DEFAULT_TITLE = "Axeom app"
DEFAULT_VERSION = "0.1.0"
JSON = "application/json"
SERVER_ID = "default"  # the one server's key: routes are served wherever the app runs
WILDCARD_PARAM = "rest"  # a trailing ``*`` of a pattern, written ``{rest}`` in the address
UNTYPED_MESSAGE = "message"  # the one message of a route without types
ERROR_MESSAGE = "error"  # what on_invalid="reply" sends
# Component keys must match ``^[\w\d.\-_]+$`` (AsyncAPI 3.0, components object).
_NOT_A_KEY = re.compile(r"[^\w.\-]")
_DEFS_PREFIXES = ("#/$defs/", "#/definitions/")


def asyncapi_document(
    app: Axeom,
    *,
    title: str = DEFAULT_TITLE,
    version: str = DEFAULT_VERSION,
    description: str | None = None,
    host: str = DEFAULT_HOST,
    protocol: str = "ws",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every WebSocket route of ``app``.

    ``host`` is ``HOST:PORT`` as a client dials it; ``protocol`` is ``ws``
    or ``wss`` (behind a TLS proxy). The result is plain JSON data: dump it
    with ``json.dumps`` or ``to_yaml``.
    """
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    builder = _Builder()
    for route in _ws_routes(app):
        builder.add_route(route)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": JSON,
        "servers": {SERVER_ID: {"host": host, "protocol": protocol}},
        "channels": builder.channels,
        "operations": builder.operations,
    }
    if builder.schemas.components:
        document["components"] = {"schemas": builder.schemas.components}
    return document


def to_yaml(document: Mapping[str, Any]) -> str:
    """``document`` as YAML, keys in the document's order (needs PyYAML:
    the ``asyncapi`` extra). Raises ``ImportError`` naming the extra."""
    try:
        import yaml
    except ImportError:
        raise ImportError("YAML output needs PyYAML: pip install 'axeom[asyncapi]'") from None

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # a reference used twice is written twice, not as an anchor

    return str(
        yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    )


def _ws_routes(app: Axeom) -> Iterator[WSRoute]:
    """The app's WebSocket routes in registration order (mounted apps' included)."""
    from .ws._route import WSRoute

    for _method, _pattern, endpoint in app.routes:
        if isinstance(endpoint, WSRoute):
            yield endpoint


# -- addresses ---------------------------------------------------------------


def channel_address(pattern: str) -> tuple[str, list[str]]:
    """``/chat/:room`` -> (``/chat/{room}``, ``["room"]``); a trailing ``*`` is ``{rest}``."""
    names: list[str] = []
    segments = []
    for segment in pattern.split("/"):
        if segment.startswith(":"):
            names.append(segment[1:])
            segment = "{" + segment[1:] + "}"
        elif segment == "*":
            names.append(WILDCARD_PARAM)
            segment = "{" + WILDCARD_PARAM + "}"
        segments.append(segment)
    return "/".join(segments), names


def _key(text: str) -> str:
    """A component or channel key from free text (a path, a type name)."""
    return _NOT_A_KEY.sub("_", text).strip("_") or "root"


def _channel_key(pattern: str) -> str:
    """``/chat/:room`` -> ``chat_room``: readable in a ``$ref`` and needs no escaping."""
    return _key(pattern.replace("/", "_").replace(":", "").replace("*", WILDCARD_PARAM))


# -- schemas -----------------------------------------------------------------


@dataclass
class SchemaComponents:
    """``components.schemas``: one entry per name, whichever route brought it.

    A library's schema keeps its nested types in ``$defs`` (msgspec, pydantic)
    or ``definitions``; inside an AsyncAPI document a ``$ref`` is resolved
    from the document's root, so they move here and their references are
    rewritten. Two different schemas under one name keep both, the second
    under ``Name_2``.
    """

    components: dict[str, Any] = field(default_factory=dict)

    def ref(self, name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
        """Register ``schema`` as ``name`` (and its ``$defs``); a ``$ref`` to it."""
        body, renames = self._hoist(schema)
        if set(body) == {"$ref"}:  # msgspec: the type itself is one of its $defs
            return body
        key = self._free_key(name, body, renames)
        self.components[key] = body
        return {"$ref": f"#/components/schemas/{key}"}

    def inline(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """``schema`` itself, its ``$defs`` registered here: for the places
        that read better with the schema in place (the handshake's query and
        headers, which the binding wants as an object with ``properties``)."""
        body, _ = self._hoist(schema)
        ref = body.get("$ref")
        if set(body) == {"$ref"} and isinstance(ref, str):
            target = self.components.get(ref.rsplit("/", 1)[-1])
            if isinstance(target, dict):
                return dict(target)
        return body

    def _hoist(self, schema: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """``schema`` without its ``$defs`` (now components), references rewritten."""
        body = dict(schema)
        defs: dict[str, Any] = {}
        for container in ("$defs", "definitions"):
            defs.update(body.pop(container, None) or {})
        renames: dict[str, str] = {}
        for def_name, def_schema in defs.items():
            renames[def_name] = self._free_key(def_name, def_schema, renames)
        for def_name, def_schema in defs.items():
            self.components[renames[def_name]] = _rewrite(def_schema, renames)
        return _rewrite(body, renames), renames

    def _free_key(self, name: str, schema: Any, renames: Mapping[str, str]) -> str:
        """``name`` as a key, or ``name_N`` if another schema already has it."""
        base = _key(name)
        key, n = base, 1
        while key in self.components:
            if self.components[key] == _rewrite(schema, renames):
                return key
            n += 1
            key = f"{base}_{n}"
        return key


def _rewrite(value: Any, renames: Mapping[str, str]) -> Any:
    """A copy of ``value`` whose local references point into ``components.schemas``.

    Also turns an OpenAPI-style ``discriminator`` object (pydantic's tagged
    unions) into the ``x-discriminator`` extension: in an AsyncAPI Schema
    ``discriminator`` is a property name string, with another meaning.
    """
    if isinstance(value, list):
        return [_rewrite(item, renames) for item in value]
    if not isinstance(value, dict):
        return _local_ref(value, renames) if isinstance(value, str) else value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "discriminator" and isinstance(item, dict):
            out["x-discriminator"] = _rewrite(item, renames)
        elif key == "$ref" and isinstance(item, str):
            out[key] = _local_ref(item, renames)
        elif key in ("properties", "$defs", "definitions", "patternProperties"):
            # Keys of these are names chosen by the user, never keywords.
            out[key] = {k: _rewrite(v, renames) for k, v in item.items()}
        else:
            out[key] = _rewrite(item, renames)
    return out


def _local_ref(text: str, renames: Mapping[str, str]) -> str:
    for prefix in _DEFS_PREFIXES:
        if text.startswith(prefix):
            name = text[len(prefix) :]
            return f"#/components/schemas/{renames.get(name, _key(name))}"
    return text


# -- channels and operations -------------------------------------------------


class _Builder:
    """Channels and operations, route by route."""

    def __init__(self) -> None:
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.schemas = SchemaComponents()

    def add_route(self, route: WSRoute) -> None:
        key = self._free_channel_key(_channel_key(route.pattern))
        address, names = channel_address(route.pattern)
        typing = route.typing
        channel: dict[str, Any] = {"address": address}
        if typing.messages:
            channel["description"] = _INVALID_POLICY.get(
                str(typing.on_invalid), _INVALID_POLICY["function"]
            )
        if names:
            channel["parameters"] = _parameters(names, typing.params)
        channel["bindings"] = {"ws": self._ws_binding(route)}
        channel["messages"] = {}
        self.channels[key] = channel
        if typing.body is not None:
            ref = self._message(channel, key, typing.body, _payload_of(self.schemas, typing.body))
            self.operations[f"{key}.receive"] = _operation("receive", key, [ref])
        elif typing.events:
            for name, event in typing.events.items():
                self._event(key, channel, typing, name, event)
        else:
            ref = self._untyped_message(key, channel)
            self.operations[f"{key}.receive"] = _operation("receive", key, [ref])
        self.operations[f"{key}.send"] = _operation("send", key, self._sent(key, channel, typing))

    def _free_channel_key(self, base: str) -> str:
        key, n = base, 1
        while key in self.channels:
            n += 1
            key = f"{base}_{n}"
        return key

    def _ws_binding(self, route: WSRoute) -> dict[str, Any]:
        """The handshake: a GET, its query and headers as JSON Schemas, the
        route's subprotocols as an extension (the binding has no field for
        them; ``Sec-WebSocket-Protocol`` is negotiated in the server's order
        of preference)."""
        binding: dict[str, Any] = {"method": "GET"}
        typing = route.typing
        if typing.query is not None:
            binding["query"] = self.schemas.inline(typing.query.json_schema())
        if typing.headers is not None:
            binding["headers"] = _header_names(self.schemas.inline(typing.headers.json_schema()))
        subprotocols = list(route.options.subprotocols or ())
        if subprotocols:
            binding["x-subprotocols"] = subprotocols
        binding["bindingVersion"] = WS_BINDING_VERSION
        return binding

    def _message(
        self,
        channel: dict[str, Any],
        key: str,
        schema: Schema,
        payload: dict[str, Any],
        **extra: Any,
    ) -> dict[str, str]:
        """Add a message named after ``schema`` to the channel; a reference to it."""
        name = _key(schema.name)
        channel["messages"][name] = {"name": schema.name, "payload": payload}
        return _message_ref(key, name)

    def _untyped_message(self, key: str, channel: dict[str, Any]) -> dict[str, str]:
        """One message of unknown payload (what an untyped route receives or sends)."""
        channel["messages"][UNTYPED_MESSAGE] = {
            "name": UNTYPED_MESSAGE,
            "summary": "A text or binary message; the route does not describe its payload.",
        }
        return _message_ref(key, UNTYPED_MESSAGE)

    def _sent(self, key: str, channel: dict[str, Any], typing: RouteTyping) -> list[dict[str, str]]:
        """The messages the server sends on its own: ``send=`` (or undescribed
        ones), and the error answer of ``on_invalid="reply"``."""
        sent = []
        if typing.send is not None:
            sent.append(
                self._message(channel, key, typing.send, _payload_of(self.schemas, typing.send))
            )
        else:
            sent.append(self._untyped_message(key, channel))
        if typing.messages and typing.on_invalid == "reply":
            channel["messages"][ERROR_MESSAGE] = self._error_message(typing)
            sent.append(_message_ref(key, ERROR_MESSAGE))
        return sent

    def _event(
        self,
        key: str,
        channel: dict[str, Any],
        typing: RouteTyping,
        name: str,
        event: Event,
    ) -> None:
        """One event: its message, a ``receive`` operation, and a ``reply``
        when its handler is declared to answer."""
        payload = _payload_of(self.schemas, event.schema)
        if event.schema.const(typing.discriminator) is None:
            payload = _with_discriminator(payload, typing.discriminator, name)
        message_key = _key(name)
        channel["messages"][message_key] = {
            "name": name,
            "title": event.schema.name,
            "payload": payload,
            "correlationId": _CORRELATION,
        }
        operation = _operation("receive", key, [_message_ref(key, message_key)])
        reply = event.reply  # reply= or the handler's return annotation
        if reply is not None:
            reply_key = f"{message_key}.reply"
            channel["messages"][reply_key] = {
                "name": reply_key,
                "title": f"Reply to {name}",
                "payload": self._reply_payload(typing, reply),
                "correlationId": _CORRELATION,
            }
            operation["reply"] = {
                "channel": {"$ref": f"#/channels/{key}"},
                "messages": [_message_ref(key, reply_key)],
            }
        self.operations[f"{key}.receive.{message_key}"] = operation

    def _reply_payload(self, typing: RouteTyping, reply: Schema) -> dict[str, Any]:
        """The reply envelope: ``{"type": "reply", "id": <the request's>, "data": ...}``."""
        data = _payload_of(self.schemas, reply)
        return {
            "type": "object",
            "properties": {
                typing.discriminator: {"const": REPLY_TYPE},
                CORRELATION_KEY: {"description": "The id the request carried."},
                "data": data,
            },
            "required": [typing.discriminator, CORRELATION_KEY, "data"],
        }

    def _error_message(self, typing: RouteTyping) -> dict[str, Any]:
        """The answer to an invalid message (``on_invalid="reply"``)."""
        name = "InvalidMessage"
        if typing.discriminator != "type":
            name = _key(f"{name}_{typing.discriminator}")
        self.schemas.components.setdefault(name, _error_schema(typing.discriminator))
        return {
            "name": ERROR_MESSAGE,
            "summary": "The answer to a message that is not valid JSON, not of a known "
            "event, or fails its type; the socket stays open.",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "correlationId": _CORRELATION,
        }


_CORRELATION = {
    "description": "A request that carries an id gets its reply (or error) with the same id.",
    "location": f"$message.payload#/{CORRELATION_KEY}",
}
_INVALID_POLICY = {
    "reply": "An invalid message is answered with an `error` message; the socket stays open.",
    "close": "An invalid message closes the socket with 1007 and a short reason.",
    "function": "An invalid message is handled by the app's own function.",
}


def _payload_of(schemas: SchemaComponents, schema: Schema) -> dict[str, Any]:
    return schemas.ref(schema.name, schema.json_schema())


def _with_discriminator(payload: dict[str, Any], field_name: str, name: str) -> dict[str, Any]:
    """An event type without its discriminator field: the envelope adds it."""
    tag = {"type": "object", "properties": {field_name: {"const": name}}, "required": [field_name]}
    return {"allOf": [payload, tag]}


def _error_schema(discriminator: str) -> dict[str, Any]:
    return {
        "title": "InvalidMessage",
        "type": "object",
        "properties": {
            discriminator: {"const": ERROR_TYPE},
            "error": {"const": "invalid message"},
            CORRELATION_KEY: {"description": "The id of the invalid message, if it had one."},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "loc": {
                            "type": "array",
                            "items": {"type": ["string", "integer"]},
                            "description": "Where: field names and list indexes.",
                        },
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                    "required": ["loc", "msg", "type"],
                },
            },
        },
        "required": [discriminator, "error", "errors"],
    }


def _parameters(names: list[str], params: Schema | None) -> dict[str, Any]:
    """Each address parameter, with what the route's ``params`` schema says of it."""
    fields: dict[str, Any] = {}
    if params is not None:
        fields = _top_properties(params.json_schema())
    return {name: _parameter(name, fields.get(name)) for name in names}


def _parameter(name: str, field: Any) -> dict[str, Any]:
    parameter: dict[str, Any] = {}
    if isinstance(field, dict):
        text = field.get("description") or field.get("title")
        if text:
            parameter["description"] = str(text)
        enum = field.get("enum") or ([field["const"]] if "const" in field else None)
        if enum and all(isinstance(v, str) for v in enum):
            parameter["enum"] = list(enum)
        if isinstance(field.get("default"), str):
            parameter["default"] = field["default"]
        examples = field.get("examples")
        if isinstance(examples, list) and all(isinstance(v, str) for v in examples):
            parameter["examples"] = examples
    if "description" not in parameter:
        parameter["description"] = (
            "The rest of the path (any number of segments)."
            if name == WILDCARD_PARAM
            else f"The path segment the route names :{name}."
        )
    return parameter


def _top_properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The properties of a schema, looking through a top-level ``$ref`` (msgspec)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        for prefix in _DEFS_PREFIXES:
            if ref.startswith(prefix):
                defs = schema.get("$defs") or schema.get("definitions") or {}
                schema = defs.get(ref[len(prefix) :], schema)
    properties = schema.get("properties")
    return dict(properties) if isinstance(properties, dict) else {}


def _header_names(schema: dict[str, Any]) -> dict[str, Any]:
    """A headers schema with the header names clients send: the schema's
    field ``x_token`` is the header ``x-token``."""
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k.replace("_", "-"): v for k, v in out["properties"].items()}
    if isinstance(out.get("required"), list):
        out["required"] = [str(k).replace("_", "-") for k in out["required"]]
    return out


def _message_ref(channel: str, message: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{message}"}


def _operation(action: str, channel: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": messages,
    }
