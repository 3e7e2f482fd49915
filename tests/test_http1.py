"""Tests for axeom._http1: request head parsing, response serialization, head-end search."""

from __future__ import annotations

import pytest

from axeom import Headers, Request, Response
from axeom._http1 import (
    MAX_HEADERS,
    HeadError,
    body_length,
    find_head_end,
    parse_request_head,
    serialize_response,
)

VALID = (
    b"GET /chat/1?x=2 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"X-Multi: one\r\n"
    b"x-multi: two\r\n"
    b"Connection:Upgrade\r\n"
    b"X-Spaces: \t padded value \t\r\n"
    b"\r\n"
)


def test_valid_head_parses() -> None:
    """Method, target, path, query, client and headers are parsed from a valid head."""
    request = parse_request_head(VALID, ("1.2.3.4", 80))
    assert request.method == "GET"
    assert request.target == "/chat/1?x=2"
    assert request.path == "/chat/1"
    assert request.query == {"x": "2"}
    assert request.client == ("1.2.3.4", 80)
    assert request.http_version == "1.1"


def test_headers_are_multi_valued_and_case_insensitive() -> None:
    """Repeated headers keep every value in order; names match regardless of case."""
    headers = parse_request_head(VALID).headers
    assert headers["HOST"] == "example.com"
    assert headers.get("host") == "example.com"
    assert "UPGRADE" in headers
    assert headers["x-multi"] == "one"
    assert headers.get_all("X-MULTI") == ["one", "two"]
    assert headers["connection"] == "Upgrade"
    assert headers["x-spaces"] == "padded value"
    assert headers.items_list()[2:4] == [("x-multi", "one"), ("x-multi", "two")]


def test_head_with_only_host_parses() -> None:
    """A request line, a Host header and the blank line is a valid head."""
    request = parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (request.method, request.target, len(request.headers)) == ("GET", "/", 1)


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "missing Host"),
        (b"GET / HTTP/1.1\r\nX-Host: x\r\n\r\n", "missing Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "repeated Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "repeated Host"),
    ],
)
def test_missing_or_repeated_host_is_400(head: bytes, reason: str) -> None:
    """RFC 7230 section 5.4: an HTTP/1.1 request has exactly one Host header."""
    with pytest.raises(HeadError) as info:
        parse_request_head(head)
    assert (info.value.status, info.value.reason) == (400, f"{reason} header")


def test_latin1_header_values_round_trip() -> None:
    """Header value bytes above 0x7F are kept, decoded as latin-1."""
    request = parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\n\r\n")
    assert request.headers["x-name"] == "caf\xe9"


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "malformed request line"),
        (b"GET / HTTP/1.1\r\nHost: x\nX-Evil: 1\r\n\r\n", 400, "invalid character"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400, "empty line"),
        (b"GET / HTTP/1.1\n\n", 400, "empty line"),
        (b"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400, "invalid character"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", 400, "empty line"),
        (b"GET / HTTP/1.1\r\nHost: x", 400, "empty line"),
        (b"GET /\r\n\r\n", 400, "malformed request line"),
        (b"GET  / HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400, "malformed request line"),
        (b"G(T / HTTP/1.1\r\n\r\n", 400, "malformed method"),
        (b"GET / HTTX/1.1\r\n\r\n", 400, "malformed HTTP version"),
        (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", 505, "HTTP/1.1"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "not supported"),
        (b"GET http://example.com/ HTTP/1.1\r\n\r\n", 400, "origin-form"),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", 400, "origin-form"),
        (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", 400, "origin-form"),
        (b"GET /a\x7fb HTTP/1.1\r\n\r\n", 400, "origin-form"),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nBad(name): x\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", 400, "invalid character"),
        (b"GET / HTTP/1.1\r\nA: b\x0bc\r\n\r\n", 400, "invalid character"),
        (b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n", 400, "invalid character"),
        (b"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 400, "invalid character"),
        (b"GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "origin-form"),
    ],
)
def test_malformed_heads_raise_head_error(head: bytes, status: int, reason: str) -> None:
    """Each malformed head raises HeadError with the status to answer and a clear reason."""
    with pytest.raises(HeadError) as info:
        parse_request_head(head)
    assert info.value.status == status
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


def test_header_count_limit_gives_431() -> None:
    """More than MAX_HEADERS (100) header fields raise HeadError 431; exactly 100 is fine."""
    fields = b"Host: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 1))
    ok = parse_request_head(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    assert len(ok.headers) == MAX_HEADERS
    with pytest.raises(HeadError) as info:
        parse_request_head(b"GET / HTTP/1.1\r\n" + fields + b"X-Extra: v\r\n\r\n")
    assert info.value.status == 431


def _lines(raw: bytes) -> tuple[str, list[str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *headers = head.decode("latin-1").split("\r\n")
    return status, [h.lower() for h in headers], body


def test_serialize_rejection_adds_length_and_close() -> None:
    """A rejection gets content-length and connection: close, after the status line."""
    raw = serialize_response(Response.error(403, "nope"), close=True)
    status, headers, body = _lines(raw)
    assert status == "HTTP/1.1 403 Forbidden"
    assert "content-type: text/plain; charset=utf-8" in headers
    assert "content-length: 5" in headers
    assert headers[-1] == "connection: close"
    assert body == b"nope\n"


def test_serialize_close_replaces_existing_connection_header() -> None:
    """With close=True, a response's own Connection header is replaced, not duplicated."""
    response = Response(400, [("Connection", "keep-alive")], b"x")
    _, headers, _ = _lines(serialize_response(response, close=True))
    assert [h for h in headers if h.startswith("connection")] == ["connection: close"]


def test_serialize_keeps_explicit_content_length() -> None:
    """An explicit Content-Length is kept and not duplicated."""
    response = Response(200, [("Content-Length", "2")], b"ok")
    _, headers, _ = _lines(serialize_response(response, close=False))
    assert [h for h in headers if h.startswith("content-length")] == ["content-length: 2"]
    assert not any(h.startswith("connection") for h in headers)


def test_serialize_101_has_no_length_and_no_close() -> None:
    """A 101 carries its upgrade headers and neither content-length nor connection: close."""
    response = Response(
        101,
        [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ],
    )
    raw = serialize_response(response, close=False)
    assert raw == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"upgrade: websocket\r\n"
        b"connection: Upgrade\r\n"
        b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )


def test_serialize_204_has_no_content_length() -> None:
    """A 204 carries no Content-Length (RFC 9110 section 8.6: a server MUST NOT send one)."""
    _, headers, body = _lines(serialize_response(Response(204), close=True))
    assert body == b""
    assert not any(h.startswith("content-length") for h in headers)


def test_serialize_unknown_status_has_empty_reason() -> None:
    """A status without a standard phrase still serializes."""
    raw = serialize_response(Response(599, [], b""), close=True)
    assert raw.startswith(b"HTTP/1.1 599 \r\n")


@pytest.mark.parametrize(
    "header", [("x-evil", "a\r\nSet-Cookie: x=1"), ("x-evil\n", "a"), ("x", "a\rb")]
)
def test_serialize_refuses_header_injection(header: tuple[str, str]) -> None:
    """A header name or value with CR or LF raises instead of splitting the response."""
    with pytest.raises(ValueError, match="line break"):
        serialize_response(Response(200, [header], b""), close=True)


def test_find_head_end_in_one_chunk() -> None:
    """find_head_end returns the index just past the blank line, or -1 if absent."""
    assert find_head_end(VALID) == len(VALID)
    assert find_head_end(VALID + b"trailing") == len(VALID)
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n") == -1
    assert find_head_end(b"") == -1


@pytest.mark.parametrize("split", [1, 2, 3])
def test_find_head_end_resumes_across_a_split_terminator(split: int) -> None:
    """Resuming at the old buffer length finds a CRLFCRLF split across two chunks."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    first, second = head[: len(head) - 4 + split], head[len(head) - 4 + split :] + b"extra"
    assert find_head_end(first) == -1
    buffer = bytearray(first)
    scanned = len(buffer)
    buffer += second
    assert find_head_end(buffer, scanned) == len(head)


def test_find_head_end_finds_terminator_ending_after_any_resume_offset() -> None:
    """Any resume offset before the terminator's last byte still finds it (no bytes skipped)."""
    buffer = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for start in range(len(buffer)):
        assert find_head_end(buffer, start) == len(buffer), start


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\n",
        b"\n",
    ],
)
def test_find_head_end_refuses_a_bare_lf_at_once(head: bytes) -> None:
    """A bare LF in the head raises 400 as soon as it arrives, before the head ends
    (such a head would otherwise wait for a CRLF CRLF that never comes)."""
    with pytest.raises(HeadError) as info:
        find_head_end(head)
    assert info.value.status == 400 and "bare LF" in info.value.reason


def test_find_head_end_checks_every_chunk_and_only_the_head() -> None:
    """The check resumes like the search (a CRLF split across chunks is fine), and
    bytes after the head (a first WebSocket frame) may hold any byte, LF included."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for split in range(1, len(head)):
        assert find_head_end(head[:split]) == -1
        assert find_head_end(head, split) == len(head)
    assert find_head_end(head + b"\x81\x8a\n\n\n\n") == len(head)
    with pytest.raises(HeadError):
        find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\nA: b\n\r\n", 20)


def _with(*headers: tuple[str, str]) -> Request:
    return Request("POST", "/x", Headers([("host", "x"), *headers]))


UPGRADE = (("upgrade", "websocket"), ("connection", "Upgrade"))


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        ((), 0),
        ((("content-length", "0"),), 0),
        ((("content-length", "64"),), 64),
        ((("content-length", "0064"),), 64),
        ((*UPGRADE, ("content-length", "0")), 0),
        (UPGRADE, 0),
    ],
)
def test_body_length_from_content_length(headers: tuple[tuple[str, str], ...], length: int) -> None:
    """The body is as long as ``Content-Length`` says, up to the limit; none without one."""
    assert body_length(_with(*headers), 64) == length


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ((("content-length", "65"),), 413, "larger than 64 bytes"),
        ((("content-length", "9" * 5000),), 413, "larger than 64 bytes"),
        ((("transfer-encoding", "chunked"),), 411, "Transfer-Encoding is not supported"),
        (
            (("transfer-encoding", "chunked"), ("content-length", "3")),
            411,
            "Transfer-Encoding is not supported",
        ),
        ((("content-length", "3"), ("content-length", "3")), 400, "repeated Content-Length"),
        ((("content-length", "3, 3"),), 400, "must be a number"),
        ((("content-length", "+3"),), 400, "must be a number"),
        ((("content-length", "-1"),), 400, "must be a number"),
        ((("content-length", "\u00b2"),), 400, "must be a number"),  # a digit, not ASCII
        ((("content-length", ""),), 400, "must be a number"),
        ((*UPGRADE, ("content-length", "5")), 400, "must not have a body"),
        ((*UPGRADE, ("transfer-encoding", "chunked")), 400, "must not have Transfer-Encoding"),
    ],
)
def test_body_length_refusals(
    headers: tuple[tuple[str, str], ...], status: int, reason: str
) -> None:
    """Every body that cannot be read safely is refused from the head, with its status:
    413 too large, 411 chunked, 400 ambiguous or on an upgrade."""
    with pytest.raises(HeadError) as refused:
        body_length(_with(*headers), 64)
    assert refused.value.status == status
    assert reason in refused.value.reason


def test_a_zero_body_limit_refuses_every_body() -> None:
    """``max_body_size = 0`` allows requests without a body only."""
    assert body_length(_with(("content-length", "0")), 0) == 0
    with pytest.raises(HeadError, match="larger than 0 bytes"):
        body_length(_with(("content-length", "1")), 0)
