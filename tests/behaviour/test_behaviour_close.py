"""How sockets end on every runtime: the close code for each bad frame, 1011 for
a raising handler beside a healthy socket, and the `close` handler exactly once."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from axeom.testing import WebSocketClosed
from tests._wsraw import client_frame
from tests.apps.behaviour_app import SMALL_MESSAGE_LIMIT
from tests.behaviour._client import TIMEOUT, Target, one_process_each, pid_of
from tests.behaviour._runtimes import Runtime, limitation

# Protocol errors the ASGI servers' own WebSocket layers catch before the app.
PROTOCOL_ERRORS = ("1002-reserved-opcode", "1007-invalid-utf8")
NO_CLOSE_FRAME = "a protocol error drops the connection without a close frame (1006)"
CLIENT_CLOSE_LOST = "reports a client's close as 1006: its code and reason never reach the app"

# How often a test looks for a close handler's record while it waits for it.
POLL = 0.02


async def recorded(record: Path, tag: str) -> list[str]:
    """The lines the `close` handler of the socket tagged ``tag`` wrote (once
    there is one: the handler runs after the client saw the close)."""
    path = record / tag
    with trio.fail_after(TIMEOUT):
        while not (path.exists() and path.read_text().endswith("\n")):
            await trio.sleep(POLL)
    return path.read_text().splitlines()


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (client_frame(0x3, b"x"), 1002, "invalid opcode"),
        (client_frame(0x1, b"\xff"), 1007, "invalid UTF-8 at position 0"),
        (
            client_frame(0x2, bytes(SMALL_MESSAGE_LIMIT + 1)),
            1009,
            f"message over {SMALL_MESSAGE_LIMIT} bytes",
        ),
    ],
    ids=["1002-reserved-opcode", "1007-invalid-utf8", "1009-too-big"],
)
@limitation("uvicorn", "closes on invalid UTF-8 itself, with no reason", "1007-invalid-utf8")
@limitation("hypercorn", NO_CLOSE_FRAME, *PROTOCOL_ERRORS)
@limitation("hypercorn-trio", NO_CLOSE_FRAME, *PROTOCOL_ERRORS)
@limitation("granian", "closes on a protocol error with no status code (1005)", *PROTOCOL_ERRORS)
@limitation("daphne", NO_CLOSE_FRAME, *PROTOCOL_ERRORS)
@limitation("daphne", "refuses close code 1009: it arrives as 1000", "1009-too-big")
async def test_bad_frame_closes_with_its_code(
    target: Target, record: Path, frame: bytes, code: int, reason: str
) -> None:
    """A bad frame closes the socket with its code and reason, and the `close`
    handler gets that code."""
    tag = uuid.uuid4().hex
    async with target.connect(f"/small?tag={tag}") as ws:
        await ws.send_raw(frame)
        assert await ws.closed() == (code, reason)
    assert await recorded(record, tag) == [f"{code} {reason}"]


@limitation("daphne", "drops close reasons (its own 1011 has none)")
async def test_raising_handler_closes_1011_beside_a_healthy_socket(
    target: Target, runtime: Runtime
) -> None:
    """A handler that raises closes its own socket with 1011 and no exception
    text; a socket in the same process keeps echoing, before and after."""
    async with AsyncExitStack() as stack:
        pair = next(
            group
            for group in await one_process_each(stack, target, "/echo", runtime.processes, 2)
            if len(group) >= 2
        )
        failing, healthy = pair[0], pair[1]
        assert await pid_of(failing) == await pid_of(healthy)
        await failing.send("raise")
        assert await failing.closed() == (1011, "internal error")
        with pytest.raises(WebSocketClosed):
            await failing.receive()
        for i in range(5):
            assert await healthy.ask(f"still here {i}") == f"still here {i}"


@limitation("uvicorn", "reports a dropped connection as 1005, not 1006")
@limitation("hypercorn", CLIENT_CLOSE_LOST)
@limitation("hypercorn-trio", CLIENT_CLOSE_LOST)
@limitation("granian", "passes no close reason to the app; reports a dropped connection as 1005")
@limitation("daphne", "answers a client's close 4000 with 1000; drops close reasons")
async def test_close_handler_runs_once_whatever_ends_the_socket(
    target: Target, record: Path
) -> None:
    """Client close, server close, a raising handler, a message too big and a
    dropped connection each run the `close` handler once, with the code."""
    tags = {way: uuid.uuid4().hex for way in ("client", "server", "raise", "too-big", "drop")}
    async with target.connect(f"/small?tag={tags['client']}") as ws:
        assert await ws.close(4000, "bye") == (4000, "bye")
    async with target.connect(f"/small?tag={tags['server']}") as ws:
        await ws.send("close")
        assert await ws.closed() == (4001, "closed by the server")
    async with target.connect(f"/small?tag={tags['raise']}") as ws:
        await ws.send("raise")
        assert await ws.closed() == (1011, "internal error")
    async with target.connect(f"/small?tag={tags['too-big']}") as ws:
        await ws.send(bytes(SMALL_MESSAGE_LIMIT + 1))
        assert (await ws.closed())[0] == 1009
    async with target.connect(f"/small?tag={tags['drop']}") as ws:
        assert await ws.ask("before the drop") == "before the drop"
        await ws.abort()
    records = {way: await recorded(record, tag) for way, tag in tags.items()}
    assert records == {
        "client": ["4000 bye"],
        "server": ["4001 closed by the server"],
        "raise": ["1011 internal error"],
        "too-big": [f"1009 message over {SMALL_MESSAGE_LIMIT} bytes"],
        "drop": ["1006 "],
    }
