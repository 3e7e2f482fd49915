"""The hub's side of the Redis bridge: a batched nng link to the bridge process.

Operations for other nodes (publishes, sends to sockets not on this node,
topic (un)subscriptions, this node's subscriber counts) are queued and sent
as one nng message per pass, like the workers' links to the hub (the
operations of ``axeom.wire``).
"""

from __future__ import annotations

import logging

import pynng
import trio

from axeom import wire
from axeom.wire import COUNTS, SYNC, TOPICS, Operation

__all__ = ["BridgeLink"]

logger = logging.getLogger("axeom.hub")

MAX_OUTGOING = 100_000
# How long the first send waits for the link to the bridge that just reported
# ready to be connected: the hub's dialer reconnects on its own schedule, and a
# loaded machine can take longer than one send timeout to get there.
CONNECT_WAIT = 5.0
CONNECT_POLL = 0.01


class BridgeLink:
    """Implements the hub's ``RemoteBridge``."""

    def __init__(self) -> None:
        self.outgoing: list[Operation] = []
        self._wake = trio.Event()
        self.dropped = 0
        self._dropping = 0  # drops in the current episode (logged when it ends)
        # Set when the bridge process first reports ready. Until then nothing is
        # sent: a send would only time out and count as a drop (and log "not keeping
        # up") on every healthy start; what waits is sent then, with the resync.
        self.started = trio.Event()

    def forward(self, operation: Operation) -> None:
        self._queue(operation)

    def sync(self, worker: str, number: int) -> None:
        """The bridge answers ``SYNCED`` once Redis confirmed every topic so far."""
        if not self.outgoing:
            self._wake.set()
        self.outgoing.append((SYNC, worker, number))  # never dropped: a worker waits

    def topics_changed(self, subscribed: set[str], unsubscribed: set[str]) -> None:
        self._queue((TOPICS, sorted(subscribed), sorted(unsubscribed)))

    def counts(self, totals: dict[str, int]) -> None:
        self._queue((COUNTS, totals, None))

    def _queue(self, operation: Operation) -> None:
        if not self.outgoing:
            self._wake.set()
        elif len(self.outgoing) >= MAX_OUTGOING:
            self._drop(1)  # the bridge is not keeping up: at most once
            return
        self.outgoing.append(operation)

    async def send_loop(self, push: pynng.Socket) -> None:
        await self.started.wait()
        with trio.move_on_after(CONNECT_WAIT):
            while not push.pipes:  # ready, but our dialer has not reconnected yet
                await trio.sleep(CONNECT_POLL)
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await trio.lowlevel.checkpoint()
            batch, self.outgoing = self.outgoing, []
            if batch:
                try:
                    await push.asend(wire.encode_operations(batch))
                except pynng.exceptions.Timeout:
                    # No bridge (restarting, or Redis link stuck): drop rather
                    # than deliver late.
                    self._drop(len(batch))
                    continue
                if self._dropping:
                    logger.warning(
                        "Redis bridge keeps up again; %d operations dropped", self._dropping
                    )
                    self._dropping = 0

    def _drop(self, count: int) -> None:
        if not self._dropping:
            logger.warning("Redis bridge not keeping up: dropping operations for other nodes")
        self._dropping += count
        self.dropped += count
