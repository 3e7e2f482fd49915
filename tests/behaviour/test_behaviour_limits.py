"""Per-socket message rate limits on every runtime: over ``rate_limit`` or
``byte_rate_limit`` the socket closes with 1008, or with ``on_rate_limit="drop"``
the message is skipped and the socket stays open."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests._wsraw import client_frame
from tests.behaviour._client import Target
from tests.behaviour._runtimes import limitation
from tests.behaviour.test_behaviour_close import recorded

CLOSE_1008 = "refuses close code 1008: it arrives as 1000, without its reason"


def burst(*messages: str) -> bytes:
    """Several text frames in one write: they arrive faster than any refill."""
    return b"".join(client_frame(0x1, m.encode()) for m in messages)


@limitation("daphne", CLOSE_1008)
async def test_over_the_message_rate_closes_1008(target: Target) -> None:
    """Three messages pass (``rate_limit=(3, 600)``); the fourth closes the
    socket with 1008 and is not handled."""
    async with target.connect("/rate-close") as ws:
        await ws.send_raw(burst("m0", "m1", "m2", "m3", "m4"))
        assert await ws.receive_many(3) == ["m0", "m1", "m2"]
        assert await ws.closed() == (1008, "rate limit exceeded")


@limitation("daphne", CLOSE_1008)
async def test_over_the_byte_rate_closes_1008(target: Target) -> None:
    """100 bytes pass (``byte_rate_limit=(100, 600)``); a message that would
    go over them closes the socket with 1008."""
    async with target.connect("/byte-rate") as ws:
        await ws.send_raw(burst("a" * 60, "b" * 40, "c"))
        assert await ws.receive_many(2) == ["a" * 60, "b" * 40]
        assert await ws.closed() == (1008, "byte rate limit exceeded")


@limitation("daphne", "drops close reasons")
async def test_over_the_message_rate_drops_with_drop(target: Target, record: Path) -> None:
    """With ``on_rate_limit="drop"`` the messages over the rate are never
    handled, and the socket stays open: the client's close is answered as usual."""
    tag = uuid.uuid4().hex
    async with target.connect(f"/rate-drop?tag={tag}") as ws:
        await ws.send_raw(burst("m0", "m1", "m2", "m3", "m4"))
        assert await ws.receive_many(3) == ["m0", "m1", "m2"]
        assert await ws.close(1000, "done") == (1000, "done")
    assert await recorded(record, tag) == ["m0 m1 m2"]
