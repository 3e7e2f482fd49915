"""ASGI scopes to engine requests and engine responses to ASGI messages, sans-IO.

The engine routes on the path *inside* the app: a server or a framework that
mounts the app under a prefix says so in ``root_path`` (Starlette's and
FastAPI's ``Mount``, ``uvicorn --root-path``), and that prefix is cut off
before routing. Whether ``path`` still carries the prefix differs between
servers and versions (the ASGI spec changed), so it is cut only when there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from .._headers import Headers
from .._messages import Request, Response

__all__ = [
    "HANDSHAKE_HEADERS",
    "accept_message",
    "client_address",
    "denial_messages",
    "request_from_scope",
    "response_messages",
    "split_root",
]

# The handshake headers an ASGI server writes itself: the engine computes them
# too (it validated the key and negotiated), but only the server's copy may go
# out, or the 101 would carry them twice. Compression is the server's as well.
HANDSHAKE_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
# What a server may not have passed on to a websocket scope (an HTTP/2
# extended CONNECT has no Upgrade header): the engine's RFC 6455 checks need
# them, and the server already did the same checks before making the scope.
_IMPLIED_UPGRADE = (
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-version", "13"),
    # Any valid key: the server computes the real Sec-WebSocket-Accept.
    ("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA=="),
)


def split_root(scope: dict[str, Any]) -> tuple[str, str]:
    """(mount prefix, request-target inside the app, still percent-encoded)."""
    root: str = scope.get("root_path", "") or ""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope.get("path", "/"))
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    query = scope.get("query_string", b"")
    target = f"{path}?{query.decode('latin-1')}" if query else path
    return root, target


def client_address(scope: dict[str, Any]) -> tuple[str, int] | None:
    """The peer's (host, port); servers give a tuple, a list (daphne) or
    strings (granian), or nothing (a Unix socket)."""
    client = scope.get("client")
    if not client:
        return None
    try:
        return str(client[0]), int(client[1])
    except (TypeError, ValueError, IndexError):
        return None


def request_from_scope(scope: dict[str, Any], target: str, body: bytes = b"") -> Request:
    """The engine's request for an ``http`` or ``websocket`` scope."""
    headers = Headers(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    method = "GET" if scope["type"] == "websocket" else scope["method"]
    if scope["type"] == "websocket":
        for name, value in _IMPLIED_UPGRADE:
            if name not in headers:
                headers.add(name, value)
    version = scope.get("http_version", "1.1")
    secure = scope.get("scheme") in _SECURE_SCHEMES
    return Request(method, target, headers, client_address(scope), version, body, secure)


# The scope's ``scheme`` when the ASGI server received the request over TLS.
_SECURE_SCHEMES = ("https", "wss")


def encoded_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Headers as ASGI wants them; ``UnicodeEncodeError`` for an unsendable one."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _with_length(response: Response) -> list[tuple[bytes, bytes]]:
    headers = encoded_headers(response.headers)
    if response.status != 204 and not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
    return headers


def response_messages(response: Response, prefix: str = "http") -> list[dict[str, Any]]:
    """The start and body messages of an HTTP response (``prefix`` ``"http"``),
    or of a WebSocket denial (``"websocket.http"``, the ASGI denial response
    extension). A header that cannot be sent raises (the caller answers 500)."""
    headers = _with_length(response)
    if prefix != "http" and not any(name == b"connection" for name, _ in headers):
        # A refused upgrade ends its connection, as on the native server (granian
        # would otherwise keep it open for another request).
        headers.append((b"connection", b"close"))
    return [
        {"type": f"{prefix}.response.start", "status": response.status, "headers": headers},
        {"type": f"{prefix}.response.body", "body": response.body},
    ]


def denial_messages(scope: dict[str, Any], response: Response) -> list[dict[str, Any]]:
    """How to refuse a handshake: the engine's response itself where the server
    offers the denial response extension, else a close before accept, which
    the server answers 403 (the spec's rule for a server without it)."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        return response_messages(response, "websocket.http")
    return [{"type": "websocket.close", "code": 1000}]


def accept_message(response: Response) -> dict[str, Any]:
    """``websocket.accept`` for the engine's 101: the chosen subprotocol and the
    headers the app added (hooks' ``set_header``), not the handshake's own."""
    upgrade = response.upgrade
    assert upgrade is not None
    extra = [(k, v) for k, v in response.headers if k.lower() not in HANDSHAKE_HEADERS]
    return {
        "type": "websocket.accept",
        "subprotocol": upgrade.subprotocol,
        "headers": encoded_headers(extra),
    }
