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
from axeom.outbox import Outbox
from axeom.wire import COUNTS, SYNC, TOPICS, Operation

__all__ = ["BridgeLink"]

logger = logging.getLogger("axeom.hub")

# How long the first send waits for the link to the bridge that just reported
# ready to be connected: the hub's dialer reconnects on its own schedule, and a
# loaded machine can take longer than one send timeout to get there.
CONNECT_WAIT = 5.0
CONNECT_POLL = 0.01


class BridgeLink:
    """Implements the hub's ``RemoteBridge``."""

    def __init__(self) -> None:
        self._wake = trio.Event()
        # Send timeouts count as drops of the same episode as a full outbox.
        self.outgoing: Outbox[Operation] = Outbox(
            self._wake_sender,
            logger,
            dropping="Redis bridge not keeping up: dropping operations for other nodes",
            caught_up="Redis bridge keeps up again; %d operations dropped",
        )
        # Set when the bridge process first reports ready. Until then nothing is
        # sent: a send would only time out and count as a drop (and log "not keeping
        # up") on every healthy start; what waits is sent then, with the resync.
        self.started = trio.Event()

    @property
    def dropped(self) -> int:
        return self.outgoing.dropped

    def forward(self, operation: Operation) -> None:
        self.outgoing.put(operation)

    def sync(self, worker: str, number: int) -> None:
        """The bridge answers ``SYNCED`` once Redis confirmed every topic so far."""
        self.outgoing.put_always((SYNC, worker, number))  # never dropped: a worker waits

    def topics_changed(self, subscribed: set[str], unsubscribed: set[str]) -> None:
        self.outgoing.put((TOPICS, sorted(subscribed), sorted(unsubscribed)))

    def counts(self, totals: dict[str, int]) -> None:
        self.outgoing.put((COUNTS, totals, None))

    def _wake_sender(self) -> None:
        self._wake.set()

    async def send_loop(self, push: pynng.Socket) -> None:
        await self.started.wait()
        with trio.move_on_after(CONNECT_WAIT):
            while not push.pipes:  # ready, but our dialer has not reconnected yet
                await trio.sleep(CONNECT_POLL)
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await trio.lowlevel.checkpoint()
            batch = self.outgoing.take()
            if batch:
                try:
                    await push.asend(wire.encode_operations(batch))
                except pynng.exceptions.Timeout:
                    # No bridge (restarting, or Redis link stuck): drop rather
                    # than deliver late.
                    self.outgoing.drop(len(batch))
                    continue
                self.outgoing.caught_up()
