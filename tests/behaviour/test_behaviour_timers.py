"""Per-socket timers and the first bytes of a socket, on every runtime."""

from __future__ import annotations

import trio

from tests._wsraw import client_frame
from tests.apps.behaviour_app import KEEPALIVE_IDLE_TIMEOUT, PING_INTERVAL
from tests.behaviour._client import Target
from tests.behaviour._runtimes import limitation

# Under ASGI the server owns the timers, and none of these closes an idle WebSocket.
NO_IDLE_TIMEOUT = "idle_timeout is the server's, and it has none for WebSockets"
# How often a test looks at what its client counted while it waits.
POLL = 0.02
# Pings a quiet socket waits for (a quarter of an idle timeout of them: short).
PINGS = int(KEEPALIVE_IDLE_TIMEOUT / PING_INTERVAL / 4)
EARLY_FRAMES_400 = "answers 400 to an upgrade request with frames right behind it"
# The app's accept (any ASGI app's) reaches hypercorn between the two writes
# of that 400; its h11 connection raises on the second, out of the trio
# worker's task group (https://github.com/pgjones/hypercorn/issues/225).
EARLY_FRAMES_400_THEN_EXIT = (
    f"{EARLY_FRAMES_400}; then its trio worker process exits (h11 raises LocalProtocolError:"
    " the app's accept arrived while that 400 was being written) and hypercorn's main"
    " process exits with it, dropping every connection (pgjones/hypercorn#225)"
)


@limitation("uvicorn", NO_IDLE_TIMEOUT)
@limitation("hypercorn", NO_IDLE_TIMEOUT)
@limitation("hypercorn-trio", NO_IDLE_TIMEOUT)
@limitation("granian", NO_IDLE_TIMEOUT)
@limitation("daphne", NO_IDLE_TIMEOUT)
async def test_idle_socket_is_closed_1001(target: Target) -> None:
    """No frame from the client for `idle_timeout`: the server closes with 1001."""
    async with target.connect("/idle") as ws:
        assert await ws.closed() == (1001, "idle timeout")


@limitation("granian", "sends no WebSocket pings")
@limitation("daphne", "pings only every --ping-interval whole seconds (20 s), checked every 2 s")
async def test_keepalive_pings_keep_a_quiet_socket_open(target: Target) -> None:
    """With `ping_interval` under `idle_timeout`, the server pings a quiet client
    every interval, and the socket stays open."""
    async with target.connect("/keepalive") as ws:
        with trio.fail_after(ws.timeout):
            while ws.ws.pings_received < PINGS:
                await trio.sleep(POLL)
        assert not ws.ws.closed
        assert await ws.ask("still open") == "still open"


@limitation("uvicorn", "drops the bytes that arrive with the upgrade request")
@limitation("hypercorn", EARLY_FRAMES_400)
@limitation("hypercorn-trio", EARLY_FRAMES_400_THEN_EXIT, server_exits=True)
@limitation("daphne", "drops the bytes that arrive with the upgrade request")
async def test_frames_sent_with_the_upgrade_request_are_not_lost(target: Target) -> None:
    """Frames the client writes right behind its upgrade request (before the
    101: with workers, they travel with the hand-off) are handled in order."""
    messages = [f"early {i}" for i in range(3)]
    early = b"".join(client_frame(0x1, m.encode()) for m in messages)
    async with target.connect("/echo", early=early) as ws:
        assert await ws.receive_many(len(messages)) == messages
        assert await ws.ask("late") == "late"
