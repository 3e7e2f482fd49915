"""A bounded queue of operations waiting for the next batched send to another process.

Two links batch this way: a worker's ``PubSub`` toward the pub/sub hub, and the
hub toward the Redis bridge. Each sends everything queued since its last pass as
one nng message (one message costs ~80-100 us under trio; a hundred small ones
packed together cost about the same). When the other side does not keep up, the
queue must not grow without bound: past ``MAX_OUTGOING`` new operations are
dropped (at most once, like every delivery of pub/sub), counted, and logged once
per episode: when dropping starts, and with the number dropped when the link
catches up. Barriers (``sync``) are never dropped: a caller waits for their answer.

Sans-IO: the owner is told when the queue becomes non-empty (``wake``) and says
when its link caught up (``caught_up``); sending is its job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["MAX_OUTGOING", "Outbox"]

# Operations waiting beyond this are dropped: memory stays bounded when the
# receiving process is slow or gone (a few tens of MB of small operations).
MAX_OUTGOING = 100_000


Item = TypeVar("Item")


class Outbox(Generic[Item]):
    """Operations for one link, oldest first, bounded by ``MAX_OUTGOING``.

    ``dropping`` is logged (as is) at the first drop of an episode, and
    ``caught_up`` (a format with one ``%d``, the number dropped) when the owner
    calls ``caught_up()`` after drops.
    """

    __slots__ = ("_caught_up", "_dropping", "_logger", "_start", "_wake", "dropped", "items")

    def __init__(
        self, wake: Callable[[], None], logger: logging.Logger, *, dropping: str, caught_up: str
    ) -> None:
        self.items: list[Item] = []
        self.dropped = 0  # in this outbox's lifetime
        self._dropping = 0  # in the current episode
        self._wake = wake
        self._logger = logger
        self._start = dropping
        self._caught_up = caught_up

    def __len__(self) -> int:
        return len(self.items)

    def put(self, operation: Item) -> None:
        """Queue ``operation``, or drop and count it when the outbox is full."""
        items = self.items
        if not items:
            self._wake()
        elif len(items) >= MAX_OUTGOING:
            self.drop(1)
            return
        items.append(operation)

    def put_always(self, operation: Item) -> None:
        """Queue a barrier: never dropped, someone waits for its answer."""
        if not self.items:
            self._wake()
        self.items.append(operation)

    def take(self, limit: int | None = None) -> list[Item]:
        """Up to ``limit`` operations (all without one), oldest first."""
        items = self.items
        if limit is None or len(items) <= limit:
            self.items = []
            return items
        taken = items[:limit]
        del items[:limit]
        return taken

    def drop(self, count: int) -> None:
        """Count ``count`` operations lost on this link (full, or a send timed out)."""
        if not self._dropping:
            self._logger.warning(self._start)
        self._dropping += count
        self.dropped += count

    def caught_up(self) -> None:
        """The link keeps up again: log how many were dropped meanwhile, once."""
        if self._dropping:
            self._logger.warning(self._caught_up, self._dropping)
            self._dropping = 0
