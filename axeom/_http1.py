"""HTTP/1.1 request heads and responses as bytes, sans-IO.

Only what a WebSocket server with a few HTTP routes needs: parse one request
head, tell how long its body is, and serialize a response. Strict where
laxness would be a smuggling or confusion risk (bare CR/LF, obs-fold, bad
tokens, a missing or repeated Host, a body on an upgrade, a Content-Length
that is not one plain number). A body is framed by ``Content-Length`` only:
``Transfer-Encoding`` is answered 411. Every response but a 101 closes the
connection, so nothing after one request is ever read as another.
"""

from __future__ import annotations

import re

from ._forwarded import TrustedProxies, forwarded_client
from ._headers import Headers
from ._messages import Request, Response

__all__ = [
    "HeadError",
    "body_length",
    "find_head_end",
    "parse_request_head",
    "serialize_response",
]

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/1\.[01]$")
# origin-form (RFC 9112 section 3.2.1): a path of visible ASCII; a URI has no
# byte above 0x7E, and one here would be read differently by a proxy in front.
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*")
# Controls other than HTAB are invalid in a field value (RFC 9110 section 5.5);
# CR, LF and NUL would be a smuggling risk, the rest are refused alike.
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADERS = 100
# What a trusted proxy says the client used, for the request to count as over TLS.
_SECURE_SCHEMES = frozenset({"https", "wss"})


class HeadError(ValueError):
    """A request that cannot be served as sent; ``status`` is what to answer:
    400 (malformed), 411 (``Transfer-Encoding``), 413 (body too large),
    431 (head too large) or 505 (not HTTP/1.1)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def find_head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending the head, or -1 if not there yet.

    ``start`` lets a caller resume the search over bytes it already scanned.
    Raises ``HeadError`` (400) as soon as the head holds a bare LF: such a
    head would never end with CRLF CRLF, so waiting for the rest would only
    hold the client until the deadline.
    """
    index = buffer.find(b"\r\n\r\n", max(0, start - 3))
    end = -1 if index < 0 else index + 4
    stop = len(buffer) if end < 0 else end
    # Every LF in the new bytes must close a CRLF pair; counting both in C
    # keeps this to two passes over the bytes that just arrived.
    lf_count = buffer.count(b"\n", start, stop)
    if lf_count and lf_count != buffer.count(b"\r\n", max(0, start - 1), stop):
        raise HeadError("request head lines must end with CRLF, not a bare LF")
    return end


def parse_request_head(
    head: bytes, client: tuple[str, int] | None = None, proxies: TrustedProxies | None = None
) -> Request:
    """Parse a complete head (request line, headers, blank line).

    ``client`` is the TCP peer; if it is one of ``proxies``, the request's
    client is the one its forwarding headers name (see ``axeom._forwarded``),
    and it is ``secure`` if they say the client used ``https``/``wss``:
    decided here, once, so that everything after (the per-address limits,
    ``ctx.client``, ``ws.remote_address``) sees the same address.
    """
    lines = head.split(b"\r\n")
    if len(lines) < 3 or lines[-1] != b"" or lines[-2] != b"":
        raise HeadError("request head must end with an empty line")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise HeadError("malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HeadError("malformed method")
    if not _VERSION.match(version):
        if version.startswith(b"HTTP/"):
            raise HeadError("HTTP version not supported", 505)
        raise HeadError("malformed HTTP version")
    if not _ORIGIN_FORM.fullmatch(target):
        raise HeadError("request target must be an origin-form path")
    header_lines = lines[1:-2]
    if len(header_lines) > MAX_HEADERS:
        raise HeadError(f"more than {MAX_HEADERS} header fields", 431)
    headers = Headers()
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise HeadError("malformed header field")
        value = value.strip(b" \t")
        if _BAD_VALUE_BYTE.search(value):
            raise HeadError("invalid character in header value")
        headers.add(name.decode("ascii"), value.decode("latin-1"))
    if version == b"HTTP/1.0":
        raise HeadError("WebSocket requires HTTP/1.1", 505)
    hosts = headers.get_all("host")
    if len(hosts) != 1:  # RFC 7230 section 5.4: exactly one Host in HTTP/1.1
        raise HeadError("missing Host header" if not hosts else "repeated Host header")
    secure = False
    if proxies and client is not None:
        forwarded = forwarded_client(headers, client, proxies)
        client = forwarded.client
        secure = forwarded.scheme in _SECURE_SCHEMES
    return Request(
        method.decode("ascii"), target.decode("latin-1"), headers, client, "1.1", secure=secure
    )


def upgrade_body_refusal(headers: Headers) -> str | None:
    """Why an upgrade request's head must be refused for announcing a body, or None.

    Whatever follows the head of an upgrade is read as WebSocket frames, so a
    body a proxy in front of us forwards as HTTP would become frames here (and
    frames it never saw as such): the two disagree on where the request ends,
    which is request smuggling. ``Content-Length: 0`` is harmless and some
    clients send it, so it passes, as in the websockets library. The one rule
    for the servers that read heads and for the ws plugin's handshake.
    """
    if "transfer-encoding" in headers:
        return "a WebSocket upgrade request must not have Transfer-Encoding"
    if any(value.strip() != "0" for value in headers.get_all("content-length")):
        return "a WebSocket upgrade request must not have a body (Content-Length)"
    return None


def body_length(request: Request, limit: int) -> int:
    """How many body bytes follow ``request``'s head, per its ``Content-Length``.

    Raises ``HeadError`` before a byte of the body is read:

    - 400 for an upgrade request (``Upgrade: websocket``) that announces a
      body (``upgrade_body_refusal``);
    - 411 for ``Transfer-Encoding`` (chunked bodies are not supported);
    - 400 for a repeated ``Content-Length`` or one that is not digits only;
    - 413 for a length over ``limit``.
    """
    headers = request.headers
    lengths = headers.get_all("content-length")
    if "websocket" in headers.tokens("upgrade"):
        refusal = upgrade_body_refusal(headers)
        if refusal is not None:
            raise HeadError(refusal)
        return 0
    if "transfer-encoding" in headers:
        raise HeadError(
            "Transfer-Encoding is not supported: send the body with Content-Length", 411
        )
    if not lengths:
        return 0
    if len(lengths) > 1:
        raise HeadError("repeated Content-Length header")
    value = lengths[0]
    if not (value.isascii() and value.isdigit()):
        raise HeadError("Content-Length must be a number of bytes")
    digits = value.lstrip("0")
    # Compared as text first: int() of thousands of digits is slow, then refused.
    if len(digits) > len(str(limit)) or int(digits or "0") > limit:
        raise HeadError(f"request body larger than {limit} bytes", 413)
    return int(digits or "0")


def serialize_response(response: Response, *, close: bool) -> bytes:
    """A response head (and body) as bytes; ``close`` adds ``Connection: close``."""
    lines = [f"HTTP/1.1 {response.status} {response.reason_phrase}"]
    has_length = False
    for name, value in response.headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
        lower = name.lower()
        if lower == "content-length":
            has_length = True
        if close and lower == "connection":
            continue
        lines.append(f"{name}: {value}")
    if response.status != 101:
        if not has_length and response.status != 204:
            lines.append(f"content-length: {len(response.body)}")
        if close:
            lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body
