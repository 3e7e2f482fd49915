"""What this process's sockets did, counted in plain integers.

The counts are taken where the work already happens (a read, a write, a
dispatch pass, a handler call) and cost an integer add each: no metrics
library on the per-message path. Whoever reports them (a worker's
heartbeat, the single-process server's status and metrics) reads
``TALLY.figures()`` off that path, and ``axeom.metrics`` renders them for
Prometheus. One tally per process: every runtime of the process adds to it.
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter
from typing import Any

__all__ = ["DURATION_BOUNDS", "TALLY", "Tally", "clock"]

clock = perf_counter  # ~60 ns a call: cheap enough to time every handler call

# Upper bounds (seconds) of the handler duration histogram's buckets: a plain
# handler takes microseconds, one that awaits a database milliseconds, one
# that blocks its loop seconds (the last bucket past these is +Inf).
DURATION_BOUNDS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Tally:
    """Totals since the process started (they only grow).

    ``bytes_in`` / ``bytes_out`` are WebSocket bytes read from and handed to
    the kernel (frame headers included); ``closes`` counts sockets by the
    close code their ``close`` handler got; ``errors`` counts handler
    exceptions by (route, handler name); ``durations`` counts handler calls
    by bucket of ``DURATION_BOUNDS`` (the last one: longer), ``duration_sum``
    their seconds.
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "closes",
        "duration_sum",
        "durations",
        "errors",
        "messages_in",
        "messages_out",
    )

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.closes: dict[int, int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.durations = [0] * (len(DURATION_BOUNDS) + 1)
        self.duration_sum = 0.0

    def handler_took(self, seconds: float) -> None:
        """One handler call ended ``seconds`` after it started."""
        self.durations[bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.duration_sum += seconds

    def closed(self, code: int) -> None:
        self.closes[code] = self.closes.get(code, 0) + 1

    def failed(self, route: str, handler: str) -> None:
        key = (route, handler)
        self.errors[key] = self.errors.get(key, 0) + 1

    def figures(self) -> dict[str, Any]:
        """The totals as plain msgpack/JSON data (string keys), for a report."""
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "closes": {str(code): n for code, n in self.closes.items()},
            "errors": [[route, handler, n] for (route, handler), n in self.errors.items()],
            "durations": list(self.durations),
            "duration_sum": self.duration_sum,
        }


TALLY = Tally()  # this process's
