"""The figures ``axeom status`` shows for a tree: every process and the totals.

Built from what the supervisor already knows (its children, their last
heartbeat reports, the hub's counters), so asking costs the tree nothing.
Totals survive restarts: an acceptor's counters are kept when it exits, and
children waiting out their restart backoff are listed as "restarting".
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import trio

from ._children import Child

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["add_totals", "status", "zero_totals"]


def zero_totals() -> dict[str, Any]:
    return {
        "handed": 0,
        "rejected": 0,
        "shed": 0,
        "responses": {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
    }


def add_totals(into: dict[str, Any], report: dict[str, Any]) -> None:
    """Add one acceptor's counters (as in its heartbeat) to ``into``."""
    into["handed"] += report.get("handed", 0)
    into["rejected"] += report.get("rejected", 0)
    into["shed"] += report.get("shed", 0)
    for status_class, count in (report.get("responses") or {}).items():
        into["responses"][status_class] = into["responses"].get(status_class, 0) + count


def status(supervisor: Supervisor) -> dict[str, Any]:
    """What the ``status`` control command answers."""
    now = trio.current_time()
    processes = [_process_status(child, now) for child in supervisor.children]
    live = {child.name for child in supervisor.children}
    processes += [
        {
            "name": child.name,
            "role": child.role,
            "pid": None,
            "state": "restarting",
            "uptime": 0.0,
            "restarts": child.restarts + 1,
        }
        for child in supervisor.restarting.values()
        if child.name not in live
    ]
    processes.sort(key=lambda p: (p["role"] != "acceptor", p["name"], p["pid"] or 0))
    acceptors = _acceptor_totals(supervisor)
    return {
        "pid": os.getpid(),
        "port": supervisor.port,
        "uptime": round(time.time() - supervisor.started_wall, 3),
        "processes": processes,
        "pubsub": _pubsub_status(supervisor),
        "totals": {
            "sockets": sum(p.get("sockets", 0) for p in processes),
            "handed_off": acceptors["handed"],
            "rejected_handshakes": acceptors["rejected"],
            "shed_heads": acceptors["shed"],
            "http_responses": acceptors["responses"],
            "restarts": supervisor.restarts_total,
            # Typed routes' messages that failed validation, summed over the
            # live workers (a restarted worker starts again from 0).
            "invalid_messages": sum(
                c.report.get("invalid_messages", 0)
                for c in supervisor.children
                if c.role == "worker"
            ),
        },
    }


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


def _acceptor_totals(supervisor: Supervisor) -> dict[str, Any]:
    """Counters of every acceptor this tree ran: the exited ones' last
    figures plus the live ones' (two overlap during a reload). What an
    acceptor killed with -9 counted since its last heartbeat is lost."""
    totals = zero_totals()
    add_totals(totals, supervisor.retired_acceptors)
    for child in supervisor.children:
        if child.role == "acceptor":
            add_totals(totals, child.report)
    return totals


def _pubsub_status(supervisor: Supervisor) -> dict[str, Any]:
    """The hub's figures and every drop counter of the pub/sub path."""
    hub = supervisor.hub
    if hub is None:
        return {}
    result = hub.statistics()
    result["dropped_workers"] = sum(
        c.report.get("pubsub_dropped", 0) for c in supervisor.children if c.role == "worker"
    )
    if supervisor.config.server.pubsub:
        bridge = supervisor.live("bridge")
        link = hub.remote
        result["dropped_bridge"] = (bridge.report.get("dropped", 0) if bridge else 0) + (
            getattr(link, "dropped", 0)
        )
    return result
