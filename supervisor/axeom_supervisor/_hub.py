"""The pub/sub hub: forwards each publish only to the workers that need it.

It runs as a task in the supervisor: the supervisor is the first to learn
that a worker died, so that worker's subscriptions leave the table at once,
and no extra process or hop is needed. Workers announce only the first
subscribe and the last unsubscribe of each topic on their side; the hub
keeps topic -> workers, and process prefix -> worker for ``app.send``.

Each worker has its own bounded queue and sender task here, so a worker
that is slow to take its deliveries delays only itself (past the bound its
deliveries are dropped: at most once, counted, and logged once per episode).
The bound is in work for that worker (each publish weighs as many socket
deliveries as the worker has subscribers to its topic), so what is queued
always drains in a couple of seconds and the next publish after a flood
arrives promptly.

``SYNC`` operations are barriers for ``await ws.subscribe``: once the hub
applied everything a worker sent before one (and the Redis bridge, if any,
subscribed), it answers ``SYNCED`` to that worker. Answers are never dropped.
The operations and batches are those of ``axeom.wire``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pynng
import trio

from axeom import metrics, wire
from axeom.pubsub import merge_counts, socket_prefix
from axeom.wire import PUB, RCOUNTS, SEND, SUB, SYNC, SYNCED, UNSUB, Operation

__all__ = ["Hub", "RemoteBridge"]

logger = logging.getLogger("axeom.hub")

# Socket deliveries waiting for one worker (~1 us each there: a second or
# two of its time) ...
QUEUE_WORK = 2_000_000
QUEUE_BYTES = 64 << 20  # ... and their bytes: past either, deliveries are dropped
# How often workers learn the node-wide subscriber counts of changed topics:
# often enough for app.subscriber_count to feel current, rare enough to batch.
COUNTS_INTERVAL = 0.2


class RemoteBridge(Protocol):
    """The hub's link to other nodes (Redis), if any."""

    def forward(self, operation: Operation) -> None: ...

    def sync(self, worker: str, number: int) -> None:
        """Answer ``(SYNCED, worker, number)`` once Redis has every topic so far."""

    def topics_changed(self, subscribed: set[str], unsubscribed: set[str]) -> None: ...

    def counts(self, totals: dict[str, int]) -> None: ...


@dataclass
class _Worker:
    key: str
    prefix: str
    push: pynng.Socket
    send: trio.MemorySendChannel[tuple[bytes, int]]  # (message, its work)
    topics: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    dropping: int = 0  # drops in the current episode
    dropped: int = 0
    queued_bytes: int = 0
    queued_work: int = 0


class Hub:
    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.workers: dict[str, _Worker] = {}
        self.topics: dict[str, set[str]] = {}
        self.prefixes: dict[str, str] = {}
        self.remote: RemoteBridge | None = None
        self.remote_counts: dict[str, int] = {}
        self._dirty_counts: set[str] = set()
        self.published = 0
        self.forwarded = 0
        self.dropped_gone = 0  # dropped workers' counters still count
        self._mismatches = wire.MismatchLog(logger, "pub/sub batches")

    # -- workers -------------------------------------------------------------

    def add_worker(self, key: str, address: str, prefix: str) -> None:
        push = pynng.Push0(dial=address, block_on_dial=False)
        # Unbounded here: the limits are QUEUE_WORK and QUEUE_BYTES, checked in
        # _enqueue, so that acknowledgements are never the ones dropped.
        send, receive = trio.open_memory_channel[tuple[bytes, int]](math.inf)
        worker = self.workers[key] = _Worker(key, prefix, push, send)
        self.prefixes[prefix] = key
        self._nursery.start_soon(self._sender, worker, receive)

    def drop_worker(self, key: str) -> None:
        """The worker is gone: its subscriptions and counts go with it, now."""
        worker = self.workers.pop(key, None)
        if worker is None:
            return
        self.prefixes.pop(worker.prefix, None)
        unsubscribed = set()
        for topic in worker.topics:
            members = self.topics.get(topic)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.topics[topic]
                    unsubscribed.add(topic)
        self._dirty_counts.update(worker.counts)
        self.dropped_gone += worker.dropped
        worker.send.close()
        worker.push.close()
        if self.remote is not None and unsubscribed:
            self.remote.topics_changed(set(), unsubscribed)

    async def _sender(
        self, worker: _Worker, receive: trio.MemoryReceiveChannel[tuple[bytes, int]]
    ) -> None:
        async with receive:
            async for message, work in receive:
                worker.queued_bytes -= len(message)
                worker.queued_work -= work
                try:
                    await worker.push.asend(message)
                except pynng.exceptions.Closed:
                    return

    # -- traffic from workers ---------------------------------------------------

    async def receive_loop(self, pull: pynng.Socket) -> None:
        while True:
            data = await pull.arecv()
            batch = self._mismatches.decode(wire.decode_batch, data, "pub/sub batch")
            if batch is None:
                continue
            try:
                if batch.source == wire.BRIDGE_SOURCE:
                    self.from_bridge(batch.operations)
                else:
                    self.handle(batch.source, batch.operations, batch.counts)
            except Exception:  # one bad batch must never take the supervisor down
                logger.exception(
                    "pub/sub batch from %s could not be applied; dropped", batch.source
                )

    def from_bridge(self, operations: Sequence[Operation]) -> None:
        """Publishes, sends and counts from the other nodes."""
        for operation in operations:
            code, subject, payload = operation
            if code == RCOUNTS:
                self.remote_counts_changed(subject)
            elif code == SYNCED:
                self.synced(subject, payload)
            else:
                self.deliver_remote(operation)

    def handle(
        self, source: str | None, operations: Sequence[Operation], counts: dict[str, int]
    ) -> None:
        """Apply one batch from ``source`` (None: from outside, e.g. the control socket)."""
        outgoing: dict[str, list[Operation]] = defaultdict(list)
        worker = self.workers.get(source) if source is not None else None
        subscribed: set[str] = set()
        unsubscribed: set[str] = set()
        syncs: list[int] = []
        for operation in operations:
            code, subject, _ = operation
            if code == PUB:
                self.published += 1
                for target in self.topics.get(subject, ()):
                    if target != source:
                        outgoing[target].append(operation)
                if self.remote is not None:  # other nodes (never called for their own)
                    self.remote.forward(operation)
            elif code == SEND:
                owner = self.prefixes.get(socket_prefix(subject))
                if owner is not None:
                    outgoing[owner].append(operation)
                elif self.remote is not None:
                    self.remote.forward(operation)
            elif code == SUB and worker is not None:
                topic = subject
                worker.topics.add(topic)
                members = self.topics.setdefault(topic, set())
                if not members:
                    subscribed.add(topic)
                members.add(worker.key)
            elif code == UNSUB and worker is not None:
                topic = subject
                worker.topics.discard(topic)
                remaining = self.topics.get(topic)
                if remaining is not None:
                    remaining.discard(worker.key)
                    if not remaining:
                        del self.topics[topic]
                        unsubscribed.add(topic)
            elif code == SYNC and worker is not None:
                syncs.append(subject)
        if worker is not None and counts:
            merge_counts(worker.counts, counts)
            self._dirty_counts.update(counts)
        if self.remote is not None and (subscribed or unsubscribed):
            self.remote.topics_changed(subscribed - unsubscribed, unsubscribed - subscribed)
        for target, batch in outgoing.items():
            self._enqueue(target, batch)
        for number in syncs:  # after the topic changes above reached the bridge
            assert worker is not None
            if self.remote is not None:
                self.remote.sync(worker.key, number)
            else:
                self.synced(worker.key, number)

    def synced(self, key: str, number: int) -> None:
        """Answer a worker's ``SYNC``: everything it sent before is in effect."""
        worker = self.workers.get(key)
        if worker is not None:
            try:
                answer = wire.encode_operations([(SYNCED, number, None)])
                worker.send.send_nowait((answer, 0))
            except trio.ClosedResourceError:
                pass

    def deliver_remote(self, operation: Operation) -> None:
        """A publish or send that came from another node."""
        code, subject, _ = operation
        if code == PUB:
            for target in self.topics.get(subject, ()):
                self._enqueue(target, [operation])
        elif code == SEND:
            owner = self.prefixes.get(socket_prefix(subject))
            if owner is not None:
                self._enqueue(owner, [operation])

    def _enqueue(self, key: str, batch: list[Operation], *, droppable: bool = True) -> None:
        worker = self.workers.get(key)
        if worker is None:
            return
        counts = worker.counts
        work = sum(counts.get(subject, 1) if code == PUB else 1 for code, subject, _ in batch)
        message = wire.encode_operations(batch)
        if droppable and (
            worker.queued_work + work > QUEUE_WORK
            or worker.queued_bytes + len(message) > QUEUE_BYTES
        ):
            self._drop(worker, len(batch))
            return
        try:
            worker.send.send_nowait((message, work))
        except trio.ClosedResourceError:
            return
        worker.queued_bytes += len(message)
        worker.queued_work += work
        self.forwarded += len(batch)
        if worker.dropping:
            logger.warning(
                "%s caught up with pub/sub; %d operations for it were dropped meanwhile",
                worker.key,
                worker.dropping,
            )
            worker.dropping = 0

    @staticmethod
    def _drop(worker: _Worker, count: int) -> None:
        if not worker.dropping:
            logger.warning(
                "%s is not keeping up with pub/sub: dropping operations for it (at most once)",
                worker.key,
            )
        worker.dropping += count
        worker.dropped += count

    # -- counts ------------------------------------------------------------------

    def local_totals(self, topics: set[str]) -> dict[str, int]:
        return {t: sum(w.counts.get(t, 0) for w in self.workers.values()) for t in topics}

    async def counts_loop(self) -> None:
        """A few times per second, tell workers the totals of changed topics."""
        while True:
            await trio.sleep(COUNTS_INTERVAL)
            if not self._dirty_counts:
                continue
            dirty, self._dirty_counts = self._dirty_counts, set()
            totals = self.local_totals(dirty)
            if self.remote is not None:
                self.remote.counts(dict(totals))
            for topic in dirty:
                totals[topic] += self.remote_counts.get(topic, 0)
            for worker in list(self.workers.values()):
                ours = {t: worker.counts.get(t, 0) for t in dirty}
                # Never dropped: counts are sent only when they change.
                self._enqueue(worker.key, [(wire.COUNTS, totals, ours)], droppable=False)

    def remote_counts_changed(self, counts: dict[str, int]) -> None:
        merge_counts(self.remote_counts, counts)
        self._dirty_counts.update(counts)

    def resync_remote(self) -> None:
        """A (re)started bridge learns every topic and count of this node."""
        if self.remote is not None:
            self.remote.topics_changed(set(self.topics), set())
            self.remote.counts(self.local_totals(set(self.topics)))

    def top_topics(self, count: int) -> list[list[Any]]:
        """This node's ``count`` topics with the most subscribers, most first."""
        workers = self.workers.values()
        sizes = ((t, sum(w.counts.get(t, 0) for w in workers)) for t in self.topics)
        return metrics.top_topics(sizes, count)

    def statistics(self) -> dict[str, Any]:
        return {
            "topics": len(self.topics),
            "workers": len(self.workers),
            "published": self.published,
            "forwarded": self.forwarded,
            "dropped_hub": self.dropped_gone + sum(w.dropped for w in self.workers.values()),
        }
