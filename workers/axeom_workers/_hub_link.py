"""A worker's link to the pub/sub hub: batched operations out, deliveries in.

Every operation ``PubSub`` queued since the last pass (subscribe, publish,
send, count changes) leaves in as few nng messages as possible: one message
costs ~80-100 us under trio, a hundred small ones packed together cost about
the same. Deliveries from the hub arrive on this worker's own PULL socket, so
the hub sends each worker only what its sockets subscribed to.

Overload: delivering one publish costs one ``ws.send`` per local subscriber,
so both directions work in bounded slices and let the rest of the worker run
(heartbeats, other sockets, timers) between them; while more than
``FLOW_LIMIT`` operations wait to leave, publishers wait (see
``NativeConnection``) and ``await ws.publish`` blocks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pynng
import trio

from axeom import wire
from axeom.pubsub import WORK_BUDGET, PubSub
from axeom.wire import COUNTS, PUB, SEND, SYNCED, Operation

__all__ = ["ASYNCIO_WAITS", "TRIO_WAITS", "AppWaits", "HubLink"]

logger = logging.getLogger("axeom.worker")

# Operations per nng message: large enough to amortise a send, small enough
# that the hub and the receiving workers handle one in a bounded slice.
MAX_BATCH = 1_000
# How long ``await ws.subscribe`` waits for the hub's acknowledgement (the hub
# or the Redis bridge may be restarting); after that it returns anyway.
SYNC_TIMEOUT = 5.0


@dataclass(frozen=True)
class AppWaits:
    """How the app's coroutines wait on the link, on the loop they run on.

    The link itself is trio code, but ``await ws.subscribe`` and a publisher
    held by flow control wait in a handler: on trio, or on asyncio when the
    worker runs trio as a guest of an asyncio loop (then the link's trio code
    sets the asyncio events, a plain call on the same thread).
    """

    event: Callable[[], Any]  # a new trio.Event or asyncio.Event
    wait_for: Callable[[Any, float], Awaitable[bool]]  # True if set within the time


async def _trio_wait_for(event: trio.Event, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        await event.wait()
        return True
    return False


async def _asyncio_wait_for(event: asyncio.Event, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


TRIO_WAITS = AppWaits(trio.Event, _trio_wait_for)
ASYNCIO_WAITS = AppWaits(asyncio.Event, _asyncio_wait_for)


class HubLink:
    """The ``Link`` of a worker's ``PubSub``."""

    def __init__(self, pubsub: PubSub, key: str, waits: AppWaits = TRIO_WAITS) -> None:
        self.pubsub = pubsub
        self.key = key
        self.waits = waits
        self._wake = trio.Event()
        self._flowing = waits.event()
        self._syncs: dict[int, Any] = {}  # events of waits.event()
        self._numbers = itertools.count(1)
        self.dropped = 0  # operations the hub did not take in time
        self._dropping = 0  # ... in the current episode
        self._mismatches = wire.MismatchLog(logger, "pub/sub deliveries")

    def wakeup(self) -> None:
        self._wake.set()

    async def wait_flowing(self) -> None:
        while self.pubsub.congested:
            await self._flowing.wait()

    async def wait_subscribed(self) -> None:
        """A barrier through the hub: it answers once it applied everything
        this worker queued before (and the bridge subscribed in Redis)."""
        number = next(self._numbers)
        done = self._syncs[number] = self.waits.event()
        self.pubsub.queue_sync(number)
        try:
            confirmed = await self.waits.wait_for(done, SYNC_TIMEOUT)
        finally:
            self._syncs.pop(number, None)
        if not confirmed:
            logger.warning("pub/sub hub did not confirm a subscription within %ss", SYNC_TIMEOUT)

    async def send_loop(self, push: pynng.Socket) -> None:
        pubsub = self.pubsub
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            # Let the handlers that are ready to run queue their operations too.
            await trio.lowlevel.checkpoint()
            while True:
                operations = pubsub.take_outgoing(MAX_BATCH)
                counts = pubsub.take_counts()
                if not operations and not counts:
                    break
                await self._send(push, operations, counts)
                if not pubsub.congested:
                    self._flowing.set()
                    self._flowing = self.waits.event()

    async def _send(
        self, push: pynng.Socket, operations: Sequence[Operation], counts: dict[str, int]
    ) -> None:
        try:
            await push.asend(wire.encode_batch(self.key, operations, counts))
        except pynng.exceptions.Timeout:
            # The hub is not taking batches: drop this one (at most once).
            if not self._dropping:
                logger.warning("pub/sub hub not responding: dropping operations")
            self._dropping += len(operations)
            self.dropped += len(operations)
            return
        if self._dropping:
            logger.warning("pub/sub hub responds again; %d operations dropped", self._dropping)
            self._dropping = 0

    async def receive_loop(self, pull: pynng.Socket) -> None:
        pubsub = self.pubsub
        while True:
            data = await pull.arecv()
            operations = self._mismatches.decode(
                wire.decode_operations, data, "pub/sub deliveries", "the hub"
            )
            if operations is None:
                continue
            for code, subject, payload in operations:
                if code == PUB:
                    pubsub.deliver(subject, payload)
                    if pubsub.work >= WORK_BUDGET:
                        pubsub.work = 0
                        await trio.lowlevel.checkpoint()  # bounded slice, then the rest
                elif code == SEND:
                    pubsub.deliver_to(subject, payload)
                elif code == COUNTS:
                    pubsub.update_counts(subject, payload)
                elif code == SYNCED:
                    done = self._syncs.get(subject)
                    if done is not None:
                        done.set()
                else:
                    logger.warning("unknown hub operation %r", code)
