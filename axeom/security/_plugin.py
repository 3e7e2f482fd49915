"""``security_plugin()``: response headers, the origin policy and connection limits.

Everything here is engine code (sans-IO): headers are added by an
``on_response`` hook; the origin policy and the connection limits are
checked by every WebSocket route during its handshake checks (before any
user hook, so a refused client costs no ``derive`` work).

Which origin policy applies to a route:

1. with the plugin, the plugin's: same-origin passes (unless
   ``same_origin=False``), then ``allowed_origins``; no ``Origin`` passes
   unless ``require_origin=True``. A route's own ``allowed_origins``
   replaces the plugin's list for that route (same-origin and
   ``require_origin`` still follow the plugin);
2. without the plugin, a route's ``allowed_origins`` alone, strictly: the
   ``Origin`` must be present and listed;
3. neither: no origin check.

Connection limits are held where every handshake of the node passes (the
acceptor with ``--workers N``, the one process with ``--workers 0``); they
apply only on a server that tracks sockets (``axeom run``): under an ASGI
server, use its own limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from .._messages import Response
from ..errors import Forbidden, HTTPError
from ..ws._origin import OriginPolicy
from ..ws._rate import check_rate
from ._limits import ConnectionLimits

if TYPE_CHECKING:
    from .._app import Axeom
    from .._context import Context
    from ..ws._route import WSRoute

__all__ = ["ORIGIN", "SecurityPlugin", "security_plugin"]

# The name origin refusals are counted under (``axeom status``, "limits hit").
ORIGIN = "origin"

# Helmet's defaults, as the original Axeom's plugin sends them. HSTS: a year,
# subdomains included, and only over TLS (browsers ignore it otherwise).
DEFAULT_CONTENT_TYPE_OPTIONS = "nosniff"
DEFAULT_FRAME_OPTIONS = "SAMEORIGIN"
DEFAULT_REFERRER_POLICY = "no-referrer"
DEFAULT_HSTS = "max-age=31536000; includeSubDomains"


def security_plugin(
    *,
    allowed_origins: Iterable[str] = (),
    same_origin: bool = True,
    require_origin: bool = False,
    max_connections: int | None = None,
    max_connections_per_ip: int | None = None,
    handshake_rate_per_ip: tuple[int, float] | None = None,
    content_type_options: str | None = DEFAULT_CONTENT_TYPE_OPTIONS,
    frame_options: str | None = DEFAULT_FRAME_OPTIONS,
    referrer_policy: str | None = DEFAULT_REFERRER_POLICY,
    hsts: str | None = DEFAULT_HSTS,
    headers: Mapping[str, str] | None = None,
) -> SecurityPlugin:
    """Security headers, origin policy and connection limits for an app.

    >>> app = Axeom().use(ws_plugin()).use(security_plugin(
    ...     allowed_origins=["https://app.example.com", "https://*.example.com"],
    ...     max_connections_per_ip=50, handshake_rate_per_ip=(20, 10), max_connections=20000))

    allowed_origins, same_origin, require_origin: the origin policy (see the
        module docstring); a refused handshake gets 403 with the reason.
    max_connections: open sockets on the node; over it 503 + ``Retry-After``.
    max_connections_per_ip: open sockets per client address; over it 429.
    handshake_rate_per_ip: ``(handshakes, seconds)`` per client address, a
        token bucket; over it 429 with ``Retry-After`` (when a token is back).
    content_type_options, frame_options, referrer_policy, hsts: the values of
        ``X-Content-Type-Options``, ``X-Frame-Options``, ``Referrer-Policy``
        and ``Strict-Transport-Security`` (sent over TLS only); ``None`` for
        none. On every HTTP response and refused handshake, not on a 101
        (a browser renders or frames no 101); a header the app set wins.
    headers: more headers to send the same way (``Content-Security-Policy``...).
    """
    return SecurityPlugin(
        OriginPolicy(allowed_origins, same_origin=same_origin, require_origin=require_origin),
        ConnectionLimits(
            max_connections=_cap("max_connections", max_connections),
            max_connections_per_ip=_cap("max_connections_per_ip", max_connections_per_ip),
            handshake_rate_per_ip=(
                None
                if handshake_rate_per_ip is None
                else check_rate("handshake_rate_per_ip", handshake_rate_per_ip, "handshakes")
            ),
        ),
        _headers(content_type_options, frame_options, referrer_policy, headers),
        None if hsts is None else _value("strict-transport-security", hsts),
    )


def _cap(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return value


def _headers(
    content_type_options: str | None,
    frame_options: str | None,
    referrer_policy: str | None,
    extra: Mapping[str, str] | None,
) -> list[tuple[str, str]]:
    named = [
        ("x-content-type-options", content_type_options),
        ("x-frame-options", frame_options),
        ("referrer-policy", referrer_policy),
        *(extra or {}).items(),
    ]
    result = []
    for name, value in named:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(
                f"security header name {name!r} is not a header name (letters, digits, -)"
            )
        if value is not None:
            result.append((name.lower(), _value(name, value)))
    return result


# A header name: an HTTP token (RFC 9110 section 5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _value(name: str, value: object) -> str:
    """``value`` checked once here: the response serializer refuses a line
    break (every response would be a 500)."""
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ValueError(f"security header {name!r} must be a one-line string, got {value!r}")
    return value


class SecurityPlugin:
    """Installed as ``app.extensions["security"]``; ``hits`` counts what it
    refused, by limit name (the origin policy here, the limits in ``limits``)."""

    def __init__(
        self,
        origin_policy: OriginPolicy,
        limits: ConnectionLimits,
        headers: list[tuple[str, str]],
        hsts: str | None,
    ) -> None:
        self.origin_policy = origin_policy
        self.limits = limits
        self.headers = headers
        self.hsts = hsts
        self.origin_refused = 0
        # Connection limits apply once a server that releases what it admits
        # says so (``connection_limits``): otherwise places would leak.
        self.enforcing = False
        self._policies: dict[WSRoute, OriginPolicy] = {}

    def __call__(self, app: Axeom) -> None:
        app.extensions["security"] = self
        app.on_response(self.add_headers)

    # -- handshakes -------------------------------------------------------------

    def check_handshake(self, ctx: Context, route: WSRoute) -> None:
        """The origin, then the connection limits (``HTTPError`` to refuse)."""
        refusal = self.policy_for(route).refusal(ctx.headers)
        if refusal is not None:
            self.origin_refused += 1
            raise Forbidden(refusal)
        if self.enforcing:
            client = ctx.client
            address = client[0] if client else None
            rejection = self.limits.admit(address)
            if rejection is not None:
                raise HTTPError(rejection.status, rejection.reason, headers=rejection.headers)
            ctx.request.admission = self.limits.admission(address)

    def policy_for(self, route: WSRoute) -> OriginPolicy:
        """The plugin's policy, or the route's list under the plugin's rules."""
        policy = self._policies.get(route)
        if policy is None:
            allowed = route.options.allowed_origins
            policy = (
                self.origin_policy
                if allowed is None
                else OriginPolicy(
                    allowed,
                    same_origin=self.origin_policy.same_origin,
                    require_origin=self.origin_policy.require_origin,
                )
            )
            self._policies[route] = policy
        return policy

    # -- headers ----------------------------------------------------------------

    def add_headers(self, ctx: Context, response: Response) -> Response | None:
        """The security headers on every response but a 101 (a copy: the
        response may be shared); one the response already has is kept."""
        if response.status == 101:
            return None
        wanted = self.headers
        if self.hsts is not None and ctx.secure:
            wanted = [*wanted, ("strict-transport-security", self.hsts)]
        if not wanted:
            return None
        present = {name.lower() for name, _ in response.headers}
        added = [(name, value) for name, value in wanted if name not in present]
        if not added:
            return None
        return replace(response, headers=[*response.headers, *added])

    # -- figures ----------------------------------------------------------------

    def hits(self) -> dict[str, int]:
        result = dict(self.limits.hits)
        if self.origin_refused:
            result[ORIGIN] = self.origin_refused
        return result
