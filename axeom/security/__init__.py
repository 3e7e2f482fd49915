"""Security for Axeom apps: ``security_plugin()`` and the connection limits
the servers enforce with it.

    from axeom.security import security_plugin
    app = Axeom().use(ws_plugin()).use(security_plugin(max_connections_per_ip=50))

For servers (the acceptor, the single-process servers, a TLS worker): the
limits of an app are ``connection_limits(app)``; a server that asks for
them promises to settle every admission the handshake checks make (see
``ConnectionLimits`` and ``Request.admission``): release it when the
handshake does not end in a socket, or when the socket ends
(``Upgrade.on_end``). ``limits_hit(app)`` is what this process refused, by
limit name, for heartbeats and ``axeom status``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ws._rate import BYTE_RATE_LIMIT, RATE_LIMIT
from ._limits import (
    HANDSHAKE_RATE_PER_IP,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP,
    MAX_TRACKED_ADDRESSES,
    Admission,
    ConnectionLimits,
    Rejection,
)
from ._plugin import ORIGIN, SecurityPlugin, security_plugin

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = [
    "BYTE_RATE_LIMIT",
    "HANDSHAKE_RATE_PER_IP",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_TRACKED_ADDRESSES",
    "ORIGIN",
    "RATE_LIMIT",
    "Admission",
    "ConnectionLimits",
    "Rejection",
    "SecurityPlugin",
    "connection_limits",
    "limits_hit",
    "security_plugin",
    "tracks_sockets",
]


def connection_limits(app: Axeom) -> ConnectionLimits | None:
    """The node limits of ``app``'s security plugin, or None if it sets none.

    Calling it turns them on in this process: from then on each admitted
    WebSocket handshake leaves a reservation in ``request.admission`` that
    the caller must release (``Admission.release``) when no socket opens,
    or hand on to whatever runs the socket (``Upgrade.on_end``).
    """
    plugin = app.extensions.get("security")
    if not isinstance(plugin, SecurityPlugin) or not plugin.limits.configured:
        return None
    plugin.enforcing = True
    return plugin.limits


def tracks_sockets(app: Axeom) -> bool:
    """True if ``app`` has connection limits, without turning them on here:
    a worker then reports the end of every socket to the acceptor that
    counts it (see ``axeom.wire.CLOSED``)."""
    plugin = app.extensions.get("security")
    return isinstance(plugin, SecurityPlugin) and plugin.limits.configured


def limits_hit(app: Axeom) -> dict[str, int]:
    """What this process refused or cut, by limit name: the plugin's origin
    policy and connection limits, and every route's message limits."""
    from ..ws._route import WSRoute

    hits: dict[str, int] = {}
    plugin = app.extensions.get("security")
    if isinstance(plugin, SecurityPlugin):
        hits.update(plugin.hits())
    for _, _, endpoint in app.routes:
        if isinstance(endpoint, WSRoute) and endpoint.message_limits is not None:
            for name, count in endpoint.message_limits.hits.items():
                hits[name] = hits.get(name, 0) + count
    return hits
