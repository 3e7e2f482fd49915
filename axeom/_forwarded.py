"""The client behind a reverse proxy: ``X-Forwarded-For`` and ``Forwarded``, sans-IO.

Behind nginx (or caddy, haproxy, a cloud load balancer) every connection comes
from the proxy, and the client's address travels in a header the proxy adds.
Anyone can write that header, so it is believed only from a peer listed in
``--forwarded-allow-ips`` (:class:`TrustedProxies`), and only as far as the
chain of trusted proxies goes: each proxy *appends* the address it received
the request from, so the list is read from the right, past every trusted
proxy, and the first address that is not one is the client (what a client
wrote itself sits further left and is never reached). If every address is a
trusted proxy, the leftmost one is the client (as uvicorn does).

``X-Forwarded-For`` is read when present (nginx, caddy, haproxy and cloud load
balancers set it); ``Forwarded`` (RFC 7239) only without it, since a proxy
that sets one header passes the other through as the client wrote it. A hop
the walk reaches but cannot read (not an address, ``unknown``, an obfuscated
node, a syntax error, more than ``MAX_HOPS`` trusted proxies) leaves the
peer's address in place: never an error, never a guess. What lies beyond the
client is never read, so a client cannot use it to fall back to the proxy's
address. Addresses come back normalised (``ipaddress``), with port 0 when the
header names none.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._headers import Headers

__all__ = ["Forwarded", "TrustedProxies", "forwarded_client"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The schemes a proxy may report; anything else is ignored.
_SCHEMES = frozenset({"http", "https", "ws", "wss"})
# RFC 7239 section 4: forwarded-pair = token "=" value, value = token / quoted-string.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*')
_QUOTED_PAIR = re.compile(r"\\(.)")
_PORT = re.compile(r"[0-9]{1,5}")
# Proxies walked past at most, from the right. No deployment chains this many;
# a longer list is a client's own writing, and walking it all (a head may be
# up to 1 MiB) would make each request cost the server milliseconds.
MAX_HOPS = 32
# Stands for the elements left of the last MAX_HOPS: never an address.
_TOO_FAR = "(more hops)"


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses and CIDR
    networks (IPv4 or IPv6), or ``*`` for every peer (only where nothing but
    the proxy can reach the server). Empty trusts nobody, the default.

    Raises ``ValueError`` naming the entry that is neither.
    """

    __slots__ = ("everyone", "networks", "spec")

    def __init__(self, spec: Iterable[str] | str = ()) -> None:
        self.spec = parse_spec(spec)
        self.everyone = "*" in self.spec
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in self.spec if entry != "*"
        )

    def __bool__(self) -> bool:
        return bool(self.spec)

    def __repr__(self) -> str:
        return f"TrustedProxies({','.join(self.spec)!r})"

    def trusts(self, host: str) -> bool:
        """True if ``host`` (an address as ``accept`` or a header gives it) is trusted."""
        if self.everyone:
            return True
        address = _address(host)
        return address is not None and self._trusts(address)

    def _trusts(self, address: Address) -> bool:
        if self.everyone:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(address in network for network in self.networks)


def parse_spec(spec: Iterable[str] | str) -> tuple[str, ...]:
    """``"127.0.0.1, 10.0.0.0/8"`` or a list of entries, checked and stripped."""
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    checked: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"must list addresses or networks, got {entry!r}")
        entry = entry.strip()
        if not entry:
            continue
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address, a CIDR network (10.0.0.0/8) or *"
                ) from None
        checked.append(entry)
    return tuple(checked)


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Who sent a request: the client's (host, port), and the scheme the
    client used if a trusted proxy said (``http``, ``https``, ``ws``, ``wss``)."""

    client: tuple[str, int]
    scheme: str | None = None


def forwarded_client(headers: Headers, peer: tuple[str, int], proxies: TrustedProxies) -> Forwarded:
    """The request's client per its forwarding headers, if ``peer`` (the TCP
    peer) is a trusted proxy; otherwise, or if the headers say nothing
    readable, the peer itself."""
    if not proxies.trusts(peer[0]):
        return Forwarded(peer)
    if "x-forwarded-for" in headers:
        hops = [(hop, None) for hop in _last_elements(headers.get_all("x-forwarded-for"))]
        found = _walk(hops, proxies)
        proto = headers.get_all("x-forwarded-proto")
        if found is not None and proto:  # the nearest proxy's word: the last value
            found = Forwarded(found.client, _scheme(proto[-1].rsplit(",", 1)[-1]))
    elif "forwarded" in headers:
        elements = _last_elements(headers.get_all("forwarded"))
        found = _walk([_forwarded_element(element) for element in elements], proxies)
    else:
        found = None
    return found or Forwarded(peer)


def _last_elements(values: list[str]) -> list[str]:
    """The last ``MAX_HOPS`` comma-separated elements of a header's values, the
    values taken as one list (RFC 9110 section 5.3), empty ones left out, and
    a marker before them if there were more; split from the right, so a long
    header costs little."""
    parts = ",".join(values).rsplit(",", MAX_HOPS)
    if len(parts) > MAX_HOPS:
        parts[0] = _TOO_FAR
    return [part for part in parts if part.strip(" \t")]  # empty elements are allowed


def _walk(
    hops: Sequence[tuple[str, str | None] | None], proxies: TrustedProxies
) -> Forwarded | None:
    """The rightmost hop that is not a trusted proxy (the leftmost if all are),
    with the scheme its element names, or None if a hop on the way cannot be
    read (an element with no ``for``, a bad address, past ``MAX_HOPS``)."""
    chosen: tuple[Address, int, str | None] | None = None
    for hop in reversed(hops):
        parsed = None if hop is None else _node(hop[0])
        if hop is None or parsed is None:
            return None
        chosen = (*parsed, hop[1])
        if not proxies._trusts(parsed[0]):
            break
    if chosen is None:
        return None
    address, port, proto = chosen
    return Forwarded((str(address), port), _scheme(proto))


def _scheme(proto: str | None) -> str | None:
    scheme = proto.strip(" \t").lower() if proto is not None else None
    return scheme if scheme in _SCHEMES else None


def _forwarded_element(element: str) -> tuple[str, str | None] | None:
    """(for, proto) of one ``Forwarded`` element (``for=...;proto=...;by=...``),
    or None if it is malformed or has no ``for``. Elements are split at every
    comma: a quoted value with a comma in it (never a ``for`` or ``proto``)
    leaves its element unreadable, which only matters if the walk reaches it."""
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        if not pair.strip(" \t"):
            continue  # an empty pair is allowed
        match = _PAIR.fullmatch(pair)
        if match is None:
            return None
        name, value = match.group(1).lower(), match.group(2)
        if name in pairs:
            return None  # RFC 7239 section 4: a parameter at most once per element
        if value.startswith('"'):
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        pairs[name] = value
    node = pairs.get("for")
    return None if node is None else (node, pairs.get("proto"))


def _node(text: str) -> tuple[Address, int] | None:
    """(address, port) of ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]`` or
    ``[::1]:80``; None for anything else (``unknown``, ``_hidden``, junk)."""
    text = text.strip(" \t")
    port = "0"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        if rest:
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    address = _address(host)
    if address is None or not _PORT.fullmatch(port) or int(port) > 65535:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # one spelling per client, for per-address limits
    return address, int(port)


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
