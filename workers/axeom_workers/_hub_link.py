"""A worker's link to the pub/sub hub: batched operations out, deliveries in.

Every operation ``PubSub`` queued since the last pass (subscribe, publish,
send, count changes) leaves as one nng message: one message costs ~80-100 us
under trio, a hundred small ones packed together cost about the same.
Deliveries from the hub arrive on this worker's own PULL socket, so the hub
sends each worker only what its sockets subscribed to.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
import pynng
import trio

from axeom._pubsub import PubSub

__all__ = ["HubLink"]

logger = logging.getLogger("axeom.worker")


class HubLink:
    """The ``Bridge`` of a worker's ``PubSub``."""

    def __init__(self, pubsub: PubSub, key: str) -> None:
        self.pubsub = pubsub
        self.key = key
        self._wake = trio.Event()

    def wakeup(self) -> None:
        self._wake.set()

    async def send_loop(self, push: pynng.Socket) -> None:
        pubsub = self.pubsub
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            # Let the handlers that are ready to run queue their operations too.
            await trio.lowlevel.checkpoint()
            operations, pubsub.outgoing = pubsub.outgoing, []
            counts = pubsub.take_counts()
            if operations or counts:
                try:
                    await push.asend(msgpack.packb([self.key, operations, counts]))
                except pynng.exceptions.Timeout:
                    # The hub is not taking batches: drop this one (at most once).
                    logger.warning(
                        "pub/sub hub not responding: %d operations dropped", len(operations)
                    )

    async def receive_loop(self, pull: pynng.Socket) -> None:
        pubsub = self.pubsub
        while True:
            batch: list[list[Any]] = msgpack.unpackb(await pull.arecv())
            for operation in batch:
                kind = operation[0]
                if kind == "pub":
                    pubsub.deliver(operation[1], operation[2])
                elif kind == "send":
                    pubsub.deliver_to(operation[1], operation[2])
                elif kind == "counts":
                    pubsub.update_counts(operation[1], operation[2])
                else:
                    logger.warning("unknown hub operation %r", kind)
