"""Typed routes under `axeom run` with real clients: the handshake validated in
the acceptor (400 there) and again in the worker that runs the socket, typed
messages and event replies, and invalid messages counted in `axeom status`."""

from __future__ import annotations

import json

import pytest
import websockets.exceptions
import websockets.sync.client as ws_sync

from tests._processes import run_axeom, running_axeom, status, wait_for

APP = "tests/apps/typed_app.py:app"
INVALID = 3  # invalid messages each test sends

pytestmark = pytest.mark.timeout(120)


def invalid_total(port: int) -> int:
    return int(status(port)["totals"].get("invalid_messages", -1))


@pytest.mark.parametrize("workers", [0, 2])
def test_typed_routes_in_a_running_server(workers: int) -> None:
    """Everything a typed route does, through a real server with and without workers."""
    with running_axeom(APP, "--port", "0", "--workers", str(workers)) as server:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            ws_sync.connect(f"{server.url}/notes/a?limit=x", open_timeout=10)
        assert refused.value.response.status_code == 400
        body = json.loads(refused.value.response.body)
        assert [(e["in"], e["loc"]) for e in body["errors"]] == [
            ("query", ["token"]),
            ("query", ["limit"]),
        ]
        with ws_sync.connect(f"{server.url}/notes/a?token=t&limit=4", open_timeout=10) as ws:
            ws.send('{"text": "hi"}')
            assert json.loads(ws.recv(timeout=10)) == {"text": "t/8/a: hi"}
            ws.send('{"text": 1}')
            assert json.loads(ws.recv(timeout=10))["type"] == "error"
        with ws_sync.connect(f"{server.url}/calc", open_timeout=10) as ws:
            ws.send('{"type": "add", "id": 5, "a": 2, "b": 2}')
            assert json.loads(ws.recv(timeout=10)) == {"type": "reply", "id": 5, "data": 4}
            ws.send('{"type": "say", "text": "yo"}')
            assert json.loads(ws.recv(timeout=10)) == {"text": "yo"}
            ws.send('{"type": "mul", "id": 6}')
            assert json.loads(ws.recv(timeout=10))["id"] == 6
            ws.send("not json")
            assert json.loads(ws.recv(timeout=10))["errors"][0]["type"] == "json_invalid"
        wait_for(
            lambda: invalid_total(server.port) == INVALID,
            20,
            f"{INVALID} invalid messages in axeom status",
            output=server.text,
        )
        shown = run_axeom("status", "--port", str(server.port), timeout=10)
        assert f"invalid messages (typed routes): {INVALID}" in shown.stdout
