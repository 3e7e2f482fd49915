"""The request limits of ``[server]`` (head size, request timeout, body size)
and request bodies, through a real ``axeom run`` with ``--workers 0`` (the
one process reads requests) and ``--workers 1`` (the acceptor does)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests._processes import Server, run_axeom, running_axeom
from tests._wsraw import RawClient, client_frame, upgrade_request

APP = "tests/apps/http_app.py:app"
CONFIG = """\
[server]
max_head_size = 1024
request_timeout = 1.0
max_body_size = 64
"""
# Well under the default request timeout (10 s): a 408 before it shows that
# the configured one (1 s) is in effect.
ANSWER_WITHIN = 5.0


@pytest.fixture(scope="module", params=[0, 1], ids=["workers-0", "workers-1"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = tmp_path_factory.mktemp("limits") / "axeom.toml"
    config.write_text(CONFIG)
    workers = str(request.param)
    with running_axeom(
        APP, "--port", "0", "--workers", workers, "--config", str(config)
    ) as running:
        yield running


def post(body: bytes, extra: str = "") -> bytes:
    head = f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n"
    return head.encode() + body


async def exchange(port: int, *parts: bytes) -> tuple[int, str, bytes]:
    """Send ``parts`` (one write each), then read the whole answer: status, head, body."""
    client = await RawClient.connect(port)
    try:
        with trio.fail_after(ANSWER_WITHIN):
            for part in parts:
                await client.send(part)
            status, head = await client.read_head()
            return status, head, await client.read_body()
    finally:
        await client.aclose()


async def test_a_json_body_reaches_the_route(server: Server) -> None:
    """A POST's JSON body is read (here after its head, in a second write) and
    answered with its content."""
    body = json.dumps({"n": 1, "text": "héllo"}).encode()
    status, _, answer = await exchange(
        server.port, post(b"", f"Content-Length: {len(body)}\r\n"), body
    )
    assert status == 200
    assert json.loads(answer) == {"got": {"n": 1, "text": "héllo"}, "bytes": len(body)}


async def test_a_body_that_is_not_json_is_a_400(server: Server) -> None:
    """``ctx.json()`` on a body that is not JSON answers 400, not 500."""
    status, _, answer = await exchange(server.port, post(b"{nope", "Content-Length: 5\r\n"))
    assert (status, answer) == (400, b"request body is not valid JSON\n")


async def test_a_body_over_max_body_size_is_a_413(server: Server) -> None:
    """``Content-Length`` over ``max_body_size`` is answered 413 without waiting for the body."""
    status, _, answer = await exchange(server.port, post(b"", "Content-Length: 65\r\n"))
    assert (status, answer) == (413, b"request body larger than 64 bytes\n")


async def test_a_chunked_body_is_a_411(server: Server) -> None:
    """Only ``Content-Length`` frames a body: ``Transfer-Encoding`` is answered 411."""
    status, _, _ = await exchange(
        server.port, post(b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n")
    )
    assert status == 411


async def test_a_body_on_an_upgrade_is_a_400(server: Server) -> None:
    """An upgrade request never has a body: its bytes would be read as frames."""
    request = upgrade_request("/chat", extra="Content-Length: 6\r\n") + client_frame(0x1, b"")
    status, _, answer = await exchange(server.port, request)
    assert status == 400
    assert b"must not have a body" in answer


async def test_a_head_over_max_head_size_is_a_431(server: Server) -> None:
    """A head of about 2 KiB passes the default limit (16 KiB), not the configured 1 KiB."""
    request = upgrade_request("/chat", extra="X-Big: " + "a" * 2000 + "\r\n")
    status, _, _ = await exchange(server.port, request)
    assert status == 431


@pytest.mark.parametrize(
    ("partial", "reason"),
    [
        (b"GET /chat HTTP/1.1\r\nHost: x\r\n", b"request head not received in time\n"),
        (post(b'{"n"', "Content-Length: 10\r\n"), b"request body not received in time\n"),
    ],
    ids=["head", "body"],
)
async def test_a_slow_request_is_a_408_after_request_timeout(
    server: Server, partial: bytes, reason: bytes
) -> None:
    """A head or body still incomplete after ``request_timeout`` (1 s here) is answered 408."""
    status, _, answer = await exchange(server.port, partial)
    assert (status, answer) == (408, reason)


async def test_the_websocket_route_still_works(server: Server) -> None:
    """With the limits set, a plain upgrade and its first frame (sent with the head) work."""
    client = await RawClient.connect(server.port)
    try:
        with trio.fail_after(ANSWER_WITHIN):
            await client.send(upgrade_request("/chat") + client_frame(0x1, b"hi"))
            status, _ = await client.read_head()
            assert status == 101
            assert await client.read_frame() == (0x1, b"Echo: hi")
    finally:
        await client.aclose()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_bad_limit_is_one_line_at_the_file_and_line(tmp_path: Path, workers: str) -> None:
    """A bad value stops ``axeom run`` before it serves: exit 2, one line naming
    the file, the line and the key."""
    config = tmp_path / "axeom.toml"
    config.write_text("[server]\nport = 0\nrequest_timeout = 0\n")
    result = run_axeom("run", APP, "--workers", workers, "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {config}:3: server.request_timeout must be a number > 0 and <= 600, got 0\n"
    )
