"""The engine's input and output: a parsed request and a response.

Both are plain data. An adapter builds a ``Request`` from whatever it read
(a request head and its body from a socket, a test call) and turns the
``Response`` back into bytes; the engine never sees a socket. (An ASGI
adapter, building it from a scope and events, is planned but not yet written.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from ._headers import Headers
from .schema._encode import encode_object, encoders

if TYPE_CHECKING:
    from .ws._upgrade import Upgrade

__all__ = ["Request", "Response", "to_message"]


@dataclass(slots=True)
class Request:
    """One HTTP request: its head, and its body if it had one.

    ``target`` is the request-target as sent (``/chat/1?x=2``); ``path`` and
    ``query`` are derived from it. ``client`` is the peer's (host, port) when
    the adapter knows it. ``body`` is read whole by the adapter before the
    engine sees the request (within the server's ``max_body_size``); an
    upgrade request never has one.
    """

    method: str
    target: str
    headers: Headers = field(default_factory=Headers)
    client: tuple[str, int] | None = None
    http_version: str = "1.1"
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target's path, still percent-encoded (routing splits before decoding)."""
        return self.target.split("?", 1)[0] or "/"

    @property
    def query_string(self) -> str:
        _, sep, query = self.target.partition("?")
        return query if sep else ""

    @property
    def query(self) -> dict[str, str]:
        """Decoded query parameters; a repeated key keeps its last value."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


@dataclass(slots=True)
class Response:
    """An HTTP response, or with status 101 an accepted WebSocket upgrade.

    For a 101, ``upgrade`` carries everything an adapter needs to run the
    socket (route, handlers, params, ``ws.data``, negotiated subprotocol and
    extensions); ``body`` is empty.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    upgrade: Upgrade | None = None

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        """A ``text/plain`` response."""
        hdrs = [("content-type", "text/plain; charset=utf-8"), *(headers or [])]
        return cls(status, hdrs, text.encode())

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        """An ``application/json`` response."""
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, [("content-type", "application/json")], body)

    @classmethod
    def error(
        cls, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        """A rejection: status with the reason as a plain-text body."""
        return cls.text(reason + "\n", status, headers)

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        """Replace every ``name`` header by one with ``value``."""
        lowered = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lowered]
        self.headers.append((name, value))


def decode_segment(segment: str) -> str:
    """Percent-decode one path segment (after routing, so ``%2F`` stays inside it)."""
    return unquote(segment) if "%" in segment else segment


def to_message(data: Any) -> str | bytes:
    """A WebSocket message from what a user passed: str (text), bytes-like
    (binary), a dict/list (JSON text), or a pydantic model, msgspec Struct or
    dataclass (JSON text); one rule for send and publish."""
    encode = encoders.get(type(data))
    if encode is not None:  # a type seen before: no isinstance chain (~1 us each on objects)
        return encode(data)
    if isinstance(data, str | bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, dict | list):
        return json.dumps(data, separators=(",", ":"))
    return encode_object(data)  # TypeError for anything else
