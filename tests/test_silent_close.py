"""A connection closed before it sent a byte (a load balancer's TCP health
check, a port scan, a failed TLS handshake) is not a request: it gets no
answer, no access line and no count, on every way a node reads heads. A
connection that left in the middle of its head is still answered 408."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests._processes import Server, running_axeom, status, wait_for

APP = "examples/echo.py:app"
MODES = {
    "trio-w0": ("--workers", "0"),
    "trio-w2": ("--workers", "2"),
    "asyncio-w0": ("--workers", "0", "--loop", "asyncio"),
}
READ_TIMEOUT = 10.0  # the server's answer, or its close, on a loaded machine
HEALTH_CHECKS = 5


def leave(port: int, sent: bytes) -> bytes:
    """Connect, send ``sent``, end our side; all the server wrote before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
        if sent:
            sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


@pytest.fixture(params=list(MODES))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with running_axeom(APP, "--port", "0", *MODES[request.param]) as running:
        yield running


def test_a_connection_closed_before_a_byte_is_not_a_request(server: Server) -> None:
    for _ in range(HEALTH_CHECKS):
        assert leave(server.port, b"") == b""  # closed without an answer
    assert leave(server.port, b"GET / HTTP/1.1\r\nHo").startswith(b"HTTP/1.1 408 ")
    wait_for(
        lambda: status(server.port)["totals"]["http_responses"]["4xx"] >= 1,
        READ_TIMEOUT,
        "the 408 counted",
    )
    assert status(server.port)["totals"]["http_responses"]["4xx"] == 1
    wait_for(lambda: '" 408' in server.text(), READ_TIMEOUT, "the 408's access line")
    assert server.text().count('" 408') == 1, server.text()
