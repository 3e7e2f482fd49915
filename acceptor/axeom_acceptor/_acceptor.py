"""The acceptor process: accept, handshake, place on a worker, hand off.

It owns no listening socket of its own: the supervisor binds it and passes
it down, so connections queue in the kernel's backlog while an acceptor
restarts. Placement is "fewest open sockets": the workers' own counts
(relayed by the supervisor once per heartbeat) plus what was handed to
each since. A worker whose channel fails is taken out of placement on the
spot, before the supervisor has even noticed the exit.

SIGTERM stops accepting at once and lets the handshakes in flight finish
(within ``graceful_timeout``): during a reload the next acceptor is already
accepting on the same listening socket, so no client is refused.

The worker, not the acceptor, writes the 101: the acceptor sends the socket
with the 101's bytes, keeps its copy, and waits for the worker's answer
(several hand-offs are in flight on a channel at once). A worker that
cannot take it (out of descriptors, draining) says so, and the socket goes
to another worker or is answered 503: a client never gets a 101 that leads
nowhere. A worker of another wire version writes the 101 and a close 1012
itself and says so (see ``axeom.wire``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pynng
import trio

from axeom import Axeom, Request, Response, ipc, wire
from axeom.process import REPORT_SEND_TIMEOUT_MS, heartbeat_forever
from axeom.security import Admission, connection_limits, limits_hit
from axeom.trio_runtime import (
    Accepted,
    HandshakeCounters,
    HandshakeLimits,
    PendingHead,
    PendingHeads,
    SocketTransport,
    accept_forever,
    answer_handshake,
    handoff,
    serialize_response,
)

__all__ = ["Acceptor", "AcceptorSettings"]

logger = logging.getLogger("axeom.acceptor")

# How long a new acceptor waits for the supervisor's first worker table before
# it accepts anyway (answering 503 while it knows no worker); connections wait
# in the backlog meanwhile.
TABLE_WAIT = 10.0
# How long a worker may take to answer a hand-off. A healthy worker answers
# within milliseconds; one that does not is stuck (the supervisor will
# replace it), and its client gets a 503 rather than waiting on.
HANDOFF_REPLY_TIMEOUT = 5.0
# How often the hand-offs waiting past HANDOFF_REPLY_TIMEOUT are looked for:
# one sweep for all of them is cheaper than a timeout per hand-off, and a
# stuck worker's client waits at most this much longer.
HANDOFF_SWEEP_INTERVAL = 1.0
# What the acceptor makes of a channel that ended, or a worker that did not answer in time.
GONE, LATE = -1, -2

# Written by the acceptor itself: when the hand-off could not be built (500), and
# when no worker took the socket (503) -- in both cases before any 101.
UNSENDABLE = serialize_response(Response.error(500, "Internal Server Error"), close=True)
# No worker known (none started yet, all gone) or none could take the socket.
NO_WORKER = Response.error(503, "no worker available, retry shortly", [("retry-after", "1")])
UNPLACED = serialize_response(NO_WORKER, close=True)


@dataclass(frozen=True)
class AcceptorSettings:
    run_dir: str
    heartbeat_interval: float
    limits: HandshakeLimits = field(default_factory=HandshakeLimits)
    generation: int = 1
    graceful_timeout: float = 10.0
    # TLS: connections are placed on a worker right after accept, before any
    # byte is read (the worker runs TLS and the handshake): see ``_place``.
    tls: bool = False


@dataclass(eq=False, slots=True)
class _Reply:
    """A hand-off waiting for its worker's answer: its task is parked until
    ``resolve`` is called, once, by whoever takes it out of
    ``WorkerSlot.replies`` (the reply reader, the sweeper, ``close``).

    Cheaper than an Event and a cancel scope per hand-off, which showed in
    the handshake rate.
    """

    task: trio.lowlevel.Task
    deadline: float  # trio time after which the answer is LATE
    admission: Admission | None = None  # the socket's place under the connection limits
    outcome: int = GONE

    def resolve(self, outcome: int) -> None:
        self.outcome = outcome
        trio.lowlevel.reschedule(self.task)


@dataclass
class WorkerSlot:
    """What the acceptor knows of one worker generation."""

    worker_id: str
    generation: int
    path: str
    channel: socket.socket | None = None
    reported_sockets: int = 0
    reported_received: int = 0
    handed: int = 0
    alive: bool = True
    # The worker reports how many sockets it received in its lifetime, from
    # every acceptor it served; ours are only those past the first report we
    # saw. Without this base a restarted acceptor (handed == 0) would think a
    # long-running worker had taken all its sockets already and pile onto one.
    received_base: int | None = None
    handed_base: int = 0
    replies: dict[int, _Reply] = field(default_factory=dict)  # by hand-off sequence number
    # Sockets this worker took that count under the connection limits, by
    # hand-off sequence number, until it reports them ended (``wire.CLOSED``).
    open: dict[int, Admission] = field(default_factory=dict)

    @property
    def load(self) -> int:
        """Open sockets as last reported, plus ours the report does not show yet."""
        if self.received_base is None:
            return self.reported_sockets + self.handed
        since_report = self.reported_received - self.received_base
        return self.reported_sockets + max(0, self.handed - self.handed_base - since_report)

    def report(self, sockets: int, received: int) -> None:
        """A worker's heartbeat figures, as relayed by the supervisor."""
        if self.received_base is None:
            self.received_base, self.handed_base = received, self.handed
        self.reported_sockets, self.reported_received = sockets, received

    def taken(self, seq: int, reply: _Reply) -> None:
        """The worker took the socket: it counts as open until it reports it ended."""
        if reply.admission is not None:
            self.open[seq] = reply.admission

    def ended(self, seq: int) -> None:
        admission = self.open.pop(seq, None)
        if admission is not None:
            admission.release()

    def close(self) -> None:
        self.alive = False
        replies, self.replies = self.replies, {}
        for reply in replies.values():
            reply.resolve(GONE)  # the worker never answered, so it wrote no 101
        # Its sockets went with it (or can no longer be reported on).
        opened, self.open = self.open, {}
        for admission in opened.values():
            admission.release()
        if self.channel is not None:
            # Wake a hand-off parked on this channel (it then places elsewhere).
            trio.lowlevel.notify_closing(self.channel)
            self.channel.close()
            self.channel = None


class Acceptor:
    """``handle`` runs the app on a request (its hooks, ``derive``), on the loop
    application code runs on: ``app.handle`` awaited here on trio unless given;
    everything else of the acceptor is trio code."""

    def __init__(
        self,
        app: Axeom,
        listener: socket.socket,
        settings: AcceptorSettings,
        handle: Callable[[Request], Awaitable[Response]] | None = None,
    ) -> None:
        self.app = app
        self.handle = handle
        self.listener = listener
        self.settings = settings
        self.paths = ipc.RunPaths(settings.run_dir)
        self.slots: dict[tuple[str, int], WorkerSlot] = {}
        self.handed_total = 0
        self.counters = HandshakeCounters()
        self.unplaced_total = 0
        self.table_received = trio.Event()
        self._accepting = trio.CancelScope()
        self.pending = PendingHeads(settings.limits, self.counters)
        self._sequence = itertools.count()
        self._nursery: trio.Nursery | None = None
        # Where handshakes run: the nursery a graceful stop waits for.
        self._clients: trio.Nursery | None = None
        self._refusals = 0  # sockets answered 503 because every worker refused them
        # Every handshake of the node passes here: the security plugin's
        # connection limits are held here (None without them).
        self.limits = connection_limits(app)
        self._mismatches = wire.MismatchLog(logger, "hand-off answers or events")

    # -- placement ---------------------------------------------------------------

    def choose(self, exclude: tuple[WorkerSlot, ...] = ()) -> WorkerSlot | None:
        best: WorkerSlot | None = None
        for slot in self.slots.values():
            if (
                slot.alive
                and slot.channel is not None
                and (best is None or slot.load < best.load)
                and all(slot is not other for other in exclude)
            ):
                best = slot
        return best

    def admit(self) -> Response | None:
        if self.choose() is None:
            self.unplaced_total += 1
            return NO_WORKER
        return None

    def update_workers(self, workers: list[wire.WorkerEntry]) -> None:
        """Apply the supervisor's worker table: connect new ones, drop gone ones."""
        seen = set()
        for info in workers:
            key = (info.name, info.generation)
            seen.add(key)
            slot = self.slots.get(key)
            if slot is None:
                slot = self.slots[key] = WorkerSlot(info.name, info.generation, info.handoff)
                self._connect(slot)
            elif slot.alive and slot.channel is None:
                self._connect(slot)
            if info.received is not None:
                slot.report(info.sockets, info.received)
        for key in list(self.slots):
            if key not in seen:
                self.slots.pop(key).close()

    def _connect(self, slot: WorkerSlot) -> None:
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            channel.connect(slot.path)
        except OSError as exc:
            logger.warning("cannot reach %s yet (%s)", slot.worker_id, exc)
            channel.close()
            return
        channel.setblocking(False)
        handoff.tune(channel)
        slot.channel = channel
        if self._nursery is not None:
            self._nursery.start_soon(self._replies, slot, channel)

    # -- serving -----------------------------------------------------------------

    async def run(self) -> None:
        with (
            pynng.Push0(dial=self.paths.reports, send_timeout=REPORT_SEND_TIMEOUT_MS) as reports,
            pynng.Sub0(dial=self.paths.events) as events,
        ):
            events.subscribe(wire.subscription(ipc.TOPIC_ACCEPTOR))
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._events, events, reports)
                nursery.start_soon(self._heartbeats, reports)
                nursery.start_soon(self._signals, nursery)
                nursery.start_soon(self._sweep_late_replies)
                await self._accept(reports)
                # The last figures, so that status totals lose nothing to a reload.
                await reports.asend(self._report())
                nursery.cancel_scope.cancel()

    async def _accept(self, reports: pynng.Socket) -> None:
        """Accept until SIGTERM, then let the handshakes in flight finish."""
        async with trio.open_nursery() as clients:
            with self._accepting:
                # Accept only once the worker table is known; until then
                # connections wait in the listening socket's backlog.
                with trio.move_on_after(TABLE_WAIT):
                    await self.table_received.wait()
                ready = wire.ready("acceptor", self.settings.generation, os.getpid())
                await reports.asend(ready)  # "ready" means accepting: a reload waits for it
                self._clients = clients
                await accept_forever(self.listener, self._on_client, self.pending.evict_oldest)
            # Our copy of the listening socket is not needed to finish the
            # handshakes in flight; the supervisor (or a new acceptor) holds its own.
            self.listener.close()
            clients.cancel_scope.deadline = trio.current_time() + self.settings.graceful_timeout

    async def _events(self, events: pynng.Socket, reports: pynng.Socket) -> None:
        while True:
            data = await events.arecv()
            event = self._mismatches.decode(
                wire.decode_event, data, "event from the supervisor", "the supervisor"
            )
            if isinstance(event, wire.WorkerTable):
                self.update_workers(event.workers)
                self.table_received.set()
                # Confirmed at once: the supervisor stops a worker it dropped
                # from the table only once no acceptor will place on it.
                ack = wire.table_ack("acceptor", self.settings.generation, os.getpid(), event.seq)
                await reports.asend(ack)

    async def _heartbeats(self, reports: pynng.Socket) -> None:
        async def report() -> None:
            await reports.asend(self._report())
            self.pending.report_if_due()

        async def exit_now() -> None:
            logger.error("supervisor is gone: acceptor exiting")
            raise SystemExit(1)

        await heartbeat_forever(report, self.settings.heartbeat_interval, trio.sleep, exit_now)

    def _report(self) -> bytes:
        """A heartbeat with this acceptor's counters (totals since it started)."""
        figures = {
            "handed": self.handed_total,
            "unplaced": self.unplaced_total,
            **self.counters.report(),
            "limits": limits_hit(self.app),
        }
        return wire.heartbeat("acceptor", self.settings.generation, os.getpid(), figures)

    async def _signals(self, nursery: trio.Nursery) -> None:
        """The first SIGTERM stops accepting (handshakes in flight finish);
        a second one stops at once."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                if self._accepting.cancel_called:
                    nursery.cancel_scope.cancel()
                    return
                logger.info("acceptor stopping: finishing the handshakes in flight")
                self._accepting.cancel()

    def _on_client(self, sock: socket.socket, address: Any) -> None:
        """Just accepted: count it among the unfinished heads (or shed it) and serve it."""
        if self.settings.tls:
            self._start_placing(sock, address)
            return
        transport = SocketTransport(sock)
        head = self.pending.enter(transport, address[0])
        if head is not None:
            nursery = self._clients or self._nursery
            assert nursery is not None
            nursery.start_soon(self._serve_client, transport, head, address)

    async def _serve_client(
        self, transport: SocketTransport, head: PendingHead, address: Any
    ) -> None:
        try:
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            accepted = await answer_handshake(
                self.app,
                transport,
                tuple(address[:2]),
                self.settings.limits,
                self.admit,
                pending=head,
                counters=self.counters,
                handle=self.handle,
            )
            if accepted is not None:
                taken = False
                try:
                    taken = await self._hand_off(transport, accepted)
                finally:
                    if accepted.admission is not None and not taken:
                        accepted.admission.release()
        except Exception:
            logger.exception("internal error in the acceptor; connection dropped")
        finally:
            transport.close()

    # -- TLS: placement before the handshake ------------------------------------

    def _start_placing(self, sock: socket.socket, address: Any) -> None:
        """A TLS connection: to a worker at once (``_place``), unless the
        security plugin's connection limits refuse its peer address. The head
        is never read here, so a refusal can only close the connection (no
        HTTP answer can be written before TLS) and a forwarded address is not
        known: behind a proxy, TLS ends at the proxy."""
        peer = (str(address[0]), int(address[1]))
        admission = None
        if self.limits is not None:
            if self.limits.admit(peer[0]) is not None:  # counted among the limits hit
                sock.close()
                return
            admission = self.limits.admission(peer[0])
        nursery = self._clients or self._nursery
        assert nursery is not None
        nursery.start_soon(self._place, sock, peer, admission)

    async def _place(
        self, sock: socket.socket, address: tuple[str, int], admission: Admission | None
    ) -> None:
        """Place a connection nothing was read from on a worker that takes it,
        trying each at most once. The worker runs TLS, reads the head, runs
        ``app.handle`` and answers it (its rejections, its 101). If no worker
        takes it, it is closed: before the TLS handshake nothing readable can
        be written (a client sees a failed handshake and retries)."""
        try:
            blob = wire.encode_connection(address)
            tried: tuple[WorkerSlot, ...] = ()
            while (slot := self.choose(tried)) is not None:
                tried += (slot,)
                outcome = await self._offer(slot, sock.fileno(), blob, admission)
                if outcome == wire.TAKEN:  # the worker says when it ends (admission)
                    self.handed_total += 1
                    admission = None
                    return
                if outcome == LATE:
                    # The worker may still take it: stop it from serving a client we dropped.
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    break
            self.unplaced_total += 1
            if not self._refusals:
                logger.warning("no worker took a TLS connection (%d tried): closed", len(tried))
            self._refusals += 1
        except Exception:
            logger.exception("internal error placing a TLS connection; connection dropped")
        finally:
            sock.close()
            if admission is not None:
                admission.release()

    async def _hand_off(self, transport: SocketTransport, accepted: Accepted) -> bool:
        """Place the socket on a worker that takes it, trying each at most
        once; answer 503 if none does. Our copy is closed by the caller.
        True if a worker took it (its admission is then the worker slot's)."""
        # The worker names the socket: its id then tells app.send where it lives.
        try:
            blob = wire.encode_handoff(
                accepted.upgrade, accepted.trailing, "", accepted.response_head
            )
        except wire.WireError as exc:
            logger.error("cannot hand off a socket: %s; answering 500", exc)
            self.counters.count(500, True)
            accepted.log_access(500)
            with contextlib.suppress(trio.BrokenResourceError):
                transport.try_send([UNSENDABLE])
            return False
        tried: tuple[WorkerSlot, ...] = ()
        while (slot := self.choose(tried)) is not None:
            tried += (slot,)
            outcome = await self._offer(slot, transport.sock.fileno(), blob, accepted.admission)
            if outcome == wire.TAKEN:
                self.handed_total += 1
                self.counters.count(101, True)
                accepted.log_access(101)
                if self._refusals:
                    logger.warning(
                        "placing sockets again after answering %d with 503", self._refusals
                    )
                    self._refusals = 0
                return True
            if outcome == LATE:
                # The worker may still take it later: make sure it cannot
                # write a 101 after our 503 (shutdown acts on the socket, not
                # on our descriptor).
                logger.warning("worker %s did not answer a hand-off in time", slot.worker_id)
                self._count_unplaced(tried)
                accepted.log_access(503)
                with contextlib.suppress(trio.BrokenResourceError, OSError):
                    transport.try_send([UNPLACED])
                    transport.sock.shutdown(socket.SHUT_RDWR)
                return False
            if outcome == wire.OTHER_VERSION:
                accepted.log_access(101)
                return False  # that worker wrote the 101 and a close 1012 (service restart)
            if outcome == GONE:
                logger.warning("worker %s unreachable; placing elsewhere", slot.worker_id)
        self._count_unplaced(tried)
        accepted.log_access(503)
        # Closed at once, not lingering like other rejections: this happens
        # when descriptors are short, and the head was read to its end.
        with contextlib.suppress(trio.BrokenResourceError):
            transport.try_send([UNPLACED])
        return False

    async def _offer(
        self, slot: WorkerSlot, fd: int, blob: bytes, admission: Admission | None = None
    ) -> int:
        """Hand ``fd`` to one worker; its answer, GONE or LATE. The socket
        counts in the worker's load while the answer is awaited, so that a
        burst of hand-offs is spread as before; a refusal takes it back."""
        outcome = await self._offer_and_wait(slot, fd, blob, admission)
        if outcome != wire.TAKEN:
            slot.handed -= 1
        return outcome

    async def _offer_and_wait(
        self, slot: WorkerSlot, fd: int, blob: bytes, admission: Admission | None
    ) -> int:
        assert slot.channel is not None
        seq = next(self._sequence)
        slot.handed += 1
        try:
            await handoff.send_socket(slot.channel, fd, seq, blob)
        except handoff.HandoffError:
            slot.close()
            return GONE
        # Registered only once sent: no checkpoint between here and parking,
        # so nothing can resolve it before this task waits.
        reply = slot.replies[seq] = _Reply(
            trio.lowlevel.current_task(), trio.current_time() + HANDOFF_REPLY_TIMEOUT, admission
        )

        def abort(_: Any) -> trio.lowlevel.Abort:
            slot.replies.pop(seq, None)  # cancelled (a graceful stop's deadline)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return reply.outcome

    async def _sweep_late_replies(self) -> None:
        """Answer LATE to every hand-off waiting past its deadline."""
        while True:
            await trio.sleep(HANDOFF_SWEEP_INTERVAL)
            now = trio.current_time()
            for slot in self.slots.values():
                late = []
                for seq, reply in slot.replies.items():
                    if reply.deadline > now:
                        break  # oldest first (insertion order): the rest are younger
                    late.append(seq)
                for seq in late:
                    slot.replies.pop(seq).resolve(LATE)

    def _count_unplaced(self, tried: tuple[WorkerSlot, ...]) -> None:
        """Count a socket no worker took (answered 503); say so once per episode."""
        self.unplaced_total += 1
        self.counters.count(503, True)
        if not self._refusals:
            logger.warning(
                "no worker took a socket (%d tried): answering 503 until one does", len(tried)
            )
        self._refusals += 1

    async def _replies(self, slot: WorkerSlot, channel: socket.socket) -> None:
        """Match a worker's answers to the hand-offs waiting for them, until
        its channel ends (then the ones still waiting go elsewhere)."""
        while (answers := await handoff.receive_replies(channel)) is not None:
            if answers.version != wire.WIRE_VERSION:
                error = wire.VersionMismatch(answers.version, slot.worker_id)
                self._mismatches.report(error, "its outcome codes are read as they are frozen")
            for seq, outcome in answers.pairs:
                if outcome == wire.CLOSED:
                    slot.ended(seq)
                    continue
                reply = slot.replies.pop(seq, None)
                if reply is not None:
                    if outcome == wire.TAKEN:
                        # Now, not when its task resumes: the socket's end
                        # may be in the next datagram, read before that.
                        slot.taken(seq, reply)
                    reply.resolve(outcome)
        if slot.channel is channel:
            slot.close()
