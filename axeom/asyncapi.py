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
        body = dict(schema)
        renames: dict[str, str] = {}
        defs: dict[str, Any] = {}
        for container in ("$defs", "definitions"):
            defs.update(body.pop(container, None) or {})
        for def_name in defs:
            renames[def_name] = self._free_key(def_name, defs[def_name], renames)
        for def_name, def_schema in defs.items():
            self.components[renames[def_name]] = _rewrite(def_schema, renames)
        body = _rewrite(body, renames)
        if set(body) == {"$ref"}:  # msgspec: the type itself is one of its $defs
            return body
        key = self._free_key(name, body, renames)
        self.components[key] = body
        return {"$ref": f"#/components/schemas/{key}"}

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
        channel: dict[str, Any] = {"address": address, "messages": {}}
        if names:
            channel["parameters"] = {name: _parameter(name) for name in names}
        channel["bindings"] = {"ws": self._ws_binding(route)}
        self.channels[key] = channel
        self._untyped(key, channel)

    def _free_channel_key(self, base: str) -> str:
        key, n = base, 1
        while key in self.channels:
            n += 1
            key = f"{base}_{n}"
        return key

    def _ws_binding(self, route: WSRoute) -> dict[str, Any]:
        """The handshake: a GET, with the route's subprotocols as an extension
        (the binding has no field for them; ``Sec-WebSocket-Protocol`` is
        negotiated, in the server's order of preference)."""
        binding: dict[str, Any] = {"method": "GET"}
        subprotocols = list(route.options.subprotocols or ())
        if subprotocols:
            binding["x-subprotocols"] = subprotocols
        binding["bindingVersion"] = WS_BINDING_VERSION
        return binding

    def _untyped(self, key: str, channel: dict[str, Any]) -> None:
        """A route without types: one message of unknown payload, both ways."""
        channel["messages"][UNTYPED_MESSAGE] = {
            "name": UNTYPED_MESSAGE,
            "summary": "A text or binary message; the route does not describe its payload.",
        }
        ref = _message_ref(key, UNTYPED_MESSAGE)
        self.operations[f"{key}.receive"] = _operation("receive", key, [ref])
        self.operations[f"{key}.send"] = _operation("send", key, [ref])


def _parameter(name: str) -> dict[str, Any]:
    if name == WILDCARD_PARAM:
        return {"description": "The rest of the path (any number of segments)."}
    return {"description": f"The path segment the route names :{name}."}


def _message_ref(channel: str, message: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{message}"}


def _operation(action: str, channel: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": messages,
    }
