"""Figures of a process, summed for a node, and served to Prometheus.

One source for ``axeom status`` and ``/metrics``: each process that runs
sockets reports ``process_figures`` (a worker in its heartbeat; the
single-process server to itself), the status command sums them for the node,
and ``NodeCollector`` renders that same status for Prometheus with the
``prometheus_client`` library (its exposition format, its parser in the
tests). Nothing here runs per message: the counting is ``axeom.ws``'s tally
(plain integers); this module only reads it, once per heartbeat or refresh.

Application metrics defined with ``prometheus_client`` in handlers are
exported beside ours: in a process tree through the library's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, a directory the supervisor makes for
the tree, so every child's values are summed), in a single process from its
default registry.

``prometheus_client`` is imported only by the functions that render or serve,
so a worker pays nothing for it unless its app uses it.
"""

from __future__ import annotations

import heapq
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .ws._tally import DURATION_BOUNDS, TALLY

if TYPE_CHECKING:
    from prometheus_client.registry import Collector, CollectorRegistry

    from .pubsub import PubSub

__all__ = [
    "MAX_SCRAPES",
    "MULTIPROC_ENV",
    "SCRAPE_TIMEOUT",
    "TOP_TOPICS",
    "MetricsServer",
    "NodeCollector",
    "add_traffic",
    "make_multiprocess_dir",
    "mark_dead",
    "process_figures",
    "refresh_forever",
    "remove_multiprocess_dir",
    "top_topics",
    "zero_traffic",
]

logger = logging.getLogger("axeom.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the library's name for it
# Topics shown by ``axeom status`` and exported with their subscriber counts:
# the busiest ones an operator looks at, and a bound on label cardinality.
TOP_TOPICS = 10
# Seconds between two refreshes of the single-process server's figures (a
# process tree refreshes with each heartbeat interval instead).
REFRESH_INTERVAL = 1.0
# Connections to the metrics port served at once, each on a thread of the
# serving process (the supervisor in a tree): Prometheus scrapes a target one
# request at a time; past this many a new connection is closed at once, so
# that connections held open (a slowloris) cannot pile up threads.
MAX_SCRAPES = 16
# Seconds a scrape connection may stay silent (sending its request, reading
# the page) before it is closed: a scrape takes milliseconds.
SCRAPE_TIMEOUT = 10.0


# -- what one process reports ----------------------------------------------------


def process_figures(connections: Iterable[Any], pubsub: PubSub | None) -> dict[str, Any]:
    """This process's sockets per route and its traffic totals, as reported.

    ``connections`` are the runtime's (each with its ``actor``); counted per
    route here, once per report, so that nothing is counted per socket event.
    """
    routes: dict[str, int] = {}
    for conn in connections:
        route = conn.actor.ws.route
        routes[route] = routes.get(route, 0) + 1
    return {
        "routes": routes,
        "traffic": TALLY.figures(),
        "pubsub_delivered": pubsub.delivered if pubsub is not None else 0,
    }


def zero_traffic() -> dict[str, Any]:
    return {
        "messages_in": 0,
        "messages_out": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "closes": {},
        "errors": [],
        "durations": [0] * (len(DURATION_BOUNDS) + 1),
        "duration_sum": 0.0,
    }


def add_traffic(into: dict[str, Any], figures: dict[str, Any] | None) -> None:
    """Add one process's traffic figures (``Tally.figures``) to ``into``."""
    if not figures:
        return
    for key in ("messages_in", "messages_out", "bytes_in", "bytes_out", "duration_sum"):
        into[key] += figures.get(key, 0)
    closes = into["closes"]
    for code, count in (figures.get("closes") or {}).items():
        closes[code] = closes.get(code, 0) + count
    errors = {(route, handler): n for route, handler, n in into["errors"]}
    for route, handler, count in figures.get("errors") or ():
        errors[route, handler] = errors.get((route, handler), 0) + count
    into["errors"] = [[route, handler, n] for (route, handler), n in errors.items()]
    durations = figures.get("durations") or ()
    if len(durations) == len(into["durations"]):
        into["durations"] = [a + b for a, b in zip(into["durations"], durations, strict=True)]


def top_topics(counts: Iterable[tuple[str, int]], count: int = TOP_TOPICS) -> list[list[Any]]:
    """The ``count`` topics with the most subscribers, most first (ties by name)."""
    return [[t, n] for t, n in heapq.nsmallest(count, counts, key=lambda i: (-i[1], i[0]))]


# -- the node's figures, for Prometheus ------------------------------------------------


class NodeCollector:
    """A ``prometheus_client`` collector of one node's status.

    ``status`` is the ``axeom status`` answer, replaced whole by the event
    loop that builds it (``refresh_forever``); the metrics server's thread
    only reads it, so no lock is needed and a scrape never waits on the loop.
    """

    def __init__(self) -> None:
        self.status: dict[str, Any] | None = None

    def collect(self) -> Iterator[Any]:
        status = self.status
        if status is None:
            return iter(())
        return iter(list(_families(status)))


def _families(status: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    sockets = GaugeMetricFamily(
        "axeom_open_sockets", "Open WebSocket connections.", labels=["worker", "route"]
    )
    restarts = CounterMetricFamily(
        "axeom_restarts", "Restarts of a child process of the tree.", labels=["child"]
    )
    # During a reload a child's old and new processes share its name: one
    # series each (sockets added up, the restart count both carry).
    open_sockets: dict[tuple[str, str], int] = {}
    restart_counts: dict[str, int] = {}
    for process in status["processes"]:
        name = process["name"]
        for route, count in (process.get("routes") or {}).items():
            open_sockets[name, route] = open_sockets.get((name, route), 0) + count
        if process["role"] != "server":
            restart_counts[name] = max(restart_counts.get(name, 0), process["restarts"])
    for (name, route), count in sorted(open_sockets.items()):
        sockets.add_metric([name, route], count)
    for name, count in sorted(restart_counts.items()):
        restarts.add_metric([name], count)
    yield sockets
    yield restarts
    handshakes = CounterMetricFamily(
        "axeom_handshakes",
        "HTTP answers to requests, by status (101: upgraded).",
        labels=["status"],
    )
    for code, count in sorted((status["totals"].get("handshakes") or {}).items()):
        handshakes.add_metric([str(code)], count)
    yield handshakes
    yield from _traffic_families(status.get("traffic") or zero_traffic())
    yield from _pubsub_families(status.get("pubsub") or {}, status.get("top_topics") or [])
    bridge = status.get("bridge")
    if bridge is not None:
        yield GaugeMetricFamily(
            "axeom_redis_bridge_up",
            "1 if the Redis bridge process runs and is connected to Redis.",
            value=1 if bridge.get("connected") else 0,
        )


def _traffic_families(traffic: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    for name, key, text in (
        ("axeom_messages_received", "messages_in", "WebSocket messages received."),
        ("axeom_messages_sent", "messages_out", "WebSocket messages queued for sending."),
        ("axeom_received_bytes", "bytes_in", "WebSocket bytes read (frame headers included)."),
        ("axeom_sent_bytes", "bytes_out", "WebSocket bytes written (frame headers included)."),
    ):
        yield CounterMetricFamily(name, text, value=traffic[key])
    closes = CounterMetricFamily(
        "axeom_closes", "Closed WebSocket connections, by close code.", labels=["code"]
    )
    for code, count in sorted(traffic["closes"].items()):
        closes.add_metric([str(code)], count)
    yield closes
    errors = CounterMetricFamily(
        "axeom_handler_exceptions",
        "Exceptions raised by handlers (each closed its socket with 1011).",
        labels=["route", "handler"],
    )
    for route, handler, count in traffic["errors"]:
        errors.add_metric([route, handler], count)
    yield errors
    buckets, total = [], 0
    for bound, count in zip((*DURATION_BOUNDS, float("inf")), traffic["durations"], strict=True):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
    yield HistogramMetricFamily(
        "axeom_handler_duration_seconds",
        "Time from a handler call (open, message, drain) to its return.",
        buckets=buckets,
        sum_value=traffic["duration_sum"],
    )


def _pubsub_families(pubsub: dict[str, Any], topics: list[list[Any]]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for name, key, text in (
        ("axeom_pubsub_published", "published", "Publishes (app.publish, ws.publish, control)."),
        ("axeom_pubsub_deliveries", "delivered", "Messages queued on a subscriber socket."),
    ):
        yield CounterMetricFamily(name, text, value=pubsub.get(key, 0))
    dropped = CounterMetricFamily(
        "axeom_pubsub_dropped", "Pub/sub operations dropped under overload.", labels=["where"]
    )
    for where in ("workers", "hub", "bridge"):
        if f"dropped_{where}" in pubsub:
            dropped.add_metric([where], pubsub[f"dropped_{where}"])
    yield dropped
    yield GaugeMetricFamily(
        "axeom_pubsub_topics",
        "Topics with a subscriber on this node.",
        value=pubsub.get("topics", 0),
    )
    subscribers = GaugeMetricFamily(
        "axeom_pubsub_topic_subscribers",
        f"Subscribers of the {TOP_TOPICS} topics with the most on this node.",
        labels=["topic"],
    )
    for topic, count in topics:
        subscribers.add_metric([topic], count)
    yield subscribers


async def refresh_forever(
    collector: NodeCollector,
    build: Callable[[], dict[str, Any]],
    sleep: Callable[[float], Awaitable[Any]],
    interval: float = REFRESH_INTERVAL,
) -> None:
    """Give ``collector`` the status ``build`` makes, every ``interval`` seconds
    (on the loop that owns the figures; ``sleep`` is that loop's)."""
    while True:
        try:
            collector.status = build()
        except Exception:  # a figure we could not read must not stop the refresh
            logger.exception("metrics: could not read the figures")
        await sleep(interval)


# -- serving -----------------------------------------------------------------------------


class _Forward:
    """The default registry's metrics (an app's own, single process)."""

    def __init__(self, registry: Collector) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()


class MetricsServer:
    """``/metrics`` on its own port, served by ``prometheus_client``'s WSGI
    app from threads: scrapes never wait on (nor slow) the event loop. At
    most ``MAX_SCRAPES`` connections at once, each cut after
    ``scrape_timeout`` seconds of silence (the library's own
    ``start_http_server`` gives every connection a thread for as long as it
    stays open)."""

    def __init__(
        self,
        collector: NodeCollector,
        multiprocess_dir: str | None = None,
        *,
        scrape_timeout: float = SCRAPE_TIMEOUT,
    ) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # type: ignore[arg-type]
        if multiprocess_dir is not None:
            MultiProcessCollector(self.registry, path=multiprocess_dir)
        else:
            self.registry.register(_Forward(REGISTRY))  # type: ignore[arg-type]
        self.scrape_timeout = scrape_timeout
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (OSError if it cannot); the bound port."""
        from ._metrics_http import serve_metrics

        self._server, self._thread = serve_metrics(
            self.registry, host, port, MAX_SCRAPES, self.scrape_timeout
        )
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def make_multiprocess_dir() -> str:
    """A fresh directory for the tree's application metrics, named in the
    environment the children inherit (set before the first is spawned)."""
    path = tempfile.mkdtemp(prefix="axeom-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]


def mark_dead(pid: int, path: str) -> None:
    """A child exited: its ``live*`` gauges leave the sums (the library's
    ``mark_process_dead``); its counters stay, so totals survive a restart."""
    from prometheus_client.multiprocess import mark_process_dead

    try:
        mark_process_dead(pid, path)
    except OSError as exc:
        logger.warning("metrics: could not forget process %d's gauges: %s", pid, exc)
