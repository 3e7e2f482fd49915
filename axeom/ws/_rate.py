"""Token buckets, and the per-socket message limits of a route.

``rate_limit=(messages, seconds)`` and ``byte_rate_limit=(bytes, seconds)``
are token buckets of one socket: ``messages`` (or ``bytes``) at once, refilled
evenly over ``seconds``. A message over either is not handled: with
``on_rate_limit="close"`` (the default) the socket closes with 1008 (policy
violation); with ``"drop"`` the message is skipped. Either way it is counted
(``axeom status``, "limits hit").

The check wraps the route's ``message`` handler when its socket is set up
(``Handlers.bind``), so it runs on every adapter, and a route without
limits runs exactly as before: nothing is added to its per-message path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode

from ._handlers import BoundHandlers, Handlers

if TYPE_CHECKING:
    from ._options import WSOptions

__all__ = [
    "BYTE_RATE_LIMIT",
    "ON_RATE_LIMIT",
    "RATE_LIMIT",
    "LimitedHandlers",
    "MessageLimits",
    "TokenBucket",
    "check_rate",
]

# The names these limits are counted under.
RATE_LIMIT = "rate_limit"
BYTE_RATE_LIMIT = "byte_rate_limit"
ON_RATE_LIMIT = ("close", "drop")

clock = time.monotonic


def check_rate(name: str, value: object, unit: str) -> tuple[int, float]:
    """``value`` as a ``(count, seconds)`` rate, or a ``ValueError`` naming ``name``."""
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and value[0] > 0
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
        and value[1] > 0
        and math.isfinite(value[1])
    ):
        return int(value[0]), float(value[1])
    raise ValueError(
        f"{name} must be ({unit}, seconds): a positive integer and a positive "
        f"number of seconds, got {value!r}"
    )


class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity / period`` per second.

    ``take(cost, now)`` spends ``cost`` tokens if there are that many. A cost
    above ``capacity`` never passes.
    """

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: int, period: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / period
        self.tokens = float(capacity)
        self.stamp = now

    def refill(self, now: float) -> float:
        """Tokens available at ``now``."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def take(self, cost: float, now: float) -> bool:
        if self.refill(now) >= cost:
            self.tokens -= cost
            return True
        return False

    def wait(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (as of the last refill)."""
        return max(0.0, (cost - self.tokens) / self.rate)


def _capacity_and_rate(rate: tuple[int, float] | None) -> tuple[float, float]:
    """A bucket's size and refill per second; no limit is a bucket that is
    never short (infinite, refilled by nothing)."""
    if rate is None:
        return math.inf, 0.0
    count, period = rate
    return float(count), count / period


def _size(message: str | bytes) -> int:
    """Bytes of a message as it came (UTF-8 for text)."""
    if isinstance(message, bytes) or message.isascii():
        return len(message)
    return len(message.encode())


class MessageLimits:
    """The message limits of one route, and what they were hit (``hits``,
    shared with the route's other sockets: one process counts them all)."""

    __slots__ = ("byte_rate", "close", "hits", "rate")

    def __init__(self, options: WSOptions) -> None:
        self.rate = options.rate_limit
        self.byte_rate = options.byte_rate_limit
        self.close = options.on_rate_limit == "close"
        self.hits: dict[str, int] = {}

    @staticmethod
    def wanted(options: WSOptions) -> bool:
        return options.rate_limit is not None or options.byte_rate_limit is not None

    def wrap(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` behind this socket's own buckets (called once per socket).

        The buckets' arithmetic is written out here, in the closure's own
        variables: this runs for every message of a limited route.
        """
        hits = self.hits
        close = self.close
        now = clock()
        count_cap, count_rate = _capacity_and_rate(self.rate)
        byte_cap, byte_rate = _capacity_and_rate(self.byte_rate)
        count_tokens, byte_tokens, stamp = count_cap, byte_cap, now

        def limited(ws: Any, message: str | bytes) -> Any:
            nonlocal count_tokens, byte_tokens, stamp
            now = clock()
            elapsed = now - stamp
            stamp = now
            count_tokens = min(count_cap, count_tokens + elapsed * count_rate)
            byte_tokens = min(byte_cap, byte_tokens + elapsed * byte_rate)
            if count_tokens < 1.0:
                over = RATE_LIMIT
            elif byte_rate and byte_tokens < (cost := _size(message)):
                over = BYTE_RATE_LIMIT
            else:
                count_tokens -= 1.0
                if byte_rate:
                    byte_tokens -= cost
                return handler(ws, message)
            hits[over] = hits.get(over, 0) + 1
            if close:
                ws.close(CloseCode.POLICY_VIOLATION, f"{over.replace('_', ' ')} exceeded")
            return None

        return limited


@dataclass(frozen=True, slots=True)
class LimitedHandlers(Handlers):
    """A route's handlers whose ``message`` runs behind ``limits`` (per socket)."""

    limits: MessageLimits | None = None

    @classmethod
    def around(cls, handlers: Handlers, limits: MessageLimits) -> LimitedHandlers:
        given = {f.name: getattr(handlers, f.name) for f in fields(Handlers)}
        return cls(**given, limits=limits)

    def bind(self) -> BoundHandlers:
        bound = Handlers.bind(self)
        if bound.message is not None and self.limits is not None:
            bound.message = self.limits.wrap(bound.message)
        return bound
