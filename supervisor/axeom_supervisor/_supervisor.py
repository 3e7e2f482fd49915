"""The supervisor: the main process of ``axeom run --workers N``.

Shaped like gunicorn's arbiter: signal handlers only enqueue; one place
reaps children (logging each exit cause) and asks the restart policy what
to do; a health check kills children whose heartbeats stopped; the worker
table the acceptor places sockets by is republished whenever it changes
and once per heartbeat interval.

Every child is stopped the same way, whatever the reason (SIGTERM of the
tree, a reload, a missed heartbeat, a ``one_for_all`` restart): SIGTERM,
during which it has ``server.graceful_timeout`` to finish its work (a
worker closes its sockets with 1001 and runs ``close`` handlers; the
acceptor finishes the handshakes in flight), then SIGKILL if it is still
running ``supervisor.shutdown_timeout`` after the SIGTERM.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Any

import pynng
import trio

from axeom import ipc, wire
from axeom.config import Config
from axeom.trio_runtime import remove_ipc_file

from . import _control
from ._bridge_link import BridgeLink
from ._children import Child, spawn
from ._hub import Hub
from ._policy import ExitStatus, GiveUp, Ignore, Restart, RestartPolicy

__all__ = ["Supervisor"]

logger = logging.getLogger("axeom.supervisor")

EXIT_OK, EXIT_GAVE_UP = 0, 1
READY_TIMEOUT = 60.0
# Seconds to let the reaping tasks log the last exits once every child is gone.
REAP_WAIT = 1.0
# Seconds an acceptor has to confirm a new worker table before a worker it
# no longer lists is stopped anyway (it confirms in milliseconds).
TABLE_ACK_TIMEOUT = 2.0


def _zero_totals() -> dict[str, Any]:
    return {
        "handed": 0,
        "rejected": 0,
        "shed": 0,
        "responses": {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
    }


def _add_totals(into: dict[str, Any], report: dict[str, Any]) -> None:
    """Add one acceptor's counters (as in its heartbeat) to ``into``."""
    into["handed"] += report.get("handed", 0)
    into["rejected"] += report.get("rejected", 0)
    into["shed"] += report.get("shed", 0)
    for status_class, count in (report.get("responses") or {}).items():
        into["responses"][status_class] = into["responses"].get(status_class, 0) + count


class Supervisor:
    """Owns the listening socket and the process tree of one server."""

    def __init__(self, config: Config, listener: socket.socket) -> None:
        self.config = config
        self.listener = listener
        self.run_dir = tempfile.mkdtemp(prefix="axeom-")
        self.paths = ipc.RunPaths(self.run_dir)
        self.port = listener.getsockname()[1]
        self.control_address = ipc.control_address(self.port)
        self.worker_policy = RestartPolicy(config.supervisor, config.workers.restart)
        self.acceptor_policy = RestartPolicy(config.supervisor, "permanent")
        # Its own budget: a flapping Redis link must not use up the acceptor's.
        self.bridge_policy = RestartPolicy(config.supervisor, "permanent")
        self.children: list[Child] = []
        self.generations: dict[str, int] = {}
        # Children waiting out their restart backoff: listed by status as "restarting".
        self.restarting: dict[str, Child] = {}
        # Counters of acceptors that exited: status totals survive a restart.
        self.retired_acceptors = _zero_totals()
        self.table_seq = 0  # numbers the worker tables published to the acceptor
        self.table_acked_seq = 0  # the newest one an acceptor confirmed
        self._table_acked = trio.Event()
        self.restarts_total = 0
        self.exit_code = EXIT_OK
        self.stopping = False
        self.started_wall = time.time()
        self._events: pynng.Socket | None = None
        self._nursery: trio.Nursery | None = None
        self._reload_requested = trio.Event()
        self.hub: Hub | None = None
        self.node_id = os.urandom(6).hex()
        self._mismatches = wire.MismatchLog(logger, "reports")
        if config.supervisor.shutdown_timeout <= config.server.graceful_timeout:
            logger.warning(
                "supervisor.shutdown_timeout (%gs) is not above server.graceful_timeout (%gs):"
                " children may be killed before their close handlers finish",
                config.supervisor.shutdown_timeout,
                config.server.graceful_timeout,
            )

    # -- entry point -----------------------------------------------------------

    async def run(self) -> int:
        try:
            with (
                pynng.Pull0(listen=self.paths.reports) as reports,
                pynng.Pub0(listen=self.paths.events) as events,
                pynng.Rep0(listen=self.control_address) as control,
                pynng.Pull0(listen=self.paths.hub) as hub_in,
            ):
                self._events = events
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.hub = Hub(nursery)
                    nursery.start_soon(self.hub.receive_loop, hub_in)
                    nursery.start_soon(self.hub.counts_loop)
                    if self.config.server.pubsub:
                        link = BridgeLink()
                        self.hub.remote = link
                        bridge_out = pynng.Push0(
                            dial=self.paths.bridge,
                            block_on_dial=False,
                            send_timeout=500,
                            # Reconnect promptly to a (re)started bridge (ms).
                            reconnect_time_min=10,
                            reconnect_time_max=200,
                        )
                        nursery.start_soon(link.send_loop, bridge_out)
                    nursery.start_soon(self._receive_reports, reports)
                    nursery.start_soon(self._serve_control, control)
                    nursery.start_soon(self._handle_signals)
                    nursery.start_soon(self._check_health)
                    nursery.start_soon(self._publish_periodically)
                    nursery.start_soon(self._reloader)
                    await self._start_tree()
        except BaseException:
            # The supervisor itself failed: never leave children running
            # unsupervised (they also die with us through PR_SET_PDEATHSIG).
            for child in self.children:
                child.signal(signal.SIGKILL)
            raise
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            remove_ipc_file(self.control_address)
        return self.exit_code

    async def _start_tree(self) -> None:
        for index in range(1, self.config.server.workers + 1):
            await self._start("worker", f"worker-{index}")
        workers = [c for c in self.children if c.role == "worker"]
        with trio.move_on_after(READY_TIMEOUT):
            for child in workers:
                await child.ready.wait()
        if self.config.server.pubsub:
            await self._start("bridge", "bridge")
        await self._start("acceptor", "acceptor")
        acceptor = self._child("acceptor")
        with trio.move_on_after(READY_TIMEOUT):
            if acceptor is not None:
                await acceptor.ready.wait()
        if self.stopping:
            return
        host = self.config.server.host
        shown = f"[{host}]" if ":" in host else host
        count = self.config.server.workers
        print(
            f"Axeom listening on ws://{shown}:{self.port} ({count} worker{'s' * (count != 1)})",
            flush=True,
        )

    # -- children ------------------------------------------------------------------

    async def _start(self, role: str, name: str) -> Child:
        generation = self.generations.get(name, 0) + 1
        self.generations[name] = generation
        server = self.config.server
        options: dict[str, Any] = {
            "app": self.config.app,
            "run_dir": self.run_dir,
            "log_level": server.log_level,
            "heartbeat_interval": self.config.workers.heartbeat_interval,
        }
        pass_fds: tuple[int, ...] = ()
        if role == "acceptor":
            module = "axeom_acceptor"
            options.update(
                listener_fd=self.listener.fileno(),
                generation=generation,
                graceful_timeout=server.graceful_timeout,
                handshake=server.handshake_limits(),
            )
            pass_fds = (self.listener.fileno(),)
        elif role == "bridge":
            module = "axeom_supervisor.redis_bridge"
            options.update(url=self.config.server.pubsub, node_id=self.node_id)
        else:
            module = "axeom_workers"
            options.update(
                worker_id=name, generation=generation, graceful_timeout=server.graceful_timeout
            )
        process = await spawn(module, options, pass_fds)
        child = Child(name=name, role=role, generation=generation, process=process)
        if role == "worker":
            child.handoff_path = self.paths.handoff(name, generation)
        previous = [c for c in self.children if c.name == name]
        child.restarts = max((c.restarts for c in previous), default=0)
        self.children.append(child)
        self.restarting.pop(name, None)
        self._policy(role).on_started(trio.current_time(), name)
        assert self._nursery is not None
        self._nursery.start_soon(self._watch, child)
        logger.info("started %s (pid %d)", name, child.pid)
        return child

    def _policy(self, role: str) -> RestartPolicy:
        if role == "worker":
            return self.worker_policy
        return self.bridge_policy if role == "bridge" else self.acceptor_policy

    def _child(self, name: str) -> Child | None:
        for child in reversed(self.children):
            if child.name == name and child.process.returncode is None:
                return child
        return None

    async def _watch(self, child: Child) -> None:
        """Reap one child and act on its exit."""
        returncode = await child.process.wait()
        self.children.remove(child)
        if child.role == "worker" and self.hub is not None:
            self.hub.drop_worker(child.key)  # its subscriptions leave the table now
        if child.role == "acceptor":
            _add_totals(self.retired_acceptors, child.report)
        status = ExitStatus.from_returncode(returncode, requested=child.stop_requested)
        log = logger.info if child.stop_requested or self.stopping else logger.error
        log("%s (pid %d) %s", child.name, child.pid, status.describe())
        if child.role == "worker":
            await self._publish_workers()
        if self.stopping:
            return
        decision = self._policy(child.role).on_exit(trio.current_time(), child.name, status)
        if isinstance(decision, Ignore):
            return
        if isinstance(decision, GiveUp):
            logger.error("%s", decision.reason)  # the reason ends in "giving up"
            self.exit_code = 3 if status.app_load_failed else EXIT_GAVE_UP
            await self.shutdown()
            return
        assert isinstance(decision, Restart)
        # The strategy is about workers, which may share state; the acceptor
        # and the bridge hold none and restart on their own.
        if child.role == "worker" and self.worker_policy.strategy == "one_for_all":
            await self._restart_all(child, decision)
        else:
            await self._restart(child, decision)

    async def _restart(self, child: Child, decision: Restart) -> None:
        logger.info("restarting %s in %.2fs", child.name, decision.after)
        self.restarting[child.name] = child
        await trio.sleep(decision.after)
        if self.stopping:
            return
        new = await self._start(child.role, child.name)
        new.restarts = child.restarts + 1
        self.restarts_total += 1

    async def _restart_all(self, failed: Child, decision: Restart) -> None:
        """``one_for_all``: stop every other worker (on the shutdown timeline),
        then start them all again. The acceptor and the bridge are left alone."""
        logger.info("one_for_all: restarting every worker after %s exited", failed.name)
        siblings = [c for c in self.children if c.role == "worker"]
        for sibling in siblings:
            sibling.stop_requested = True
        await self._publish_workers()
        async with trio.open_nursery() as stops:
            for sibling in siblings:
                stops.start_soon(self._stop, sibling)
        await trio.sleep(decision.after)
        if self.stopping:
            return
        self.restarts_total += 1
        for index in range(1, self.config.server.workers + 1):
            if self._child(f"worker-{index}") is None:
                await self._start("worker", f"worker-{index}")

    # -- reports, health, worker table ---------------------------------------------

    async def _receive_reports(self, reports: pynng.Socket) -> None:
        while True:
            try:
                message = wire.decode_report(await reports.arecv())
            except wire.VersionMismatch as exc:
                self._wrong_version(exc)
                continue
            except wire.WireError:
                continue
            child = self._find(message.name, message.generation)
            if child is None:
                continue
            child.last_heartbeat = trio.current_time()
            if message.kind == wire.TABLE_ACK:
                self.table_acked_seq = max(self.table_acked_seq, message.fields.get("seq", 0))
                self._table_acked.set()
                self._table_acked = trio.Event()
            elif message.kind == wire.READY:
                if child.state == "starting":
                    child.state = "running"
                if child.role == "worker" and self.hub is not None:
                    fields = message.fields
                    self.hub.add_worker(child.key, fields["pubsub"], fields["prefix"])
                if child.role == "bridge" and self.hub is not None:
                    self.hub.resync_remote()
                    if isinstance(self.hub.remote, BridgeLink):
                        self.hub.remote.started.set()
                child.ready.set()
                await self._publish_workers()
            elif message.kind == wire.HEARTBEAT:
                child.report = message.fields
                if child.role == "acceptor" and not child.ready.is_set():
                    # It accepts once it knows the workers: tell it now.
                    await self._publish_workers()

    def _wrong_version(self, error: wire.VersionMismatch) -> None:
        """A child that speaks another wire version (a stale process, or a
        half-upgraded install) is unhealthy: logged once, then stopped like a
        hung child, so that the restart policy replaces it."""
        child = self._find(*error.child) if error.child is not None else None
        if child is None or child.state in ("stopping", "draining"):
            self._mismatches.report(error, "dropped")
            return
        self._mismatches.report(error, "stopping it: the restart policy replaces it")
        child.state = "stopping"
        assert self._nursery is not None
        self._nursery.start_soon(self._stop, child)

    def _find(self, name: Any, generation: Any) -> Child | None:
        # Two acceptors overlap during a reload: generations tell them apart.
        for child in self.children:
            if child.name == name and (child.role == "bridge" or child.generation == generation):
                return child
        return None

    async def _check_health(self) -> None:
        """A child silent for heartbeat_timeout is hung: SIGTERM, then SIGKILL."""
        policy = self.config.workers
        while True:
            await trio.sleep(min(policy.heartbeat_interval, 1.0) / 2)
            now = trio.current_time()
            for child in list(self.children):
                last = child.last_heartbeat or child.started_at
                limit = policy.heartbeat_timeout if child.ready.is_set() else READY_TIMEOUT
                if child.state in ("stopping", "draining") or now - last < limit:
                    continue
                logger.error(
                    "%s (pid %d) missed heartbeats for %.1fs: terminating it",
                    child.name,
                    child.pid,
                    now - last,
                )
                child.state = "stopping"  # not again at the next check
                assert self._nursery is not None
                self._nursery.start_soon(self._stop, child)

    async def _stop(self, child: Child, state: str = "stopping") -> None:
        """The shutdown timeline, the same on every path: SIGTERM (the child
        then has ``graceful_timeout`` to finish its work), SIGKILL if it still
        runs ``shutdown_timeout`` after the SIGTERM. Returns once it exited.

        Callers set ``stop_requested`` first when the exit must not be
        restarted (shutdown, reload, ``one_for_all``); a hung child is
        stopped without it, and so restarted under the policy."""
        child.state = state
        child.signal(signal.SIGTERM)
        timeout = self.config.supervisor.shutdown_timeout
        with trio.move_on_after(timeout):
            await child.process.wait()
            return
        logger.error(
            "%s (pid %d) still running %gs after SIGTERM: killing it",
            child.name,
            child.pid,
            timeout,
        )
        child.signal(signal.SIGKILL)
        await child.process.wait()

    def worker_table(self) -> list[wire.WorkerEntry]:
        table = []
        for child in self.children:
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

    async def _publish_workers(self) -> None:
        if self._events is not None:
            self.table_seq += 1
            await self._events.asend(wire.worker_table(self.table_seq, self.worker_table()))

    async def _publish_and_confirm(self) -> None:
        """Publish the worker table and wait (bounded) until the acceptor says
        it has it: a worker about to be stopped must get no more sockets."""
        await self._publish_workers()
        seq = self.table_seq
        if self._child("acceptor") is None:
            return
        with trio.move_on_after(TABLE_ACK_TIMEOUT):
            while self.table_acked_seq < seq:
                await self._table_acked.wait()

    async def _publish_periodically(self) -> None:
        while True:
            await trio.sleep(self.config.workers.heartbeat_interval)
            await self._publish_workers()

    # -- signals, reload, shutdown ---------------------------------------------------

    async def _handle_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.request_reload()
                else:
                    logger.info("received %s: shutting down", signal.Signals(signum).name)
                    assert self._nursery is not None
                    self._nursery.start_soon(self.shutdown)

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested = trio.Event()
            if not self.stopping:
                await self.reload()

    async def reload(self) -> None:
        """Replace every process that runs application code, never refusing a
        handshake: the workers one at a time, then the acceptor.

        Workers go first because the acceptor decides the route: the old
        acceptor handing a socket to a new worker works for every route the
        two versions share, while a new acceptor would hand a route added by
        the reload to an old worker, which refuses it. The new acceptor
        accepts on the same listening socket before the old one stops; the
        old one finishes the handshakes it has in flight."""
        await self.roll_workers()
        await self.roll_acceptor()

    async def roll_workers(self) -> None:
        """Replace each worker in turn: the new one is ready (and receiving
        sockets) before the old one drains; other workers are not touched."""
        logger.info("rolling workers")
        for old in [c for c in self.children if c.role == "worker" and c.state == "running"]:
            if self.stopping:
                return
            if old.process.returncode is not None or self._child(old.name) is not old:
                continue  # it died (and was replaced) since the roll began
            new = await self._start("worker", old.name)
            new.restarts = old.restarts
            with trio.move_on_after(READY_TIMEOUT):
                await new.ready.wait()
            if not new.ready.is_set():
                logger.error("new %s did not become ready; keeping the old one", old.name)
                continue
            old.state = "draining"
            old.stop_requested = True
            await self._publish_and_confirm()
            await self._stop(old, "draining")
        logger.info("workers rolled")

    async def roll_acceptor(self) -> None:
        """Start a new acceptor; once it accepts, stop the old one."""
        old = self._child("acceptor")
        if old is None or self.stopping:
            return
        new = await self._start("acceptor", "acceptor")
        new.restarts = old.restarts
        with trio.move_on_after(READY_TIMEOUT):
            await new.ready.wait()
        if not new.ready.is_set():
            logger.error("new acceptor did not start accepting; keeping the old one")
            new.stop_requested = True
            await self._stop(new)
            return
        old.stop_requested = True
        await self._stop(old, "draining")
        logger.info("acceptor replaced")

    async def shutdown(self) -> None:
        """Stop the tree on the shutdown timeline: the acceptor first (no new
        socket reaches a draining worker), then the workers, then the bridge
        (close handlers may still publish)."""
        if self.stopping:
            return
        self.stopping = True
        for child in self.children:
            child.stop_requested = True
        for role in ("acceptor", "worker", "bridge"):
            async with trio.open_nursery() as stops:
                for child in [c for c in self.children if c.role == role]:
                    stops.start_soon(self._stop, child)
            if role == "acceptor":
                # Nothing reads the backlog any more: closing the last copy of
                # the listening socket refuses new connections at once instead
                # of holding them unanswered while the workers drain.
                self.listener.close()
        with trio.move_on_after(REAP_WAIT):
            while self.children:
                await trio.sleep(0.01)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    # -- control -----------------------------------------------------------------------

    async def _serve_control(self, control: pynng.Socket) -> None:
        while True:
            request = await control.arecv()
            await control.asend(await _control.handle_request(self, request))

    def publish(self, topic: str, data: str | bytes) -> int:
        """Publish from outside (control socket): to every subscribed worker."""
        if self.hub is None:
            return 0
        self.hub.handle(None, [(wire.PUB, topic, data)], {})
        return len(self.hub.topics.get(topic, ()))

    def _pubsub_status(self) -> dict[str, Any]:
        """The hub's figures and every drop counter of the pub/sub path."""
        if self.hub is None:
            return {}
        result = self.hub.statistics()
        result["dropped_workers"] = sum(
            c.report.get("pubsub_dropped", 0) for c in self.children if c.role == "worker"
        )
        if self.config.server.pubsub:
            bridge = self._child("bridge")
            link = self.hub.remote
            result["dropped_bridge"] = (bridge.report.get("dropped", 0) if bridge else 0) + (
                getattr(link, "dropped", 0)
            )
        return result

    def status(self) -> dict[str, Any]:
        now = trio.current_time()
        processes = [self._process_status(child, now) for child in self.children]
        live = {child.name for child in self.children}
        processes += [
            {
                "name": child.name,
                "role": child.role,
                "pid": None,
                "state": "restarting",
                "uptime": 0.0,
                "restarts": child.restarts + 1,
            }
            for child in self.restarting.values()
            if child.name not in live
        ]
        processes.sort(key=lambda p: (p["role"] != "acceptor", p["name"], p["pid"] or 0))
        acceptors = self._acceptor_totals()
        return {
            "pid": os.getpid(),
            "port": self.port,
            "uptime": round(time.time() - self.started_wall, 3),
            "processes": processes,
            "pubsub": self._pubsub_status(),
            "totals": {
                "sockets": sum(p.get("sockets", 0) for p in processes),
                "handed_off": acceptors["handed"],
                "rejected_handshakes": acceptors["rejected"],
                "shed_heads": acceptors["shed"],
                "http_responses": acceptors["responses"],
                "restarts": self.restarts_total,
            },
        }

    @staticmethod
    def _process_status(child: Child, now: float) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": child.name,
            "role": child.role,
            "pid": child.pid,
            "state": child.state,
            "uptime": round(now - child.started_at, 3),
            "restarts": child.restarts,
        }
        if child.role == "worker":
            entry["sockets"] = child.report.get("sockets", 0)
        return entry

    def _acceptor_totals(self) -> dict[str, Any]:
        """Counters of every acceptor this tree ran: the exited ones' last
        figures plus the live ones' (two overlap during a reload). What an
        acceptor killed with -9 counted since its last heartbeat is lost."""
        totals = _zero_totals()
        _add_totals(totals, self.retired_acceptors)
        for child in self.children:
            if child.role == "acceptor":
                _add_totals(totals, child.report)
        return totals
