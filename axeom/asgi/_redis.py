"""Pub/sub across processes and machines for an app on an ASGI server, through Redis.

Each process of an ASGI server (``uvicorn --workers 2`` runs two) is a node of
its own in Redis terms, with the channel layout of ``axeom run``'s Redis bridge
(a public contract, see the README): ``axeom:topic:<topic>`` for publishes,
``axeom:send`` for ``app.send``, ``axeom:counts`` for subscriber counts. So
ASGI processes and ``axeom run --pubsub`` nodes share topics and ``app.send``.

Configured with ``AXEOM_PUBSUB=redis://...`` (the name ``axeom run`` reads) or
``axeom.asgi.use_redis(app, url)``. The link is a ``pubsub.Link`` running as a
task on the server's loop (redis-py's asyncio client: asyncio servers only),
started by the lifespan startup or the first connection, whichever comes
first. Delivery is at most once; while Redis is unreachable local delivery
goes on, remote messages are dropped, and the link reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import sniffio

from ..config import _redis_url
from ..pubsub import WORK_BUDGET, PubSub
from ..wire import PUB, SEND, SUB, UNSUB
from ..ws._socket import socket_id_prefix

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = ["RedisLink", "ensure_link", "stop_link", "use_redis"]

logger = logging.getLogger("axeom.redis")

TOPIC_PREFIX = "axeom:topic:"
SEND_CHANNEL = "axeom:send"
COUNTS_CHANNEL = "axeom:counts"
ENV = "AXEOM_PUBSUB"  # the environment variable of ``axeom run --pubsub``
FULL_COUNTS_EVERY = 3.0  # seconds between full count reports, as the bridge sends them
NODE_EXPIRY = 10.0  # a node not heard from for this long no longer counts
BACKOFF_INITIAL, BACKOFF_MAX = 0.1, 5.0  # reconnection delays, as the bridge's
BATCH = 1000  # operations taken from the outbox per round: one pipeline each
IDLE_POLL = 0.05  # seconds a round waits for work before reading Redis again
SUBSCRIBE_TIMEOUT = 5.0  # ``await ws.subscribe`` gives up waiting for Redis after this
_URL_KEY, _LINK_KEY = "asgi.redis_url", "asgi.redis_link"  # in ``app.extensions``


def use_redis(app: Axeom, url: str) -> Axeom:
    """Bridge ``app``'s pub/sub to Redis when it runs on an ASGI server
    (instead of the ``AXEOM_PUBSUB`` environment variable)."""
    try:
        app.extensions[_URL_KEY] = _redis_url(url)
    except ValueError as exc:
        raise ValueError(f"use_redis: the URL {exc}") from None
    return app


def _configured_url(app: Axeom) -> str | None:
    url = app.extensions.get(_URL_KEY) or os.environ.get(ENV) or None
    if url is None:
        return None
    try:
        return _redis_url(url)
    except ValueError as exc:
        logger.error("%s %s; pub/sub stays within this process", ENV, exc)
        return None


def ensure_link(app: Axeom) -> None:
    """Start the Redis link of this process if configured and not yet started
    (one dictionary lookup once decided)."""
    if _LINK_KEY in app.extensions:
        return
    url = _configured_url(app)
    if url is None:
        app.extensions[_LINK_KEY] = None
        return
    if sniffio.current_async_library() != "asyncio":
        logger.error("Redis pub/sub needs an asyncio server (redis-py); it stays in this process")
        app.extensions[_LINK_KEY] = None
        return
    link = RedisLink(app.pubsub, url, f"asgi-{socket_id_prefix()}")
    app.extensions[_LINK_KEY] = link
    link.start()


def stop_link(app: Axeom) -> None:
    """Stop the link (lifespan shutdown)."""
    link = app.extensions.get(_LINK_KEY)
    if isinstance(link, RedisLink):
        link.stop()


def encode_message(node: str, data: str | bytes, **extra: Any) -> str:
    body: dict[str, Any] = {"node": node, **extra}
    if isinstance(data, str):
        body["text"] = data
    else:
        body["binary"] = base64.b64encode(data).decode("ascii")
    return json.dumps(body, separators=(",", ":"))


def decode_message(payload: bytes | str) -> tuple[Any, str | bytes, dict[str, Any]] | None:
    """(sending node, data, the whole body), or None if malformed."""
    try:
        body = json.loads(payload)
        if not isinstance(body, dict):
            return None
        data: str | bytes
        if "text" in body:
            data = str(body["text"])
        else:
            data = base64.b64decode(body["binary"], validate=True)
        return body.get("node"), data, body
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


class RedisLink:
    """The ``pubsub.Link`` of one ASGI process: its outbox to Redis, and what
    Redis delivers to this process's sockets."""

    def __init__(self, pubsub: PubSub, url: str, node: str) -> None:
        self.pubsub = pubsub
        self.url = url
        self.node = node
        self.topics: set[str] = set(pubsub._topics)  # subscribed before the link started
        self.remote: dict[str, tuple[float, dict[str, int]]] = {}
        self.unconfirmed: set[str] = set()
        self._wake = asyncio.Event()
        self._waiting: list[asyncio.Future[None]] = []  # ``await ws.subscribe`` callers
        self._task: asyncio.Task[None] | None = None
        self._last_full = 0.0
        self._last_expiry = 0.0

    def start(self) -> None:
        self.pubsub.link = self
        self._task = asyncio.get_running_loop().create_task(self._forever())

    def stop(self) -> None:
        self.pubsub.link = None
        if self._task is not None:
            self._task.cancel()

    # -- Link -----------------------------------------------------------------

    def wakeup(self) -> None:
        self._wake.set()

    async def wait_flowing(self) -> None:
        while self.pubsub.congested and self._task is not None and not self._task.done():
            await asyncio.sleep(IDLE_POLL)

    async def wait_subscribed(self) -> None:
        """Until Redis confirmed every SUBSCRIBE queued so far (at most 5 s)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            logger.warning("Redis did not confirm a subscription within %ss", SUBSCRIBE_TIMEOUT)

    # -- the task ---------------------------------------------------------------

    async def _forever(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        delay = BACKOFF_INITIAL
        down = False
        while True:
            client = aioredis.from_url(self.url)
            try:
                await client.ping()
                if down:
                    logger.warning("Redis at %s is back; remote delivery resumes", self.url)
                    self._take_operations()  # published meanwhile: dropped, not sent late
                down, delay = False, BACKOFF_INITIAL
                await self._session(client)
            except (RedisError, OSError) as exc:
                if not down:
                    logger.error(
                        "Redis at %s unreachable (%s): local delivery goes on", self.url, exc
                    )
                down = True
                self._take_operations()  # at most once: publishes dropped, topics kept
            finally:
                try:
                    await client.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self, client: Any) -> None:
        channels = client.pubsub()
        subscribed: set[str] = set()
        self.unconfirmed = {SEND_CHANNEL, COUNTS_CHANNEL}
        await channels.subscribe(SEND_CHANNEL, COUNTS_CHANNEL)
        self._last_full = 0.0
        try:
            while True:
                waiters, self._waiting = self._waiting, []
                publishes = self._take_operations()
                wanted = {TOPIC_PREFIX + topic for topic in self.topics}
                if wanted - subscribed:
                    self.unconfirmed |= wanted - subscribed
                    await channels.subscribe(*(wanted - subscribed))
                if subscribed - wanted:
                    await channels.unsubscribe(*(subscribed - wanted))
                subscribed = wanted
                self.unconfirmed &= subscribed | {SEND_CHANNEL, COUNTS_CHANNEL}
                if publishes:
                    async with client.pipeline(transaction=False) as pipe:
                        for channel, payload in publishes:
                            pipe.publish(channel, payload)
                        await pipe.execute()
                await self._report_counts(client)
                await self._read(channels)
                self._expire_nodes()
                self._answer(waiters)
                if not self.pubsub.outgoing.items and not self._waiting:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
                    except TimeoutError:
                        pass
        finally:
            await channels.aclose()

    def _take_operations(self) -> list[tuple[str, str]]:
        """This round's operations: publishes to send, topics to (un)subscribe."""
        publishes: list[tuple[str, str]] = []
        for code, subject, payload in self.pubsub.take_outgoing(BATCH):
            if code == PUB:
                publishes.append((TOPIC_PREFIX + subject, encode_message(self.node, payload)))
            elif code == SEND:
                publishes.append((SEND_CHANNEL, encode_message(self.node, payload, to=subject)))
            elif code == SUB:
                self.topics.add(subject)
            elif code == UNSUB:
                self.topics.discard(subject)
        return publishes

    def _answer(self, waiters: list[asyncio.Future[None]]) -> None:
        if self.unconfirmed:
            self._waiting[:0] = waiters  # not yet: wait for the next round
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _report_counts(self, client: Any) -> None:
        now = time.monotonic()
        full = now - self._last_full >= FULL_COUNTS_EVERY
        changed = self.pubsub.take_counts()
        if not changed and not full:
            return
        if full:
            self._last_full = now
            changed = {topic: self.pubsub.local_count(topic) for topic in self.topics}
        body = {"node": self.node, "counts": changed, "full": full}
        await client.publish(COUNTS_CHANNEL, json.dumps(body, separators=(",", ":")))

    async def _read(self, channels: Any) -> None:
        message = await channels.get_message(timeout=0)
        while message is not None:
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if message["type"] == "subscribe":
                self.unconfirmed.discard(channel)  # Redis has it from now on
            elif message["type"] == "message":
                try:
                    self._on_message(channel, message["data"])
                except Exception:
                    logger.warning(
                        "message on %s could not be used; dropped", channel, exc_info=True
                    )
                if self.pubsub.work >= WORK_BUDGET:
                    await self.pubsub.pause()
            message = await channels.get_message(timeout=0)

    def _on_message(self, channel: str, payload: bytes) -> None:
        """Anything can arrive from Redis: what is malformed is dropped."""
        if channel == COUNTS_CHANNEL:
            self._on_counts(payload)
            return
        decoded = decode_message(payload)
        if decoded is None:
            logger.warning("malformed message on %s ignored", channel)
            return
        node, data, body = decoded
        if node == self.node:
            return
        if channel == SEND_CHANNEL:
            target = body.get("to")
            if isinstance(target, str):
                self.pubsub.deliver_to(target, data)
        elif channel.startswith(TOPIC_PREFIX):
            self.pubsub.deliver(channel[len(TOPIC_PREFIX) :], data)

    def _on_counts(self, payload: bytes) -> None:
        body = json.loads(payload)
        node, counts = body.get("node"), body.get("counts")
        if node == self.node or not isinstance(node, str) or not isinstance(counts, dict):
            return
        previous = self.remote.get(node, (0.0, {}))[1]
        merged = counts if body.get("full") else {**previous, **counts}
        self.remote[node] = (time.monotonic(), {t: n for t, n in merged.items() if n})
        self._update_totals(set(counts) | set(previous))

    def _update_totals(self, topics: set[str]) -> None:
        now = time.monotonic()
        alive = [c for seen, c in self.remote.values() if now - seen < NODE_EXPIRY]
        totals = {topic: sum(c.get(topic, 0) for c in alive) for topic in topics}
        self.pubsub.update_counts(totals, {})  # ``totals`` are the others': none of ours

    def _expire_nodes(self) -> None:
        now = time.monotonic()
        if now - self._last_expiry < 1.0:
            return
        self._last_expiry = now
        gone = [n for n, (seen, _) in self.remote.items() if now - seen >= NODE_EXPIRY]
        for node in gone:
            self._update_totals(set(self.remote.pop(node)[1]))
