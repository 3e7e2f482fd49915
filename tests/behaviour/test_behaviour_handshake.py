"""Every way a handshake is refused, with the same status and body on every runtime."""

from __future__ import annotations

import pytest

from axeom.testing import HandshakeRejected
from tests.apps.behaviour_app import GOOD_ORIGIN
from tests.behaviour._client import Target
from tests.behaviour._runtimes import limitation

# Upgrade requests an ASGI server checks itself, answering with its own status and body.
SERVER_CHECKED = ("no-key", "version-12")
OWN_ANSWER = "answers a broken upgrade request itself, with its own status and body"

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: any 16 bytes in base64
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


def without(name: str, **changes: str) -> dict[str, str]:
    """The upgrade headers less ``name``, with ``changes`` applied."""
    return {**{k: v for k, v in UPGRADE.items() if k != name}, **changes}


@pytest.mark.parametrize(
    ("path", "headers", "status", "body"),
    [
        ("/nope", {}, 404, b"no route for /nope\n"),
        ("/echo", {"x-hook": "teapot"}, 418, b"short and stout"),
        ("/echo", {"x-deny": "401"}, 401, b"denied by derive: 401\n"),
        ("/echo", {"x-deny": "503"}, 503, b"denied by derive: 503\n"),
        (
            "/origin",
            {"Origin": "https://evil.example"},
            403,
            b"origin 'https://evil.example' is not allowed\n",
        ),
    ],
    ids=["no-route", "hook-response", "derive-401", "derive-503", "origin"],
)
@limitation("daphne", "no denial response extension: every refusal is a 403 with an empty body")
async def test_refused_by_the_app(
    target: Target, path: str, headers: dict[str, str], status: int, body: bytes
) -> None:
    """Routing, a hook's own response, `derive` raising and the origin check
    refuse the upgrade with their status and body."""
    with pytest.raises(HandshakeRejected) as refused:
        async with target.connect(path, headers):
            raise AssertionError("the socket opened")
    assert (refused.value.status, refused.value.body) == (status, body)


async def test_allowed_origin_opens(target: Target) -> None:
    """The origin check lets a listed origin through."""
    async with target.connect("/origin", {"Origin": GOOD_ORIGIN}) as ws:
        assert await ws.ask("ok") == "ok"


@pytest.mark.parametrize(
    ("method", "headers", "status", "body"),
    [
        ("GET", {}, 426, b"this is a WebSocket endpoint: send Upgrade: websocket\n"),
        (
            "GET",
            without("Upgrade"),
            426,
            b"this is a WebSocket endpoint: send Upgrade: websocket\n",
        ),
        ("GET", without("Sec-WebSocket-Key"), 400, b"missing Sec-WebSocket-Key header\n"),
        (
            "GET",
            without("Sec-WebSocket-Version", **{"Sec-WebSocket-Version": "12"}),
            426,
            b"unsupported Sec-WebSocket-Version (12); this server speaks 13\n",
        ),
        ("POST", UPGRADE, 405, b"method POST not allowed here (allowed: GET)\n"),
    ],
    ids=["plain-get", "no-upgrade", "no-key", "version-12", "post"],
)
@limitation("uvicorn", OWN_ANSWER, *SERVER_CHECKED, "post")
@limitation("hypercorn", OWN_ANSWER, *SERVER_CHECKED)
@limitation("hypercorn-trio", OWN_ANSWER, *SERVER_CHECKED)
@limitation("granian", OWN_ANSWER, *SERVER_CHECKED)
@limitation("granian", "never answers a POST upgrade request", "post")
@limitation("daphne", OWN_ANSWER, *SERVER_CHECKED, "post")
async def test_broken_upgrade_requests(
    target: Target, method: str, headers: dict[str, str], status: int, body: bytes
) -> None:
    """A request that is not a valid upgrade is answered with the engine's status and reason."""
    assert await target.request(method, "/echo", headers) == (status, body)
