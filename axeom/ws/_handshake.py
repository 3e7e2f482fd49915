"""RFC 6455 section 4.2 server handshake rules, sans-IO.

The header grammar is the pinned websockets library's (its RFC 7230 list
parsers for ``Connection``, ``Upgrade``, ``Sec-WebSocket-Protocol`` and
``Sec-WebSocket-Extensions``, quoted strings and escapes included, and its
``accept_key``); what is Axeom's own is the answer to each broken rule, so a
client author can tell what went wrong from the response alone:

- not ``GET``: 405 with ``Allow: GET`` (the router gives this one);
- no ``Upgrade: websocket``: 426 with the headers a client needs to retry;
- ``Connection`` without ``upgrade``: 400;
- a header above that does not parse: 400 naming the header and where it broke;
- a body announced (``Transfer-Encoding``, ``Content-Length`` other than 0): 400;
- ``Sec-WebSocket-Version`` other than 13: 426 with ``Sec-WebSocket-Version: 13``;
- missing, repeated or malformed ``Sec-WebSocket-Key``: 400;
- ``Origin`` not allowed by the route's (or the security plugin's) policy: 403.

``Sec-WebSocket-Protocol`` and ``Sec-WebSocket-Extensions`` are parsed only
when the route has subprotocols or compression to negotiate; a malformed
one is then 400 as well.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Sequence
from typing import Any

from websockets.exceptions import InvalidHeaderFormat
from websockets.headers import parse_connection, parse_extension, parse_subprotocol, parse_upgrade
from websockets.utils import accept_key

from .._headers import Headers
from .._http1 import upgrade_body_refusal
from ..errors import BadRequest, Forbidden, HTTPError
from ._origin import OriginPolicy

__all__ = [
    "accept_key",
    "check_origin",
    "parse_extensions",
    "select_subprotocol",
    "validate_upgrade",
]

ExtensionOffer = tuple[str, list[tuple[str, str | None]]]

# Distinct header values whose parse is remembered: clients send a handful of
# spellings (one per browser or library), so a small cache catches nearly all
# of them and makes the websockets parsers cost a dict lookup per handshake.
PARSE_CACHE_SIZE = 256

_UPGRADE_HEADERS = [
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-version", "13"),
]


def validate_upgrade(headers: Headers) -> str:
    """Check an upgrade request's headers; return its ``Sec-WebSocket-Key``.

    Raises ``HTTPError`` with the status that fits the first broken rule.
    """
    if "websocket" not in _parse_all(headers, "upgrade"):
        raise HTTPError(
            426,
            "this is a WebSocket endpoint: send Upgrade: websocket",
            headers=_UPGRADE_HEADERS,
        )
    if "upgrade" not in _parse_all(headers, "connection"):
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


def _cached(
    parse: Callable[[str], list[Any]], *, lower: bool = False
) -> Callable[[str], tuple[Any, ...]]:
    """``parse`` remembered per header value (a value that fails is not kept);
    ``lower`` for case-insensitive tokens, compared lower-cased."""

    @functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
    def parse_value(value: str) -> tuple[Any, ...]:
        items = parse(value)
        return tuple(item.lower() for item in items) if lower else tuple(items)

    return parse_value


_PARSERS = {
    "upgrade": _cached(parse_upgrade, lower=True),
    "connection": _cached(parse_connection, lower=True),
    "sec-websocket-protocol": _cached(parse_subprotocol),
    "sec-websocket-extensions": _cached(parse_extension),
}


def _parse_all(headers: Headers, name: str) -> list[Any]:
    """Every item of every ``name`` header, in order (a list may span several
    header lines, RFC 9110 section 5.3); 400 if one does not parse."""
    parse = _PARSERS[name]
    try:
        return [item for value in headers.get_all(name) for item in parse(value)]
    except InvalidHeaderFormat as exc:
        raise BadRequest(str(exc)) from None  # names the header and where it broke


def _refuse_body(headers: Headers) -> None:
    """An upgrade request has no body: 400 for one that announces one (the
    servers that read heads refuse it earlier, by the same rule)."""
    refusal = upgrade_body_refusal(headers)
    if refusal is not None:
        raise BadRequest(refusal)


def check_origin(headers: Headers, policy: OriginPolicy | None) -> None:
    """Reject with 403 (and the reason) when ``policy`` refuses the request's origin."""
    if policy is None:
        return
    refusal = policy.refusal(headers)
    if refusal is not None:
        raise Forbidden(refusal)


def select_subprotocol(headers: Headers, supported: Sequence[str]) -> str | None:
    """The first subprotocol in the server's preference order that the client offered.

    Not parsed at all when the route supports none; 400 if malformed otherwise.
    """
    if not supported:
        return None
    offered = set(_parse_all(headers, "sec-websocket-protocol"))
    for name in supported:
        if name in offered:  # subprotocol names are compared exactly, as clients do
            return name
    return None


def parse_extensions(headers: Headers) -> list[ExtensionOffer]:
    """Every ``Sec-WebSocket-Extensions`` offer as (name, params), names lower-cased.

    ``permessage-deflate; client_max_window_bits, x-foo`` gives
    ``[("permessage-deflate", [("client_max_window_bits", None)]), ("x-foo", [])]``.
    A quoted parameter value is unescaped, and must then be a token
    (RFC 6455 section 9.1). Malformed offers raise 400.
    """
    offers = _parse_all(headers, "sec-websocket-extensions")
    return [(name.lower(), list(params)) for name, params in offers]
