"""The origin check of a WebSocket handshake (cross-site WebSocket hijacking).

A browser sends ``Origin`` with every WebSocket handshake and, unlike for
``fetch``, no CORS rule stops a page of another site from opening a socket
with the user's cookies: the server must look. One policy object answers
"may this origin open a socket here?"; a route's ``allowed_origins`` and the
security plugin both build one (see ``axeom.security`` for which applies).

Allowed entries are origins as browsers send them: ``https://app.example.com``
(exact; the default port may be written or not), ``https://*.example.com``
(any subdomain, at any depth, not the bare domain), ``null`` (sandboxed
frames, ``file:`` pages: only when listed), or ``*`` (any origin: the check
is off). Scheme and host compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from .._headers import Headers

__all__ = ["OriginPolicy"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Decisions remembered per (Origin, Host) pair: a site's clients send a handful
# of them, and parsing an origin costs more than the rest of the handshake's
# checks; bounded (cleared when full) so that made-up origins cost no memory.
DECISION_CACHE_SIZE = 256


def _split(origin: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port or None) of an origin, lower-cased; None if it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not parts.scheme or not host or parts.path not in ("", "/") or parts.query:
        return None
    if parts.username is not None or parts.fragment:
        return None
    return parts.scheme.lower(), host.lower(), port


def _effective_port(scheme: str, port: int | None) -> int | None:
    return port if port is not None else _DEFAULT_PORTS.get(scheme)


class OriginPolicy:
    """Which ``Origin`` values may open a socket.

    same_origin: an ``Origin`` whose host (and port, if ``Host`` has one)
        equals the request's ``Host`` passes.
    require_origin: a handshake without ``Origin`` (not a browser: a
        command-line client, a server) is refused; otherwise it passes.
    """

    __slots__ = (
        "_any",
        "_decisions",
        "_exact",
        "_null",
        "_wildcards",
        "require_origin",
        "same_origin",
    )

    def __init__(
        self, allowed: Iterable[str] = (), *, same_origin: bool, require_origin: bool
    ) -> None:
        self.same_origin = same_origin
        self.require_origin = require_origin
        self._any = False
        self._null = False
        self._exact: set[tuple[str, str, int | None]] = set()
        self._wildcards: list[tuple[str, str, int | None]] = []  # (scheme, ".domain", port)
        self._decisions: dict[tuple[str, str | None], bool] = {}
        if isinstance(allowed, str):
            raise TypeError("allowed_origins must be a list of origins, not a single string")
        for entry in allowed:
            self._add(entry)

    def _add(self, entry: object) -> None:
        if not isinstance(entry, str):
            raise TypeError(f"allowed_origins entries must be strings, got {entry!r}")
        if entry == "*":
            self._any = True
            return
        if entry == "null":
            self._null = True
            return
        wildcard = "://*." in entry
        parts = _split(entry.replace("://*.", "://", 1) if wildcard else entry)
        if parts is None or "*" in entry.replace("://*.", "", 1):
            raise ValueError(
                f"allowed_origins entry {entry!r} is not an origin: write scheme://host[:port] "
                f"(no path), e.g. 'https://app.example.com' or 'https://*.example.com'"
            )
        scheme, host, port = parts
        port = _effective_port(scheme, port)
        if wildcard:
            self._wildcards.append((scheme, "." + host, port))
        else:
            self._exact.add((scheme, host, port))

    def refusal(self, headers: Headers) -> str | None:
        """Why this handshake's origin may not open a socket, or None if it may."""
        origin = headers.get("origin")
        if origin is None:
            return "a handshake without Origin is not allowed" if self.require_origin else None
        if self._any:
            return None
        key = (origin, headers.get("host"))
        allowed = self._decisions.get(key)
        if allowed is None:
            allowed = self.allows(*key)
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                self._decisions.clear()
            self._decisions[key] = allowed
        return None if allowed else f"origin {origin!r} is not allowed"

    def allows(self, origin: str, host: str | None) -> bool:
        if origin == "null":
            return self._null
        parts = _split(origin)
        if parts is None:
            return False
        scheme, name, port = parts
        port = _effective_port(scheme, port)
        if (scheme, name, port) in self._exact:
            return True
        for w_scheme, suffix, w_port in self._wildcards:
            if scheme == w_scheme and port == w_port and name.endswith(suffix):
                return True
        return self.same_origin and host is not None and _same_host(name, port, scheme, host)


def _same_host(name: str, port: int | None, scheme: str, host: str) -> bool:
    """The origin names the host the request was sent to: the same name, and
    the same port when ``Host`` carries one. Without one, the origin must use
    its scheme's default port: behind a TLS-ending proxy the request's own
    scheme is not known here, so either default is taken."""
    parts = _split(f"{scheme}://{host}")
    if parts is None:
        return False
    _, host_name, host_port = parts
    if host_name != name:
        return False
    if host_port is None:
        return port == _DEFAULT_PORTS.get(scheme)
    return host_port == port
