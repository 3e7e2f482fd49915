"""``python -m axeom_supervisor.redis_bridge OPTIONS_JSON``: this node's link to Redis.

A supervised child of ``axeom run --workers N --pubsub redis://...``. It runs
asyncio because the Redis client (redis-py's asyncio API) does; it talks to
the hub over nng, so no asyncio code runs inside the trio processes.

Channel layout (anything that can PUBLISH to Redis can publish into a topic):

``axeom:topic:<topic>``
    A message for the subscribers of ``<topic>``. Payload: JSON
    ``{"text": "..."}`` for a text message or ``{"binary": "<base64>"}`` for a
    binary one, with ``"node"`` naming the sending node (nodes ignore their
    own messages; external producers leave it out). For example
    ``PUBLISH axeom:topic:room:1 '{"text": "hello"}'``.
``axeom:send``
    A message for one socket: ``{"to": "<socket id>", "text": ...}`` (or
    ``"binary"``); the node that has the socket delivers it.
``axeom:counts``
    Each node's subscriber counts, ``{"node": ..., "counts": {topic: n}}``,
    sent when they change and in full every few seconds; a node not heard
    from for 10 s no longer counts.

These channels are a public contract (non-Axeom clients publish into
them), so they are not versioned like ``axeom.wire``'s formats: they change
only compatibly. What the bridge exchanges with the hub is ``axeom.wire``'s.

Redis pub/sub channels are shared by every database of a server, so the
database number in the URL does not isolate deployments: give each its
own Redis. Delivery is at most once: while Redis is unreachable, messages
for other nodes are dropped (local delivery goes on), the outage is logged
once, and the bridge reconnects with backoff and resubscribes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import pynng

from axeom import ipc, wire
from axeom.logs import LogSettings
from axeom.process import (
    EXIT_CANNOT_START,
    REPORT_SEND_TIMEOUT_MS,
    child_settings,
    configure_logging,
    heartbeat_forever,
    raise_fd_limit,
)
from axeom.pubsub import merge_counts
from axeom.wire import COUNTS, PUB, RCOUNTS, SEND, SYNC, SYNCED, TOPICS, Operation

logger = logging.getLogger("axeom.redis")

TOPIC_PREFIX = "axeom:topic:"
SEND_CHANNEL = "axeom:send"
COUNTS_CHANNEL = "axeom:counts"
FULL_COUNTS_EVERY = 3.0
NODE_EXPIRY = 10.0
BACKOFF_INITIAL, BACKOFF_MAX = 0.1, 5.0


def encode_message(node: str, data: str | bytes, **extra: Any) -> str:
    body: dict[str, Any] = {"node": node, **extra}
    if isinstance(data, str):
        body["text"] = data
    else:
        body["binary"] = base64.b64encode(data).decode("ascii")
    return json.dumps(body, separators=(",", ":"))


def decode_message(payload: bytes | str) -> tuple[str | None, str | bytes, dict[str, Any]] | None:
    """(sending node, data, the whole body), or None if malformed."""
    try:
        body = json.loads(payload)
        if not isinstance(body, dict):
            return None
        if "text" in body:
            data: str | bytes = str(body["text"])
        else:
            data = base64.b64decode(body["binary"], validate=True)
        return body.get("node"), data, body
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


class RedisBridge:
    def __init__(self, url: str, node: str, hub_push: pynng.Socket) -> None:
        self.url = url
        self.node = node
        self.hub = hub_push
        self.topics: set[str] = set()
        self.local_counts: dict[str, int] = {}
        self.remote: dict[str, tuple[float, dict[str, int]]] = {}
        self.pending: list[tuple[str, str]] = []
        self.wake = asyncio.Event()
        self.subscriptions_changed = asyncio.Event()
        self.changed_counts: set[str] = set()
        self.down = False
        self.connected = False  # to Redis right now (for status and metrics)
        self.dropped = 0
        # ``await ws.subscribe`` barriers (SYNCED, worker, number) waiting for
        # Redis to confirm the SUBSCRIBEs issued before them.
        self.syncs: list[Operation] = []
        self.unconfirmed: set[str] = set()
        self.mismatches = wire.MismatchLog(logger, "operations")

    # -- from the hub -------------------------------------------------------------

    def apply(self, operations: Sequence[Operation]) -> None:
        for code, subject, payload in operations:
            if code == PUB:
                self._publish(TOPIC_PREFIX + subject, encode_message(self.node, payload))
            elif code == SEND:
                message = encode_message(self.node, payload, to=subject)
                self._publish(SEND_CHANNEL, message)
            elif code == TOPICS:
                self.topics.update(subject)
                self.topics.difference_update(payload)
                self.subscriptions_changed.set()
            elif code == COUNTS:
                merge_counts(self.local_counts, subject)
                self.changed_counts.update(subject)
            elif code == SYNC:
                self.syncs.append((SYNCED, subject, payload))
                self.subscriptions_changed.set()
                self.wake.set()

    async def confirm_syncs(self) -> None:
        """Answer the barriers once no SUBSCRIBE issued before them is unconfirmed."""
        if self.syncs and not self.unconfirmed:
            batch, self.syncs = self.syncs, []
            await self.to_hub(batch)

    def _publish(self, channel: str, payload: str) -> None:
        if self.down:
            self.dropped += 1  # at most once: nothing is held back for later
            return
        self.pending.append((channel, payload))
        self.wake.set()

    # -- to the hub -----------------------------------------------------------------

    async def to_hub(self, operations: list[Operation]) -> None:
        await self.hub.asend(wire.encode_batch(wire.BRIDGE_SOURCE, operations, {}))

    def remote_totals(self, topics: set[str]) -> dict[str, int]:
        now = time.monotonic()
        alive = [counts for seen, counts in self.remote.values() if now - seen < NODE_EXPIRY]
        return {topic: sum(c.get(topic, 0) for c in alive) for topic in topics}

    async def on_redis_message(self, channel: str, payload: bytes) -> None:
        """Anything can arrive from Redis: a malformed message is logged and
        dropped, never allowed to stop the bridge."""
        try:
            await self._on_redis_message(channel, payload)
        except Exception:
            logger.warning("message on %s could not be used; dropped", channel, exc_info=True)

    async def _on_redis_message(self, channel: str, payload: bytes) -> None:
        decoded = decode_message(payload) if channel != COUNTS_CHANNEL else None
        if channel == COUNTS_CHANNEL:
            try:
                body = json.loads(payload)
                node, counts = body["node"], body["counts"]
            except (ValueError, KeyError, TypeError):
                return
            if (
                not isinstance(node, str)
                or not isinstance(counts, dict)
                or not all(
                    isinstance(t, str) and isinstance(n, int) and n >= 0 for t, n in counts.items()
                )
            ):
                logger.warning("malformed counts on %s ignored", channel)
                return
            if node == self.node:
                return
            previous = self.remote.get(node, (0.0, {}))[1]
            merged = counts if body.get("full") else {**previous, **counts}
            merged = {t: n for t, n in merged.items() if n}
            self.remote[node] = (time.monotonic(), merged)
            changed = set(counts) | (set(previous) if body.get("full") else set())
            await self.to_hub([(RCOUNTS, self.remote_totals(changed), None)])
            return
        if decoded is None:
            logger.warning("malformed message on %s ignored", channel)
            return
        node, data, body = decoded
        if node == self.node or not isinstance(body, dict):
            return
        if channel == SEND_CHANNEL:
            target = body.get("to")
            if isinstance(target, str):
                await self.to_hub([(SEND, target, data)])
        elif channel.startswith(TOPIC_PREFIX):
            await self.to_hub([(PUB, channel[len(TOPIC_PREFIX) :], data)])

    # -- Redis ------------------------------------------------------------------------

    async def run(self, pull: pynng.Socket) -> None:
        await asyncio.gather(self._from_hub(pull), self._redis_forever(), self._expire_nodes())

    async def _from_hub(self, pull: pynng.Socket) -> None:
        while True:
            data = await pull.arecv()
            operations = self.mismatches.decode(
                wire.decode_operations, data, "operations from the hub", "the hub"
            )
            if operations is None:
                continue
            self.apply(operations)

    async def _expire_nodes(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            gone = [n for n, (seen, _) in self.remote.items() if now - seen >= NODE_EXPIRY]
            for node in gone:
                counts = self.remote.pop(node)[1]
                await self.to_hub([(RCOUNTS, self.remote_totals(set(counts)), None)])

    async def _redis_forever(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        delay = BACKOFF_INITIAL
        down_since: float | None = None
        while True:
            client = aioredis.from_url(self.url)
            try:
                await client.ping()
                if down_since is not None:
                    logger.warning(
                        "Redis at %s is back after %.1fs; remote delivery resumes",
                        self.url,
                        time.monotonic() - down_since,
                    )
                else:
                    logger.info("connected to Redis at %s", self.url)
                down_since, delay = None, BACKOFF_INITIAL
                self.down = False
                self.connected = True
                await self._session(client)
            except (RedisError, OSError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    logger.error(
                        "Redis at %s unreachable (%s): local delivery goes on, "
                        "reconnecting with backoff",
                        self.url,
                        exc,
                    )
                self.down = True
                self.connected = False
                self.pending.clear()  # at most once: what could not go out is dropped
            finally:
                try:
                    await client.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self, client: Any) -> None:
        pubsub = client.pubsub()
        subscribed: set[str] = set()
        self.unconfirmed = {SEND_CHANNEL, COUNTS_CHANNEL}
        await pubsub.subscribe(SEND_CHANNEL, COUNTS_CHANNEL)
        last_full = 0.0
        self.changed_counts.update(self.local_counts)
        try:
            while True:
                wanted = {TOPIC_PREFIX + t for t in self.topics}
                if wanted - subscribed:
                    self.unconfirmed |= wanted - subscribed
                    await pubsub.subscribe(*(wanted - subscribed))
                if subscribed - wanted:
                    await pubsub.unsubscribe(*(subscribed - wanted))
                subscribed = wanted
                self.unconfirmed &= subscribed | {SEND_CHANNEL, COUNTS_CHANNEL}
                self.subscriptions_changed.clear()
                await self.confirm_syncs()
                if self.pending:
                    batch, self.pending = self.pending, []
                    async with client.pipeline(transaction=False) as pipe:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                        await pipe.execute()
                now = time.monotonic()
                if now - last_full >= FULL_COUNTS_EVERY or self.changed_counts:
                    full = now - last_full >= FULL_COUNTS_EVERY
                    counts = (
                        dict(self.local_counts)
                        if full
                        else {t: self.local_counts.get(t, 0) for t in self.changed_counts}
                    )
                    self.changed_counts.clear()
                    if full:
                        last_full = now
                    body = {"node": self.node, "counts": counts, "full": full}
                    await client.publish(COUNTS_CHANNEL, json.dumps(body))
                message = await pubsub.get_message(timeout=0.01)
                while message is not None:
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    if message["type"] == "subscribe":
                        self.unconfirmed.discard(channel)  # Redis has it from now on
                    elif message["type"] in ("message", "pmessage"):
                        await self.on_redis_message(channel, message["data"])
                    message = await pubsub.get_message(timeout=0)
                await self.confirm_syncs()
                if not self.pending and not self.subscriptions_changed.is_set():
                    try:
                        await asyncio.wait_for(self.wake.wait(), 0.05)
                    except TimeoutError:
                        pass
                self.wake.clear()
        finally:
            await pubsub.aclose()


async def amain(options: dict[str, Any]) -> None:
    paths = ipc.RunPaths(options["run_dir"])
    with (
        pynng.Pull0(listen=paths.bridge) as pull,
        pynng.Push0(dial=paths.hub) as push,
        pynng.Push0(dial=paths.reports, send_timeout=REPORT_SEND_TIMEOUT_MS) as reports,
    ):
        bridge = RedisBridge(options["url"], options["node_id"], push)
        await reports.asend(wire.ready("bridge", 0, os.getpid()))

        async def report() -> None:
            figures = {"dropped": bridge.dropped, "connected": bridge.connected}
            await reports.asend(wire.heartbeat("bridge", 0, os.getpid(), figures))

        async def exit_now() -> None:
            logger.error("supervisor is gone: exiting")
            os._exit(1)

        heartbeats = heartbeat_forever(
            report, options["heartbeat_interval"], asyncio.sleep, exit_now
        )
        await asyncio.gather(bridge.run(pull), heartbeats)


def main() -> None:
    options = child_settings("Redis bridge")
    configure_logging(LogSettings.from_options(options), "redis-bridge")
    logger.info(raise_fd_limit())
    try:
        import redis  # noqa: F401
    except ImportError:
        print(
            "Error: --pubsub needs the redis package: pip install 'axeom[redis]'",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(EXIT_CANNOT_START)
    try:
        asyncio.run(amain(options))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
