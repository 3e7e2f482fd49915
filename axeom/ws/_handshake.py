"""RFC 6455 section 4.2 server handshake rules, sans-IO.

Each rule that a request can break has its own status and reason, so a
client author can tell what went wrong from the response alone:

- not ``GET``: 405 with ``Allow: GET`` (the router gives this one);
- no ``Upgrade: websocket``: 426 with the headers a client needs to retry;
- ``Connection`` without ``upgrade``: 400;
- a body announced (``Transfer-Encoding``, ``Content-Length`` other than 0): 400;
- ``Sec-WebSocket-Version`` other than 13: 426 with ``Sec-WebSocket-Version: 13``;
- missing, repeated or malformed ``Sec-WebSocket-Key``: 400;
- ``Origin`` not allowed by the route: 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

from .._headers import Headers
from ..errors import BadRequest, Forbidden, HTTPError

__all__ = [
    "accept_key",
    "check_origin",
    "parse_extensions",
    "select_subprotocol",
    "validate_upgrade",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

ExtensionOffer = tuple[str, list[tuple[str, str | None]]]

_UPGRADE_HEADERS = [
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-version", "13"),
]


def validate_upgrade(headers: Headers) -> str:
    """Check an upgrade request's headers; return its ``Sec-WebSocket-Key``.

    Raises ``HTTPError`` with the status that fits the first broken rule.
    """
    if "websocket" not in headers.tokens("upgrade"):
        raise HTTPError(
            426,
            "this is a WebSocket endpoint: send Upgrade: websocket",
            headers=_UPGRADE_HEADERS,
        )
    if "upgrade" not in headers.tokens("connection"):
        raise BadRequest("Connection header must include 'upgrade'")
    _refuse_body(headers)
    versions = headers.get_all("sec-websocket-version")
    if versions != ["13"]:
        got = ", ".join(versions) if versions else "none"
        raise HTTPError(
            426,
            f"unsupported Sec-WebSocket-Version ({got}); this server speaks 13",
            headers=[("sec-websocket-version", "13")],
        )
    keys = headers.get_all("sec-websocket-key")
    if len(keys) != 1:
        raise BadRequest(
            "missing Sec-WebSocket-Key header" if not keys else "repeated Sec-WebSocket-Key header"
        )
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise BadRequest("Sec-WebSocket-Key must be 16 bytes, base64-encoded")
    return key


def _refuse_body(headers: Headers) -> None:
    """An upgrade request has no body; refuse one that announces one.

    Whatever follows the head is read as WebSocket frames, so a body a proxy
    in front of us forwards as HTTP would become frames here (and frames it
    never saw as such): the two disagree on where the request ends, which
    is request smuggling. ``Content-Length: 0`` is harmless and some devices
    send it, so it passes, as in the websockets library.
    """
    if "transfer-encoding" in headers:
        raise BadRequest("a WebSocket upgrade request must not have Transfer-Encoding")
    if any(value.strip() != "0" for value in headers.get_all("content-length")):
        raise BadRequest("a WebSocket upgrade request must not have a body (Content-Length)")


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value proving we read ``key``."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def check_origin(headers: Headers, allowed: Sequence[str] | None) -> None:
    """Reject with 403 when the route lists origins and the request's is not one."""
    if allowed is None:
        return
    origin = headers.get("origin")
    if origin is None or origin not in allowed:
        raise Forbidden(f"origin {origin!r} is not allowed")


def select_subprotocol(headers: Headers, supported: Sequence[str]) -> str | None:
    """The first subprotocol in the server's preference order that the client offered."""
    if not supported:
        return None
    offered = {
        token.strip()
        for value in headers.get_all("sec-websocket-protocol")
        for token in value.split(",")
    }
    for name in supported:
        if name in offered:  # subprotocol names are compared exactly, as clients do
            return name
    return None


def parse_extensions(headers: Headers) -> list[ExtensionOffer]:
    """Parse every ``Sec-WebSocket-Extensions`` header into (name, params) offers.

    ``permessage-deflate; client_max_window_bits, x-foo`` gives
    ``[("permessage-deflate", [("client_max_window_bits", None)]), ("x-foo", [])]``.
    Malformed offers raise 400.
    """
    offers: list[ExtensionOffer] = []
    for value in headers.get_all("sec-websocket-extensions"):
        for item in _split_unquoted(value, ","):
            parts = [part.strip() for part in _split_unquoted(item, ";")]
            if not parts or not parts[0]:
                continue
            params: list[tuple[str, str | None]] = []
            for part in parts[1:]:
                name, sep, raw = part.partition("=")
                name = name.strip()
                if not name:
                    raise BadRequest(f"malformed Sec-WebSocket-Extensions header: {value!r}")
                params.append((name, _unquote(raw.strip()) if sep else None))
            offers.append((parts[0].lower(), params))
    return offers


def _split_unquoted(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value
