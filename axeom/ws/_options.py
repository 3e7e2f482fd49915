"""Per-route WebSocket options, with plugin-wide defaults.

``ws_plugin(**defaults)`` sets the defaults; ``app.ws(path, ..., **options)``
overrides them for one route. Values are checked when the route is
registered, so a typo fails at import time rather than on the first client.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields, replace
from typing import Any

from ._rate import ON_RATE_LIMIT, check_rate

__all__ = ["WSOptions"]

MiB = 2**20


@dataclass(frozen=True, slots=True)
class WSOptions:
    """Limits and timers of one WebSocket route.

    max_message_size: largest message accepted, after reassembly and
        decompression; a bigger one closes the socket with 1009.
    idle_timeout: seconds without any frame from the peer (pongs count)
        before the server closes with 1001; ``None`` disables it.
    ping_interval: seconds between keepalive pings; ``None`` disables them.
    ping_timeout: seconds to wait for the pong; then the socket is closed
        with 1011 (the peer is gone or stuck).
    backpressure_limit: bytes queued for one socket beyond which
        ``ws.send`` drops the message (and ``drain`` runs once it empties).
    compression: negotiate permessage-deflate when the client offers it.
        Off by default: it costs CPU and ~64 KiB of zlib state per socket.
    subprotocols: subprotocols this route speaks, in order of preference.
    allowed_origins: if set, a handshake whose ``Origin`` is not listed is
        rejected with 403 (browser cross-site protection).
    close_timeout: seconds to wait for the peer's close frame after ours
        before dropping the TCP connection.
    publish_to_self: deliver ``ws.publish`` to the publishing socket too.
    rate_limit: ``(messages, seconds)``: at most that many messages per
        socket, as a token bucket (a burst of ``messages``, refilled evenly
        over ``seconds``); ``None``: no limit.
    byte_rate_limit: ``(bytes, seconds)``: the same for message bytes
        (UTF-8 for text). A single message over ``bytes`` never passes.
    on_rate_limit: what a message over a rate limit does: ``"close"`` the
        socket with 1008 (policy violation), or ``"drop"`` the message;
        counted either way.
    """

    max_message_size: int = MiB
    idle_timeout: float | None = 120.0
    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0
    backpressure_limit: int = MiB
    compression: bool = False
    subprotocols: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] | None = None
    close_timeout: float = 5.0
    publish_to_self: bool = False
    rate_limit: tuple[int, float] | None = None
    byte_rate_limit: tuple[int, float] | None = None
    on_rate_limit: str = "close"

    def __post_init__(self) -> None:
        self._check_rate_limits()
        _positive_int("max_message_size", self.max_message_size)
        _positive_int("backpressure_limit", self.backpressure_limit)
        _positive_or_none("idle_timeout", self.idle_timeout)
        _positive_or_none("ping_interval", self.ping_interval)
        _positive_or_none("ping_timeout", self.ping_timeout, allow_none=False)
        _positive_or_none("close_timeout", self.close_timeout, allow_none=False)
        if not isinstance(self.compression, bool):
            raise TypeError(f"compression must be True or False, got {self.compression!r}")
        if not isinstance(self.publish_to_self, bool):
            raise TypeError(f"publish_to_self must be True or False, got {self.publish_to_self!r}")

    def _check_rate_limits(self) -> None:
        """``rate_limit``, ``byte_rate_limit``, ``on_rate_limit``, normalised to tuples."""
        for name, unit in (("rate_limit", "messages"), ("byte_rate_limit", "bytes")):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_rate(name, value, unit))
        if self.on_rate_limit not in ON_RATE_LIMIT:
            raise ValueError(f"on_rate_limit must be 'close' or 'drop', got {self.on_rate_limit!r}")

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def with_overrides(self, overrides: dict[str, Any]) -> WSOptions:
        """A copy with ``overrides`` applied (names checked, sequences normalised)."""
        unknown = sorted(set(overrides) - self.names())
        if unknown:
            valid = sorted(self.names())
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"unknown WebSocket option {unknown[0]!r}{hint}; valid: {', '.join(valid)}"
            )
        normalised = dict(overrides)
        for key in ("subprotocols", "allowed_origins"):
            value = normalised.get(key)
            if isinstance(value, str):
                raise TypeError(f"{key} must be a list of strings, not a single string")
            if value is not None:
                normalised[key] = tuple(value)
        return replace(self, **normalised)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (bytes), got {value!r}")


def _positive_or_none(name: str, value: object, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive number of seconds{suffix}, got {value!r}")
