"""``examples/fastapi_mount.py`` on real uvicorn: FastAPI's HTTP API and
Axeom's mounted chat share the room, both ways."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator

import pytest
import trio

from axeom.testing import HandshakeRejected, open_client
from tests._asgi_servers import ASGIServer, running_asgi
from tests._processes import ROOT


@pytest.fixture(scope="module")
def server() -> Iterator[ASGIServer]:
    with running_asgi(
        "uvicorn", "fastapi_mount:app", "/rt", cwd=os.path.join(ROOT, "examples")
    ) as s:
        yield s


def http(server: ASGIServer, method: str, path: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=data,
        method=method,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def test_announcement_reaches_the_room(server: ASGIServer) -> None:
    """A POST to the FastAPI route reaches every socket of the room; the member
    count route sees them; chat messages go to the whole room."""
    async with open_client(server.url("/chat/lobby"), {"x-user": "ann"}) as ann:
        assert await ann.receive() == "* ann joined lobby"
        async with open_client(server.url("/chat/lobby?user=bob")) as bob:
            assert await bob.receive() == "* bob joined lobby"
            assert await ann.receive() == "* bob joined lobby"
            count = await trio.to_thread.run_sync(http, server, "GET", "/api/rooms/lobby")
            assert count == {"room": "lobby", "members": 2}
            reply = await trio.to_thread.run_sync(
                http, server, "POST", "/api/rooms/lobby/announce", {"text": "hello"}
            )
            assert reply == {"delivered": 2}
            assert await ann.receive() == "[announcement] hello"
            assert await bob.receive() == "[announcement] hello"
            await bob.send("hi all")
            assert await ann.receive() == "bob: hi all"


async def test_anonymous_join_is_refused_with_401(server: ASGIServer) -> None:
    """The chat's derive refuses before the upgrade, with its own status."""
    with pytest.raises(HandshakeRejected) as rejected:
        async with open_client(server.url("/chat/lobby")):
            pass
    assert rejected.value.status == 401
