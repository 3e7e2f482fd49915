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

from axeom import metrics

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
        "statuses": {},
    }


def add_totals(into: dict[str, Any], report: dict[str, Any]) -> None:
    """Add one acceptor's counters (as in its heartbeat) to ``into``."""
    into["handed"] += report.get("handed", 0)
    into["rejected"] += report.get("rejected", 0)
    into["shed"] += report.get("shed", 0)
    for status_class, count in (report.get("responses") or {}).items():
        into["responses"][status_class] = into["responses"].get(status_class, 0) + count
    if report.get("limits"):
        _add_counts(into.setdefault("limits", {}), report["limits"])
    for code, count in (report.get("statuses") or {}).items():
        into["statuses"][code] = into["statuses"].get(code, 0) + count


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
            "limits_hit": _limits_hit(supervisor, acceptors),
            "handshakes": acceptors["statuses"],
        },
        **_operator_view(supervisor, processes),
    }


def _limits_hit(supervisor: Supervisor, acceptors: dict[str, Any]) -> dict[str, int]:
    """Refusals by limit name: the acceptors' (handshakes: origin, connection
    limits; exited ones included) plus the live workers' (message limits)."""
    hits = dict(acceptors.get("limits") or {})
    for child in supervisor.children:
        if child.role == "worker":
            _add_counts(hits, child.report.get("limits") or {})
    return hits


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count


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
        entry["routes"] = child.report.get("routes") or {}
    return entry


def _operator_view(supervisor: Supervisor, processes: list[dict[str, Any]]) -> dict[str, Any]:
    """What an operator asks first (sockets per route, busiest topics, the
    last restart cause of each child) and the traffic totals /metrics
    exports: from the same reports as the rest, counted once."""
    last_exits = supervisor.last_exits
    for process in processes:
        if process["name"] in last_exits:
            process["last_exit"] = last_exits[process["name"]]
    routes: dict[str, int] = {}
    traffic = metrics.zero_traffic()
    metrics.add_traffic(traffic, supervisor.retired_workers["traffic"])
    for child in supervisor.children:
        if child.role == "worker":
            for route, count in (child.report.get("routes") or {}).items():
                routes[route] = routes.get(route, 0) + count
            metrics.add_traffic(traffic, child.report.get("traffic"))
    hub = supervisor.hub
    view: dict[str, Any] = {
        "routes": routes,
        "top_topics": hub.top_topics(metrics.TOP_TOPICS) if hub is not None else [],
        "traffic": traffic,
        "bridge": None,
    }
    if supervisor.config.server.pubsub:
        bridge = supervisor.live("bridge")
        running = bridge is not None and bridge.ready.is_set()
        connected = bridge is not None and running and bool(bridge.report.get("connected"))
        view["bridge"] = {"running": running, "connected": connected}
    return view


def _acceptor_totals(supervisor: Supervisor) -> dict[str, Any]:
    """Counters of every acceptor this tree ran: the exited ones' last
    figures plus the live ones' (two overlap during a reload). What an
    acceptor killed with -9 counted since its last heartbeat is lost."""
    totals = zero_totals()
    add_totals(totals, supervisor.retired_acceptors)
    for child in supervisor.children:
        if child.role == "acceptor":
            add_totals(totals, child.report)
        elif child.role == "worker" and "handshakes" in child.report:
            # With TLS the workers answer the handshakes (a restarted one's are lost).
            add_totals(totals, child.report["handshakes"])
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
    result["delivered"] = supervisor.retired_workers["pubsub_delivered"] + sum(
        c.report.get("pubsub_delivered", 0) for c in supervisor.children if c.role == "worker"
    )
    if supervisor.config.server.pubsub:
        bridge = supervisor.live("bridge")
        link = hub.remote
        result["dropped_bridge"] = (bridge.report.get("dropped", 0) if bridge else 0) + (
            getattr(link, "dropped", 0)
        )
    return result
