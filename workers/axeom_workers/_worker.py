"""One worker: receive sockets, run them, report load, drain on request.

After the hand-off, a socket's bytes never leave this process: the worker
runs it with the same runtime (``SocketRuntime``) as the single-process
server. Heartbeats are sent from the event loop itself, so a handler that
blocks the loop silences them and the supervisor notices.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import pynng
import trio
from websockets.frames import CloseCode

from axeom import Axeom, ipc, metrics, wire
from axeom.process import (
    EXIT_HUNG,
    REPORT_SEND_TIMEOUT_MS,
    STOP_SIGNALS,
    close_code_for,
    heartbeat_forever,
)
from axeom.security import limits_hit, tracks_sockets
from axeom.tls import TLSSettings, server_context
from axeom.trio_runtime import (
    HandshakeCounters,
    HandshakeLimits,
    PendingHeads,
    SocketRuntime,
    SocketTransport,
    TLSTransport,
    handoff,
    open_socket_runtime,
    reject,
    serve_connection,
)
from axeom.watchdog import Watchdog, beat_forever_trio, close_hung_sockets
from axeom.ws import Upgrade, socket_id_prefix

from ._closes import ChannelCloses
from ._hub_link import TRIO_WAITS, AppWaits, HubLink

__all__ = ["Sockets", "WorkerSettings", "run_worker"]

logger = logging.getLogger("axeom.worker")

# A send to the hub that cannot complete in this time is given up (the hub is
# stuck or gone): the worker's loop must never wait on it for long.
SEND_TIMEOUT_MS = 2000


class Sockets(Protocol):
    """Where the worker runs the sockets it receives: what its trio code
    needs of a socket runtime. ``trio_runtime.SocketRuntime`` on trio;
    ``asyncio_runtime.GuestSockets`` when the worker's trio code is a guest
    of an asyncio loop and the sockets (and every handler) run on asyncio."""

    @property
    def connections(self) -> Collection[Any]: ...

    @property
    def nursery(self) -> trio.Nursery: ...

    def start_socket(
        self,
        transport: SocketTransport,
        upgrade: Upgrade,
        trailing: bytes = b"",
        *,
        socket_id: str | None = None,
    ) -> None: ...

    async def drain(self, timeout: float, code: int = ...) -> int: ...


# Opens the worker's ``Sockets`` for an app (``open_socket_runtime`` on trio).
OpenSockets = Callable[[Axeom], AbstractAsyncContextManager[Sockets]]


@dataclass(frozen=True)
class WorkerSettings:
    worker_id: str
    generation: int
    run_dir: str
    heartbeat_interval: float
    graceful_timeout: float
    # With TLS the worker runs the handshake of the connections placed on it:
    # ``axeom.tls.TLSSettings`` and ``HandshakeLimits`` keyword arguments.
    tls: dict[str, Any] | None = None
    handshake: dict[str, Any] | None = None
    # The watchdog (axeom.watchdog): seconds a handler may hold the loop
    # before it is logged (0: no watchdog), and after how long a held loop
    # gets its sockets closed with 1011 and the process ended (None: never).
    block_warning: float = 0.0
    hang_after: float | None = None


class Worker:
    """``open_sockets`` and ``waits`` are the loop the application code runs
    on (trio unless given); everything else of the worker is trio code."""

    def __init__(
        self,
        app: Axeom,
        settings: WorkerSettings,
        open_sockets: OpenSockets = open_socket_runtime,
        waits: AppWaits = TRIO_WAITS,
    ) -> None:
        self.app = app
        self.settings = settings
        self.open_sockets = open_sockets
        self.waits = waits
        self.paths = ipc.RunPaths(settings.run_dir)
        self.routes = handoff.ws_routes(app)
        self.received = 0
        self.refused_no_fd = 0  # refusals of the current out-of-descriptors episode
        self.draining = False
        self.runtime: Sockets | None = None
        self.link: HubLink | None = None
        self._nursery: trio.Nursery | None = None
        self._mismatches = wire.MismatchLog(logger, "hand-offs")
        # With connection limits, the acceptor counts the sockets it handed
        # here as open until told that they ended.
        self.reports_closes = tracks_sockets(app)
        # TLS: built once per process; the handshakes run here, under the same
        # limits as in the acceptor (head size, request timeout, unfinished heads).
        self.ssl_context = (
            None if settings.tls is None else server_context(TLSSettings(**settings.tls))
        )
        self.limits = HandshakeLimits(**(settings.handshake or {}))
        self.counters = HandshakeCounters()
        self.pending = PendingHeads(self.limits, self.counters)

    async def run(self) -> None:
        settings = self.settings
        path = self.paths.handoff(settings.worker_id, settings.generation)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(path)
        listener.listen(16)
        listener.setblocking(False)
        key = f"{settings.worker_id}.{settings.generation}"
        pubsub_address = self.paths.worker_pubsub(settings.worker_id, settings.generation)
        link = self.link = HubLink(self.app.pubsub, key, self.waits)
        self.app.pubsub.link = link
        with (
            listener,
            pynng.Push0(dial=self.paths.reports, send_timeout=REPORT_SEND_TIMEOUT_MS) as reports,
            pynng.Push0(dial=self.paths.hub, send_timeout=SEND_TIMEOUT_MS) as hub_out,
            pynng.Pull0(listen=pubsub_address) as hub_in,
        ):
            async with self.open_sockets(self.app) as runtime, self._watchdog() as watchdog:
                self.runtime = runtime
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if watchdog is not None:
                        nursery.start_soon(beat_forever_trio, watchdog)
                    nursery.start_soon(self._accept_channels, listener, nursery)
                    nursery.start_soon(self._heartbeats, reports)
                    nursery.start_soon(self._signals, nursery)
                    nursery.start_soon(link.send_loop, hub_out)
                    nursery.start_soon(link.receive_loop, hub_in)
                    await reports.asend(
                        wire.worker_ready(
                            settings.worker_id,
                            settings.generation,
                            os.getpid(),
                            handoff=path,
                            pubsub=pubsub_address,
                            prefix=socket_id_prefix(),
                        )
                    )

    @contextlib.asynccontextmanager
    async def _watchdog(self) -> AsyncIterator[Watchdog | None]:
        """The watchdog thread while the worker serves (None if turned off).
        Its beat is a trio task: on an asyncio worker (a trio guest) it runs
        only when the host loop does, so it sees that loop held too."""
        settings = self.settings
        if settings.block_warning <= 0:
            yield None
            return
        watchdog = Watchdog(
            settings.block_warning, hang_after=settings.hang_after, on_hang=self._hung
        )
        with watchdog:
            yield watchdog

    def _hung(self) -> None:
        """From the watchdog thread: the loop is still held, past the
        supervisor's SIGTERM and close to its SIGKILL. Close what can be
        closed cleanly with 1011, and end the process now."""
        runtime = self.runtime
        closed, skipped = (0, 0) if runtime is None else close_hung_sockets(runtime.connections)
        logger.error(
            "event loop still held after %.0fs: closed %d socket(s) with 1011 (%d skipped: "
            "output partly written) and exiting",
            self.settings.hang_after,
            closed,
            skipped,
        )
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(EXIT_HUNG)

    async def _accept_channels(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        """The acceptor connects here (again after it restarts)."""
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                channel, _ = listener.accept()
            except BlockingIOError:
                continue
            channel.setblocking(False)
            handoff.tune(channel)
            nursery.start_soon(self._serve_channel, channel)

    async def _serve_channel(self, channel: socket.socket) -> None:
        """One acceptor's channel: its hand-offs, and (with connection limits)
        the ends of the sockets it handed, until it closes."""
        closes = ChannelCloses(channel) if self.reports_closes else None
        with channel:
            async with trio.open_nursery() as nursery:
                if closes is not None:
                    nursery.start_soon(closes.send_forever)
                await self._receive_sockets(channel, closes)
                nursery.cancel_scope.cancel()
        if closes is not None:
            closes.channel_ended()

    async def _receive_sockets(
        self, channel: socket.socket, closes: ChannelCloses | None = None
    ) -> None:
        """Take each handed-off socket and answer the acceptor: taken, or why not.

        The hand-offs queued when this task wakes are taken together and
        answered in one datagram (see ``handoff.receive_sockets``). The
        answer goes out before the sockets' tasks (which write the 101s)
        start, so an acceptor that never got an answer knows no 101 was written.
        """
        runtime = self.runtime
        assert runtime is not None
        while (batch := await handoff.receive_sockets(channel)) is not None:
            taken = [self._take(received) for received in batch]
            replies = [
                (received.seq, wire.TAKEN if isinstance(took, tuple) else took)
                for received, took in zip(batch, taken, strict=True)
            ]
            acceptor_gone = False
            try:
                if closes is None:
                    await handoff.send_replies(channel, replies)
                else:
                    async with closes.lock:  # the ends of sockets go out here too
                        await handoff.send_replies(channel, replies)
            except handoff.HandoffError:
                acceptor_gone = True  # its copies went with it: run what we took
            for received, took in zip(batch, taken, strict=True):
                if not isinstance(took, tuple):
                    continue
                sock, handed = took
                end = closes.reporter(received.seq) if closes and not acceptor_gone else None
                if isinstance(handed, tuple):  # TLS: the handshake runs here
                    runtime.nursery.start_soon(self._serve_tls, sock, handed, end)
                    continue
                handed.upgrade.on_end = end
                runtime.nursery.start_soon(self._run_socket, sock, handed)
            if acceptor_gone:
                return

    def _take(
        self, received: handoff.Received
    ) -> tuple[socket.socket, wire.HandedOff | tuple[str, int]] | int:
        """The socket and what to run it with (an upgrade, or for a TLS
        connection not yet read from, its client's address), or the refusal
        to answer."""
        runtime = self.runtime
        assert runtime is not None
        if received.fd is None:
            if not self.refused_no_fd:
                soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
                logger.warning(
                    "out of file descriptors (limit %d, %d sockets open): refusing "
                    "handed-off sockets; the acceptor places them elsewhere or answers 503",
                    soft,
                    len(runtime.connections),
                )
            self.refused_no_fd += 1
            return wire.NO_DESCRIPTOR
        if received.version != wire.WIRE_VERSION:
            return self._refuse_version(received.fd, received.version, received.head)
        handed: wire.HandedOff | tuple[str, int]
        try:
            if wire.is_connection(received.head):
                handed = self._connection(received.body)
                remote: tuple[str, int] | None = handed
            else:
                handed = wire.decode_handoff(self.routes, received.head, received.body)
                remote = handed.upgrade.remote_address
        except wire.WireError as exc:
            logger.error("refusing a socket: %s", exc)
            os.close(received.fd)
            return wire.REFUSED
        if self.draining:
            os.close(received.fd)
            return wire.REFUSED
        sock = _wrap(received.fd, remote)
        if self.refused_no_fd:
            logger.warning(
                "taking sockets again after refusing %d for want of descriptors",
                self.refused_no_fd,
            )
            self.refused_no_fd = 0
        self.received += 1
        return sock, handed

    def _connection(self, body: bytes) -> tuple[str, int]:
        """The client address of a TLS connection placed here before its handshake."""
        if self.ssl_context is None:
            raise wire.WireError("a TLS connection, and this worker has no TLS settings")
        return wire.decode_connection(body)

    async def _serve_tls(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        on_end: Callable[[], object] | None = None,
    ) -> None:
        """A TLS connection placed here right after accept: TLS handshake, request
        head, ``app.handle``, answer, then the socket (as the single-process server
        serves every connection). Counted among this worker's unfinished heads
        until its head is read, so a slow client (a slowloris over TLS) is cut by
        the request timeout and the caps as in the acceptor.

        Under the security plugin's connection limits the acceptor counted the
        connection at accept time, by its peer address; ``on_end`` tells it
        when the connection ends, refused or served."""
        assert self.ssl_context is not None
        runtime = self.runtime
        assert isinstance(runtime, SocketRuntime)
        transport = TLSTransport(sock, self.ssl_context)
        head = self.pending.enter(transport, address[0])
        if head is not None:
            await serve_connection(
                self.app, runtime, transport, address, self.limits, head, self.counters, on_end
            )
        elif on_end is not None:  # cut before its head (caps): never served
            on_end()

    def _refuse_version(self, fd: int, version: int, head: bytes | None) -> int:
        """A hand-off of another wire version: its client gets the 101 the
        acceptor prepared, then a close 1012 (service restart) from here, and
        the acceptor is told so (it then neither retries nor writes)."""
        error = wire.VersionMismatch(version, "the acceptor")
        self._mismatches.report(error, "its clients get 101 then close 1012 (service restart)")
        if head is None:
            os.close(fd)  # no 101 to write: the acceptor places it elsewhere or answers 503
            return wire.REFUSED
        runtime = self.runtime
        assert runtime is not None
        transport = SocketTransport(socket.socket(fileno=fd))
        runtime.nursery.start_soon(reject, transport, wire.refusal_after_101(head))
        return wire.OTHER_VERSION

    async def _run_socket(self, sock: socket.socket, handed: wire.HandedOff) -> None:
        """Write the 101, then hand the socket to the runtime (this task ends there)."""
        runtime = self.runtime
        assert runtime is not None
        transport = SocketTransport(sock)
        started = False
        try:
            await transport.send_all([handed.response_head])
            started = True  # from here on the runtime closes it
            runtime.start_socket(
                transport, handed.upgrade, handed.trailing, socket_id=handed.socket_id or None
            )
        except trio.BrokenResourceError:
            pass  # the client left (or the acceptor gave up on us and answered 503)
        except Exception:
            logger.exception("internal error running socket %s; dropped", handed.socket_id)
        finally:
            if not started:
                transport.close()
                if handed.upgrade.on_end is not None:
                    handed.upgrade.on_end()  # it never ran: the acceptor counts it no longer

    async def _heartbeats(self, reports: pynng.Socket) -> None:
        settings = self.settings
        runtime = self.runtime
        assert runtime is not None

        async def report() -> None:
            figures: dict[str, Any] = {
                "sockets": len(runtime.connections),
                "received": self.received,
                "draining": self.draining,
                "pubsub_dropped": self._pubsub_dropped(),
                # Messages of typed routes that failed validation (axeom status).
                "invalid_messages": self.app.invalid_messages,
                "limits": limits_hit(self.app),
                # Sockets per route, traffic totals: for status and /metrics.
                **metrics.process_figures(runtime.connections, self.app.pubsub),
            }
            if self.ssl_context is not None:  # this worker answers handshakes
                figures["handshakes"] = self.counters.report()
                self.pending.report_if_due()
            await reports.asend(
                wire.heartbeat(settings.worker_id, settings.generation, os.getpid(), figures)
            )

        async def drain_and_exit() -> None:
            logger.error("supervisor is gone: draining and exiting")
            assert self._nursery is not None
            await self.drain(self._nursery)

        await heartbeat_forever(report, settings.heartbeat_interval, trio.sleep, drain_and_exit)

    def _pubsub_dropped(self) -> int:
        """Operations this worker could not pass to the hub (queue full, hub stuck)."""
        link_dropped = self.link.dropped if self.link is not None else 0
        return int(self.app.pubsub.dropped + link_dropped)

    async def _signals(self, nursery: trio.Nursery) -> None:
        """SIGTERM or SIGINT drains (1001); RESTART_SIGNAL (a ``--reload``
        roll) drains with 1012, so that clients know to come back."""
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async for signum in signals:
                nursery.start_soon(self.drain, nursery, close_code_for(signum))

    async def drain(self, nursery: trio.Nursery, code: int = CloseCode.GOING_AWAY) -> None:
        """Close every socket with ``code`` (in batches), wait for their ``close``
        handlers within the graceful timeout, then stop the process."""
        if self.draining:
            return
        self.draining = True
        runtime = self.runtime
        assert runtime is not None
        logger.info(
            "worker %s draining %d sockets", self.settings.worker_id, len(runtime.connections)
        )
        await runtime.drain(self.settings.graceful_timeout, code)
        nursery.cancel_scope.cancel()
        runtime.nursery.cancel_scope.cancel()


def _wrap(fd: int, remote: tuple[str, int] | None) -> socket.socket:
    """The handed-off TCP descriptor as a socket object. Naming its family
    spares the three getsockopt calls Python makes to find out (per socket)."""
    if remote is None:
        return socket.socket(fileno=fd)
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=fd)


async def run_worker(
    app: Axeom,
    settings: WorkerSettings,
    open_sockets: OpenSockets = open_socket_runtime,
    waits: AppWaits = TRIO_WAITS,
) -> None:
    """Serve as a worker until drained (or the supervisor is gone)."""
    await Worker(app, settings, open_sockets, waits).run()
