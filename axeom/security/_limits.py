"""Connection limits of one node: open sockets per client address, handshakes
per address (a token bucket), open sockets in all.

Loop-neutral and process-neutral: plain counters and arithmetic on a clock
passed in (or ``time.monotonic``). The process where every handshake of a
node passes holds one ``ConnectionLimits`` (the acceptor with ``--workers N``,
the single process with ``--workers 0``) and calls, per WebSocket handshake:

- ``admit(address)`` before the upgrade: a ``Rejection`` to answer (429 or
  503 with ``Retry-After``), or None, and then one open socket is counted
  for ``address`` at once (a reservation, so that handshakes in flight
  together cannot all pass the same last free place);
- ``closed(address)`` exactly once for every admitted socket: when it ends,
  or at once when its handshake did not end in a socket after all;
- ``opened(address)`` for a socket admitted elsewhere that must count here.

Memory is bounded whatever the number of client addresses: an open-count
entry exists only while its address has an open socket (so at most one per
open socket), and at most ``MAX_TRACKED_ADDRESSES`` handshake buckets are
kept; past that the least recently used goes (most likely a full one, the
same as none). An attacker holding more addresses than that could get a
fresh burst per address: each address is still held to one burst per table
turnover, and every socket to the per-address and node caps.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..ws._rate import TokenBucket

__all__ = [
    "MAX_TRACKED_ADDRESSES",
    "Admission",
    "ConnectionLimits",
    "Rejection",
]

# Handshake buckets kept at once: 64k addresses at ~200 bytes each is ~13 MB at
# worst, and more distinct addresses than that within one refill period is a
# distributed attack the per-address bucket cannot stop anyway.
MAX_TRACKED_ADDRESSES = 65536
# Retry-After for a full node or an address at its socket cap: a socket must
# close first, which no clock predicts; a few seconds spreads the retries.
CONNECTIONS_RETRY_AFTER = 5

# The names limits are counted under (``axeom status``, "limits hit").
MAX_CONNECTIONS = "max_connections"
MAX_CONNECTIONS_PER_IP = "max_connections_per_ip"
HANDSHAKE_RATE_PER_IP = "handshake_rate_per_ip"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a handshake is refused: ``status`` (429 per address, 503 node
    full), a ``reason`` for the body, ``retry_after`` in whole seconds, and
    the ``limit`` it is counted under."""

    status: int
    reason: str
    retry_after: int
    limit: str

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("retry-after", str(self.retry_after))]


class Admission:
    """One admitted socket: ``release()`` once it ends (or never opened).
    Idempotent, so every path that may end a socket can call it."""

    __slots__ = ("_limits", "address")

    def __init__(self, limits: ConnectionLimits, address: str | None) -> None:
        self._limits: ConnectionLimits | None = limits
        self.address = address

    def release(self) -> None:
        limits, self._limits = self._limits, None
        if limits is not None:
            limits.closed(self.address)


class ConnectionLimits:
    """The counters and caps behind ``security_plugin``'s node limits.

    ``None`` for a cap means no cap. ``clock`` is for tests.
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        handshake_rate_per_ip: tuple[int, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.handshake_rate_per_ip = handshake_rate_per_ip
        self.clock = clock
        self.max_tracked = max_tracked
        self.open_total = 0
        self._open: dict[str, int] = {}
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.hits: dict[str, int] = {}

    @property
    def configured(self) -> bool:
        """True if any cap is set (else a server need not track sockets)."""
        return (
            self.max_connections is not None
            or self.max_connections_per_ip is not None
            or self.handshake_rate_per_ip is not None
        )

    def open_count(self, address: str) -> int:
        return self._open.get(address, 0)

    @property
    def tracked_addresses(self) -> int:
        """Addresses with a handshake bucket (bounded by ``max_tracked``)."""
        return len(self._buckets)

    def admit(self, address: str | None) -> Rejection | None:
        """Refuse a handshake from ``address`` over a cap, or count its
        socket as open (see the module docstring). ``None``: an address this
        server cannot know (only the node cap applies)."""
        rejection = self._check(address)
        if rejection is not None:
            self.hits[rejection.limit] = self.hits.get(rejection.limit, 0) + 1
            return rejection
        self.opened(address)
        return None

    def _check(self, address: str | None) -> Rejection | None:
        if self.max_connections is not None and self.open_total >= self.max_connections:
            return Rejection(
                503,
                f"server full ({self.max_connections} sockets open), retry shortly",
                CONNECTIONS_RETRY_AFTER,
                MAX_CONNECTIONS,
            )
        if address is None:
            return None
        cap = self.max_connections_per_ip
        if cap is not None and self._open.get(address, 0) >= cap:
            return Rejection(
                429,
                f"too many open sockets from this address (limit {cap})",
                CONNECTIONS_RETRY_AFTER,
                MAX_CONNECTIONS_PER_IP,
            )
        if self.handshake_rate_per_ip is not None:
            bucket = self._bucket(address)
            if not bucket.take(1.0, self.clock()):
                count, period = self.handshake_rate_per_ip
                return Rejection(
                    429,
                    f"too many handshakes from this address (limit {count} per {period:g}s)",
                    max(1, math.ceil(bucket.wait())),
                    HANDSHAKE_RATE_PER_IP,
                )
        return None

    def _bucket(self, address: str) -> TokenBucket:
        buckets = self._buckets
        bucket = buckets.get(address)
        if bucket is not None:
            buckets.move_to_end(address)
            return bucket
        assert self.handshake_rate_per_ip is not None
        if len(buckets) >= self.max_tracked:
            # The least recently used goes: O(1), whatever an attacker sends
            # (a scan for full buckets would cost a pass per new address).
            buckets.popitem(last=False)
        count, period = self.handshake_rate_per_ip
        bucket = buckets[address] = TokenBucket(count, period, self.clock())
        return bucket

    def opened(self, address: str | None, count: int = 1) -> None:
        """Count ``count`` sockets of ``address`` as open, without checking."""
        self.open_total += count
        if address is not None:
            self._open[address] = self._open.get(address, 0) + count

    def closed(self, address: str | None, count: int = 1) -> None:
        """``count`` sockets of ``address`` ended. Never below zero: a close
        this table never counted (after a restart) changes nothing."""
        if address is not None:
            left = self._open.get(address, 0)
            if not left:
                return
            taken = min(left, count)
            if left > taken:
                self._open[address] = left - taken
            else:
                del self._open[address]
            count = taken
        self.open_total = max(0, self.open_total - count)

    def admission(self, address: str | None) -> Admission:
        """The release handle of a socket ``admit`` just counted."""
        return Admission(self, address)
