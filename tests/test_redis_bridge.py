"""The Redis bridge's handling of what arrives from Redis (anyone can publish there)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from axeom import wire
from axeom_supervisor.redis_bridge import RedisBridge, decode_message, encode_message


class Recorder:
    """Stands in for the nng socket to the hub (the bridge only sends on it)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def asend(self, data: bytes) -> None:
        self.sent.append(wire.decode_batch(data))


def feed(payloads: list[tuple[str, bytes]]) -> list[Any]:
    hub = Recorder()

    async def main() -> None:
        bridge = RedisBridge("redis://127.0.0.1:1/0", "me", hub)  # type: ignore[arg-type]
        for channel, payload in payloads:
            await bridge.on_redis_message(channel, payload)

    asyncio.run(main())
    return hub.sent


def test_malformed_messages_are_dropped_not_fatal() -> None:
    """Bad JSON, wrong types and foreign shapes never raise out of the bridge."""
    bad = [
        ("axeom:counts", b'{"node":"x","counts":{"t":"1"}}'),
        ("axeom:counts", b'{"node":"x","counts":[1]}'),
        ("axeom:counts", b'{"node":["x"],"counts":{}}'),
        ("axeom:counts", b"not json"),
        ("axeom:topic:t", b"[1, 2]"),
        ("axeom:topic:t", b'{"binary": "***"}'),
        ("axeom:send", b'{"to": 5, "text": "x"}'),
    ]
    assert feed(bad) == []


def test_good_messages_reach_the_hub() -> None:
    """A topic message, a direct message and counts from another node are forwarded."""
    sent = feed(
        [
            ("axeom:topic:room", b'{"text": "hi"}'),
            ("axeom:send", json.dumps({"to": "ab-1", "text": "psst"}).encode()),
            ("axeom:counts", b'{"node": "other", "counts": {"room": 3}, "full": true}'),
            ("axeom:topic:room", encode_message("me", "mine").encode()),  # own: ignored
        ]
    )
    assert sent == [
        (wire.BRIDGE_SOURCE, ((wire.PUB, "room", "hi"),), {}),
        (wire.BRIDGE_SOURCE, ((wire.SEND, "ab-1", "psst"),), {}),
        (wire.BRIDGE_SOURCE, ((wire.RCOUNTS, {"room": 3}, None),), {}),
    ]


def test_binary_payloads_round_trip() -> None:
    """Binary messages travel base64-encoded in JSON and come back as bytes."""
    node, data, _ = decode_message(encode_message("n", b"\x00\xff"))  # type: ignore[misc]
    assert (node, data) == ("n", b"\x00\xff")
