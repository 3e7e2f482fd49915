"""Telling an acceptor that the sockets it handed here have ended.

With the security plugin's connection limits, the acceptor counts every
socket it handed off as open (per client address, and in all) until the
worker that took it says it ended. The worker says so on the channel the
socket came by, as answers of outcome ``wire.CLOSED`` numbered like the
hand-off: nine bytes per socket, gathered while the loop runs and sent in
one datagram per wake, so nothing is added per message and little per socket.

A socket ends on whatever loop runs it (trio, or asyncio with trio as its
guest): ``reporter`` only appends, and wakes the sender through the trio
token, which may be called from either.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import trio

from axeom import wire
from axeom.trio_runtime import handoff

__all__ = ["ChannelCloses"]


class ChannelCloses:
    """The ended sockets of one acceptor channel, waiting to be reported."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.lock = trio.Lock()  # one sender on the channel at a time (answers, ends)
        self.token = trio.lowlevel.current_trio_token()
        self.pending: list[int] = []
        self.ended = False  # the channel is gone: nobody to tell
        self._wake = trio.Event()

    def reporter(self, seq: int) -> Callable[[], None]:
        """What the socket handed as ``seq`` calls once when it ends."""

        def report() -> None:
            if self.ended:
                return
            self.pending.append(seq)
            if len(self.pending) == 1:
                self.token.run_sync_soon(self._wake.set)

        return report

    def channel_ended(self) -> None:
        self.ended = True
        self.pending.clear()

    async def send_forever(self) -> None:
        """Send what has ended, batched, until the channel fails."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self.pending = self.pending, []
            try:
                for start in range(0, len(batch), handoff.MAX_BATCH):
                    pairs = [(seq, wire.CLOSED) for seq in batch[start : start + handoff.MAX_BATCH]]
                    async with self.lock:
                        await handoff.send_replies(self.channel, pairs)
            except handoff.HandoffError:
                self.channel_ended()
                return
