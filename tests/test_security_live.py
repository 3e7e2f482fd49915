"""The security plugin's limits and refusals through a real ``axeom run``:
``--workers 2`` (the acceptor holds the limits, workers report socket ends
back to it) and ``--workers 0``, each on trio and with ``--loop asyncio``
(where a worker's sockets end on asyncio, its trio code a guest).

Clients come from several loopback addresses (127.0.0.x), so that per-address
limits can be told from the node's; each test reads the raw answer heads
(status, ``Retry-After``, the security headers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import trio

from tests._processes import Server, run_axeom, running_axeom, status, wait_for
from tests._wsraw import RawClient, client_frame, upgrade_request
from tests.apps.security_app import NODE, PER_ADDRESS

APP = "tests/apps/security_app.py:app"
# Well over what a loaded 2-core machine needs for a worker's report of a
# socket's end to reach the acceptor, or a heartbeat to reach ``axeom status``.
SETTLE = 20.0
ANSWER_WITHIN = 10.0


@pytest.fixture(
    scope="module",
    params=[("2", "trio"), ("0", "trio"), ("0", "asyncio"), ("2", "asyncio")],
    ids=["workers-2", "workers-0", "workers-0-asyncio", "workers-2-asyncio"],
)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    workers, loop = request.param
    with running_axeom(APP, "--port", "0", "--workers", workers, "--loop", loop) as running:
        yield running


async def connect(port: int, source: str) -> RawClient:
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    return RawClient(stream)


async def handshake(
    port: int, source: str, path: str = "/echo", extra: str = ""
) -> tuple[int, str, RawClient]:
    """Open a connection from ``source`` and ask for an upgrade: (status, head, client).
    A refused client has its body read; an accepted one stays open."""
    client = await connect(port, source)
    with trio.fail_after(ANSWER_WITHIN):
        await client.send(upgrade_request(path, extra=extra))
        code, head = await client.read_head()
        if code != 101:
            head += (await client.read_body()).decode()
            await client.aclose()
    return code, head, client


async def echoes(client: RawClient, text: str) -> bool:
    with trio.fail_after(ANSWER_WITHIN):
        await client.send(client_frame(0x1, text.encode()))
        return await client.read_frame() == (0x1, text.encode())


def header(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


# Refusals that last only until the server has counted earlier sockets closed
# (with workers, once a worker's report reached the acceptor).
WAIT_FOR_CLOSES = ("too many open sockets", "server full")


async def settled(
    port: int, source: str, path: str = "/echo", extra: str = ""
) -> tuple[int, str, RawClient]:
    """A handshake once the sockets closed before it no longer count: it is
    retried while refused by the socket caps (those refusals spend no token
    of the handshake rate)."""
    deadline = time.monotonic() + SETTLE
    while True:
        code, head, client = await handshake(port, source, path, extra)
        if not any(reason in head for reason in WAIT_FOR_CLOSES) or code == 101:
            return code, head, client
        assert time.monotonic() < deadline, f"still refused after closes: {head}"
        await trio.sleep(0.05)


@pytest.mark.timeout(90)
async def test_limits_per_address_and_node(server: Server) -> None:
    """Per address: a third open socket is 429 with Retry-After; the node:
    a fifth is 503 with Retry-After; both before any 101. Other addresses and
    the sockets already open are not disturbed, and a closed socket frees its
    place (with workers, once the worker reported it to the acceptor)."""
    port = server.port
    first = [(await settled(port, "127.0.0.1"))[2] for _ in range(PER_ADDRESS)]
    code, head, _ = await handshake(port, "127.0.0.1")
    assert code == 429, head
    assert header(head, "retry-after") == "5"
    assert "too many open sockets from this address (limit 2)" in head
    assert header(head, "x-content-type-options") == "nosniff"  # on refusals too

    second = []
    for _ in range(NODE - PER_ADDRESS):
        code, head, client = await settled(port, "127.0.0.2")
        assert code == 101, head  # another address is not limited by the first one's cap
        second.append(client)
    code, head, _ = await handshake(port, "127.0.0.3")
    assert code == 503, head
    assert header(head, "retry-after") == "5"
    assert "server full (4 sockets open)" in head

    for client in first + second:
        assert await echoes(client, "still here")

    await first[0].aclose()
    code, head, replacement = await settled(port, "127.0.0.1")
    assert code == 101, head
    assert await echoes(replacement, "again")
    for client in [replacement, first[1], *second]:
        await client.aclose()


@pytest.mark.timeout(90)
async def test_handshake_rate_origin_headers_and_status(server: Server) -> None:
    """Four handshakes per address, then 429 with the wait in Retry-After; a
    foreign origin is 403 with its reason, a listed wildcard one and a
    same-origin one pass; HTTP responses carry the headers; a dropped message
    and every refusal are counted in ``axeom status``."""
    port = server.port
    for _ in range(4):
        code, head, client = await settled(port, "127.0.0.4")
        assert code == 101, head
        await client.aclose()
    code, head, _ = await settled(port, "127.0.0.4")
    assert code == 429, head
    assert "too many handshakes from this address (limit 4 per 600s)" in head
    assert 1 <= int(header(head, "retry-after") or 0) <= 150

    code, head, _ = await settled(port, "127.0.0.5", extra="Origin: https://evil.example\r\n")
    assert code == 403, head
    assert "origin 'https://evil.example' is not allowed" in head
    assert header(head, "x-frame-options") == "SAMEORIGIN"
    for origin in ("https://app.example.com", "http://127.0.0.1"):
        code, head, client = await settled(port, "127.0.0.5", extra=f"Origin: {origin}\r\n")
        assert code == 101, (origin, head)
        assert header(head, "x-content-type-options") is None  # not on a 101
        await client.aclose()

    health = await connect(port, "127.0.0.6")
    with trio.fail_after(ANSWER_WITHIN):
        await health.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        code, head = await health.read_head()
    await health.aclose()
    assert code == 200
    assert header(head, "referrer-policy") == "no-referrer"
    assert header(head, "strict-transport-security") is None  # not over TLS

    code, head, limited = await settled(port, "127.0.0.6", "/limited")
    assert code == 101, head
    with trio.fail_after(ANSWER_WITHIN):
        for n in range(3):  # the third is over (2, 600): dropped, the socket stays
            await limited.send(client_frame(0x1, f"m{n}".encode()))
        assert await limited.read_frame() == (0x1, b"m0")
        assert await limited.read_frame() == (0x1, b"m1")
    await limited.aclose()

    def counted() -> bool:
        hits = status(port)["totals"].get("limits_hit", {})
        return (
            hits.get("handshake_rate_per_ip", 0) >= 1
            and hits.get("origin", 0) >= 1
            and hits.get("rate_limit", 0) >= 1
        )

    await trio.to_thread.run_sync(lambda: wait_for(counted, SETTLE, "limits hit in status"))
    text = (await trio.to_thread.run_sync(run_axeom, "status", "--port", str(port))).stdout
    line = next(line for line in text.splitlines() if line.startswith("limits hit: "))
    assert "handshake_rate_per_ip: " in line and "origin: " in line and "rate_limit: " in line
