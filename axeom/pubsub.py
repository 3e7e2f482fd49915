"""Topics and socket addresses of one process, and the link to the others.

``PubSub`` keeps, for this process, which sockets are subscribed to which
topics and which socket has which id. Publishing delivers to local
subscribers at once and, when the process is part of a larger deployment,
queues the operation for a ``Link`` (the worker's link to the hub) that
sends every operation queued since its last pass as one message.

Guarantees: delivery is at most once; messages from one publisher on one
topic reach each subscriber in publish order (one path per subscriber);
``subscriber_count`` is eventually consistent across processes.

Sans-IO: no event loop here; the link does the I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ._call import not_awaited
from .outbox import MAX_OUTGOING, Outbox
from .wire import PUB, SEND, SUB, SYNC, UNSUB, Operation

if TYPE_CHECKING:
    from .ws._socket import WebSocket

__all__ = [
    "UNSUBSCRIBED",
    "Link",
    "PubSub",
    "Published",
    "Sent",
    "Subscribed",
    "Unsubscribed",
    "merge_counts",
    "socket_prefix",
]

logger = logging.getLogger("axeom.pubsub")

Message = str | bytes

# Past this many waiting operations the link is "congested": a publishing
# socket's task stops reading its client and ``await ws.publish`` waits, so a
# flood is slowed at its source long before MAX_OUTGOING drops anything.
FLOW_LIMIT = 10_000
# Socket deliveries (one ``ws.send`` each) after which a delivery loop lets the
# rest of the process run (heartbeats, other sockets, timers): ~30-50 ms of
# work, so each subscriber's messages still leave in few, large writes.
WORK_BUDGET = 30_000


class Link(Protocol):
    """What carries operations to the other processes (and nodes)."""

    def wakeup(self) -> None:
        """Operations were queued in ``PubSub.outgoing``: send them soon."""
        ...

    def wait_flowing(self) -> Awaitable[None]:
        """Wait until ``PubSub.outgoing`` is back under ``FLOW_LIMIT``."""
        ...

    def wait_subscribed(self) -> Awaitable[None]:
        """Wait until every operation queued so far is in effect in every worker
        of the node (and, with Redis, on every node)."""
        ...


@not_awaited
class Published(int):
    """What ``publish`` returns: the number of local sockets it was queued on,
    which can also be awaited (``await ws.publish(...)``): after many
    deliveries it lets the rest of the process run, and it waits while the
    pub/sub link's queue is over its limit (flow control)."""

    # Set only when there is something to wait for (the common case allocates
    # nothing more than the int).
    _waiter: Callable[[], Awaitable[None]] | None = None

    def __await__(self) -> Generator[Any, None, int]:
        if self._waiter is not None:
            yield from self._waiter().__await__()
        return int(self)


@not_awaited
class Sent(int):
    """What ``app.send`` returns: 1 (true) if the socket is local and the
    message was queued, else 0 (false). Awaitable like ``Published``."""

    _waiter: Callable[[], Awaitable[None]] | None = None

    def __await__(self) -> Generator[Any, None, bool]:
        if self._waiter is not None:
            yield from self._waiter().__await__()
        return bool(self)

    def __repr__(self) -> str:
        return repr(bool(self))


@not_awaited
class Subscribed:
    """What ``ws.subscribe`` returns. Ignored, the subscription takes effect
    in the other processes a moment later; awaited, it returns once it is in
    effect for publishes from every worker (and node)."""

    __slots__ = ("_pubsub",)

    def __init__(self, pubsub: PubSub | None) -> None:
        self._pubsub = pubsub

    def __await__(self) -> Generator[Any, None, None]:
        pubsub = self._pubsub
        if pubsub is not None and pubsub.link is not None:
            yield from pubsub.link.wait_subscribed().__await__()


@not_awaited
class Unsubscribed:
    """What ``ws.unsubscribe`` returns. The unsubscription is in effect at once
    (deliveries to a socket go through this process's topic table), so awaiting
    it returns at once: ``await ws.unsubscribe(t)`` is as valid as
    ``await ws.subscribe(t)``, the habit that pairs them."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that finishes without suspending


UNSUBSCRIBED = Unsubscribed()  # stateless: one instance serves every call


def _check_str(what: str, value: object) -> None:
    """Topics and ids cross processes and nodes: refuse anything but text here,
    in the caller's handler, rather than in the hub."""
    if not isinstance(value, str):
        raise TypeError(f"a {what} must be a str, not {type(value).__name__}")


def merge_counts(table: dict[str, int], changes: dict[str, int]) -> None:
    """Apply subscriber-count changes to ``table``; a count of 0 removes the topic."""
    for topic, count in changes.items():
        if count:
            table[topic] = count
        else:
            table.pop(topic, None)


def socket_prefix(socket_id: str) -> str:
    """The process part of a socket id (``<process>-<counter>``)."""
    return socket_id.rpartition("-")[0]


class PubSub:
    """Local topic table, socket directory and outgoing operation queue."""

    def __init__(self) -> None:
        self._topics: dict[str, set[WebSocket]] = {}
        self._sockets: dict[str, WebSocket] = {}
        self.link: Link | None = None
        # Operations for the link; beyond MAX_OUTGOING dropped (at most once).
        self.outgoing: Outbox[Operation] = Outbox(
            self._wakeup,
            logger,
            dropping=f"pub/sub link has {MAX_OUTGOING} operations waiting:"
            " dropping new ones (at most once)",
            caught_up="pub/sub link caught up; %d operations were dropped meanwhile",
        )
        # Deployment-wide subscriber counts as last reported by the hub, and
        # what this process had itself at that time (to add our fresher count).
        self._remote_counts: dict[str, int] = {}
        self._counted: dict[str, int] = {}
        self._dirty_counts: set[str] = set()
        # Socket deliveries since a delivery loop last let the process run, and
        # the event loop's schedule point (set by the runtime that runs sockets).
        self.work = 0
        self.checkpoint: Callable[[], Awaitable[None]] | None = None
        # Totals since start, for status and metrics: publishes made here, and
        # socket deliveries of any publish (this process's subscribers).
        self.published = 0
        self.delivered = 0

    # -- sockets ---------------------------------------------------------------

    def add_socket(self, ws: WebSocket) -> None:
        self._sockets[ws.id] = ws

    def remove_socket(self, ws: WebSocket, topics: Iterable[str]) -> None:
        """A socket closed: forget its id and every subscription it had."""
        self._sockets.pop(ws.id, None)
        for topic in list(topics):
            self.unsubscribe(ws, topic)

    # -- subscriptions -----------------------------------------------------------

    def subscribe(self, ws: WebSocket, topic: str) -> bool:
        """Add ``ws`` to ``topic``; False if it already was subscribed."""
        _check_str("topic", topic)
        members = self._topics.get(topic)
        if members is None:
            members = self._topics[topic] = set()
            self._queue((SUB, topic, None))  # only the first local subscriber is announced
        if ws in members:
            return False
        members.add(ws)
        self._count_changed(topic)
        return True

    def unsubscribe(self, ws: WebSocket, topic: str) -> bool:
        members = self._topics.get(topic)
        if members is None or ws not in members:
            return False
        members.discard(ws)
        if not members:
            del self._topics[topic]
            self._queue((UNSUB, topic, None))  # and only the last one leaving
        self._count_changed(topic)
        return True

    def local_count(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def subscriber_count(self, topic: str) -> int:
        """Subscribers of ``topic`` in the whole deployment.

        Eventually consistent: this process's own count is exact, the other
        processes' counts are as of the hub's last report (sent a few times
        per second while they change).
        """
        elsewhere = self._remote_counts.get(topic, 0) - self._counted.get(topic, 0)
        return max(0, elsewhere) + self.local_count(topic)

    def update_counts(self, totals: dict[str, int], ours: dict[str, int]) -> None:
        """The hub's totals, and what it had counted for this process."""
        merge_counts(self._remote_counts, totals)
        merge_counts(self._counted, ours)

    def take_counts(self) -> dict[str, int]:
        """Local counts that changed since the last call (for the link)."""
        changed = {topic: self.local_count(topic) for topic in self._dirty_counts}
        self._dirty_counts.clear()
        return changed

    # -- messages ------------------------------------------------------------------

    def publish(self, topic: str, data: Message, sender: WebSocket | None = None) -> Published:
        """Deliver to local subscribers (except ``sender``) and queue for the rest.

        Returns how many local sockets it was queued on (awaitable: flow control).
        """
        _check_str("topic", topic)
        self.published += 1
        result = Published(self.deliver(topic, data, sender))
        if self.link is not None:
            self.outgoing.put((PUB, topic, data))
        if self.work >= WORK_BUDGET or len(self.outgoing.items) >= FLOW_LIMIT:
            result._waiter = self.pause
        return result

    def deliver(self, topic: str, data: Message, exclude: WebSocket | None = None) -> int:
        """Deliver to this process's subscribers only."""
        members = self._topics.get(topic)
        if not members:
            return 0
        self.work += len(members)
        count = 0
        for ws in members:
            if ws is not exclude and ws.send(data):
                count += 1
        self.delivered += count
        return count

    def send(self, socket_id: str, data: Message) -> Sent:
        """Send to one socket wherever it lives; true if it is local and queued
        (awaitable: flow control)."""
        _check_str("socket id", socket_id)
        ws = self._sockets.get(socket_id)
        if ws is not None:
            return Sent(1 if ws.send(data) else 0)
        result = Sent(0)
        if self.link is not None:
            self.outgoing.put((SEND, socket_id, data))
            if len(self.outgoing.items) >= FLOW_LIMIT:
                result._waiter = self.wait_flowing
        return result

    def deliver_to(self, socket_id: str, data: Message) -> bool:
        ws = self._sockets.get(socket_id)
        return ws is not None and bool(ws.send(data))

    # -- flow control ------------------------------------------------------------------

    @property
    def congested(self) -> bool:
        """True while the link to the other processes has ``FLOW_LIMIT``
        operations or more waiting: publishers should wait."""
        return len(self.outgoing.items) >= FLOW_LIMIT

    async def wait_flowing(self) -> None:
        """Wait until the link is no longer congested (at once without a link)."""
        if self.link is not None and self.congested:
            await self.link.wait_flowing()

    async def pause(self) -> None:
        """After ``WORK_BUDGET`` deliveries, let the rest of the process run
        (heartbeats, other sockets, timers); then wait while the link is
        congested. What ``await publish`` and a publishing socket's loop do."""
        if self.work >= WORK_BUDGET and self.checkpoint is not None:
            self.work = 0
            await self.checkpoint()
        await self.wait_flowing()

    def take_outgoing(self, limit: int) -> list[Operation]:
        """Up to ``limit`` queued operations, oldest first (for the link).
        Ends a drop episode: the number dropped during it is logged once."""
        taken = self.outgoing.take(limit)
        if len(self.outgoing.items) < FLOW_LIMIT:
            self.outgoing.caught_up()
        return taken

    def queue_sync(self, number: int) -> None:
        """Queue a barrier the hub answers once everything before it is applied."""
        if self.link is not None:
            self.outgoing.put_always((SYNC, number, None))  # never dropped: someone waits for it

    # -- internals -------------------------------------------------------------------

    def _queue(self, operation: Operation) -> None:
        if self.link is not None:
            self.outgoing.put(operation)

    def _wakeup(self) -> None:
        """The outbox got its first operation: the link should send soon."""
        if self.link is not None:
            self.link.wakeup()

    @property
    def dropped(self) -> int:
        """Operations the outbox to the other processes had no room for."""
        return self.outgoing.dropped

    def _count_changed(self, topic: str) -> None:
        if self.link is not None:
            if not self._dirty_counts and not self.outgoing.items:
                self.link.wakeup()
            self._dirty_counts.add(topic)

    def topic_sizes(self) -> Iterator[tuple[str, int]]:
        """Each topic with its number of subscribers in this process."""
        return ((topic, len(members)) for topic, members in self._topics.items())

    def statistics(self) -> dict[str, int]:
        return {
            "topics": len(self._topics),
            "subscriptions": sum(len(m) for m in self._topics.values()),
            "sockets": len(self._sockets),
            "dropped": self.dropped,
        }
