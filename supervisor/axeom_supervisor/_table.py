"""The worker table: which workers the acceptor may place sockets on.

The supervisor publishes it to the acceptor whenever it changes (a worker
ready, exited, about to be stopped) and once per heartbeat interval, with
each worker's last reported load. Tables are numbered, and the acceptor
confirms each one: before a worker is stopped on purpose, the supervisor
waits (bounded) until no acceptor will place on it any more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pynng
import trio

from axeom import wire

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["WorkerTable"]

# Seconds an acceptor has to confirm a new worker table before a worker it
# no longer lists is stopped anyway (it confirms in milliseconds).
TABLE_ACK_TIMEOUT = 2.0


class WorkerTable:
    """Publishes the table on the events socket and tracks confirmations."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self.events: pynng.Socket | None = None  # set once the socket is open
        self.seq = 0  # numbers the worker tables published to the acceptor
        self.acked_seq = 0  # the newest one an acceptor confirmed
        self._acked = trio.Event()

    def rows(self) -> list[wire.WorkerEntry]:
        """One row per running, ready worker: where to hand off, its last load."""
        table = []
        for child in self._supervisor.children:
            if child.role != "worker" or not child.ready.is_set() or child.state != "running":
                continue
            report = child.report
            assert child.handoff_path is not None
            table.append(
                wire.WorkerEntry(
                    child.name,
                    child.generation,
                    child.handoff_path,
                    report.get("sockets", 0),
                    report.get("received"),
                )
            )
        return table

    async def publish(self) -> None:
        if self.events is not None:
            self.seq += 1
            await self.events.asend(wire.worker_table(self.seq, self.rows()))

    def confirmed(self, seq: int) -> None:
        """An acceptor says it applied table ``seq``."""
        self.acked_seq = max(self.acked_seq, seq)
        self._acked.set()
        self._acked = trio.Event()

    async def publish_and_confirm(self) -> None:
        """Publish the worker table and wait (bounded) until the acceptor says
        it has it: a worker about to be stopped must get no more sockets."""
        await self.publish()
        seq = self.seq
        if self._supervisor.live("acceptor") is None:
            return
        with trio.move_on_after(TABLE_ACK_TIMEOUT):
            while self.acked_seq < seq:
                await self._acked.wait()

    async def publish_periodically(self) -> None:
        """Fresh load figures for placement, once per heartbeat interval."""
        while True:
            await trio.sleep(self._supervisor.config.workers.heartbeat_interval)
            await self.publish()
