"""Read a request from a socket and answer it: reject, respond, or accept (101).

Shared by the in-process server and the multi-process acceptor. The head,
and the body an HTTP route's request may carry (``Content-Length`` only), are
read under one deadline and size limits, so a slow or oversized client costs
a bounded amount of time and memory; every rejection is a complete HTTP
response with a reason, written before the connection is closed.

Unfinished requests are also capped in number (``PendingHeads``): per client
address, where the excess is answered 429 and closed at once, and per
process (the acceptor is the only process of a node that reads heads),
where a new connection evicts the oldest unfinished one with a 408. So a
slowloris attack costs a bounded number of descriptors, and a client that
sends its request at once is never queued behind the attackers.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .._app import Axeom
from .._forwarded import TrustedProxies
from .._http1 import (
    HeadError,
    body_length,
    find_head_end,
    parse_request_head,
    serialize_response,
)
from .._messages import Request, Response
from ..logs import log_access
from ..security import Admission
from ..ws._upgrade import Upgrade
from ._tls import TLSTransport
from ._transport import SocketTransport

# What a request is read from: a plaintext socket, or TLS over one.
HeadTransport = SocketTransport | TLSTransport

__all__ = [
    "Accepted",
    "HandshakeCounters",
    "HandshakeLimits",
    "HeadTransport",
    "PendingHead",
    "PendingHeads",
    "answer_handshake",
    "reject",
    "shed",
]

logger = logging.getLogger("axeom.server")


@dataclass(frozen=True, slots=True)
class HandshakeLimits:
    """How much an unfinished request may cost (``[server]`` keys of the
    config file set them for ``axeom run``).

    max_head_size: bytes of request head before 431.
    timeout: seconds to receive the whole request, head and body, before 408.
    max_body_size: bytes of request body (``Content-Length``) before 413,
        answered without reading the body; 0 refuses every body.
    max_pending: unfinished requests at once in this process (the whole node,
        in the acceptor); one more evicts the oldest with 408.
    max_pending_per_address: unfinished heads at once from one client
        address, enforced while the process holds at least half of
        ``max_pending`` (``PRESSURE_SHARE``); the excess is then answered 429
        and closed at once. Below that the node has room, and a burst from
        one address (a reverse proxy, a NAT, clients reconnecting after a
        deploy) is served whole.
    forwarded_allow_ips: the proxies (addresses, CIDR networks, ``*``) whose
        ``X-Forwarded-For`` / ``Forwarded`` headers name the client (the
        address every per-address limit and ``ws.remote_address`` then use);
        empty (the default) believes no one. ``proxies`` is the parsed form.
    """

    max_head_size: int = 16384
    timeout: float = 10.0
    max_pending: int = 1024
    max_pending_per_address: int = 64
    max_body_size: int = 1 << 20
    forwarded_allow_ips: tuple[str, ...] = ()
    proxies: TrustedProxies = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Raises ValueError for an entry that is no address or network.
        object.__setattr__(self, "proxies", TrustedProxies(self.forwarded_allow_ips))
        object.__setattr__(self, "forwarded_allow_ips", self.proxies.spec)
        for name in ("max_head_size", "max_pending", "max_pending_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"HandshakeLimits.{name} must be at least 1")
        if self.max_body_size < 0:
            raise ValueError("HandshakeLimits.max_body_size must be at least 0")
        if self.timeout <= 0:
            raise ValueError("HandshakeLimits.timeout must be positive")


@dataclass(slots=True)
class HandshakeCounters:
    """What a server answered, for ``axeom status``.

    ``accepted`` counts 101s; ``rejected`` counts refused WebSocket upgrades
    (a request that asked for ``Upgrade: websocket`` and got another status);
    ``responses`` counts every other answer by status class, so a plain HTTP
    route such as ``/health`` answering 200 is a ``2xx``, not a rejection.
    ``shed`` counts connections answered by the unfinished-head caps (429,
    408) before their head was complete.
    """

    accepted: int = 0
    rejected: int = 0
    shed: int = 0
    responses: dict[str, int] = field(
        default_factory=lambda: {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    )
    # Every answer by exact status (101 included), for the metrics.
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, status: int, upgrade_asked: bool) -> None:
        """Record one answer (called once per request head)."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 101:
            self.accepted += 1
            return
        if upgrade_asked:
            self.rejected += 1
        status_class = f"{status // 100}xx"
        if status_class in self.responses:
            self.responses[status_class] += 1

    def count_shed(self, status: int) -> None:
        """Record a connection answered ``status`` by a cap, its head unfinished."""
        self.shed += 1
        self.count(status, upgrade_asked=False)

    def report(self) -> dict[str, Any]:
        """The figures as sent in heartbeats and shown by ``axeom status``."""
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "shed": self.shed,
            "responses": self.responses,
            "statuses": {str(status): n for status, n in self.statuses.items()},
        }


@dataclass(slots=True)
class Accepted:
    """A socket whose handshake succeeded: write ``response_head`` (the 101),
    then run it with ``trailing`` first; ``log_access`` once its fate is known."""

    upgrade: Upgrade
    trailing: bytes
    response_head: bytes
    # The socket's place under the connection limits, if they apply: the
    # caller releases it if the socket never runs, or hands it to what runs it.
    admission: Admission | None = None
    method: str = "GET"
    path: str = "-"
    client: tuple[str, int] | None = None
    started: float = 0.0  # time.perf_counter() when the handshake began

    def log_access(self, status: int) -> None:
        """The access line of this handshake, answered ``status`` in the end
        (101, or 503 when no worker took the socket)."""
        log_access(status, self.method, self.path, self.client, self.started)


@dataclass(eq=False, slots=True)
class PendingHead:
    """One connection whose request head is still being read."""

    owner: PendingHeads
    transport: HeadTransport
    address: str
    evicted: bool = False

    def leave(self) -> None:
        """The head is read (or the connection is gone): it no longer counts."""
        self.owner.leave(self)


class PendingHeads:
    """The connections of one process whose request head is unfinished,
    oldest first, counted per client address.

    A connection enters when it is accepted, before any task is started for
    it, so the caps apply in accept order and an excess costs no task.
    """

    def __init__(self, limits: HandshakeLimits, counters: HandshakeCounters | None = None) -> None:
        self.limits = limits
        self.counters = counters  # where the 429s and 408s written here are counted
        # From this many unfinished heads on, one address may hold only its share.
        self._pressure = max(1, int(limits.max_pending * PRESSURE_SHARE))
        self._heads: dict[PendingHead, None] = {}  # insertion order: oldest first
        self._per_address: dict[str, int] = {}
        self.refused = 0  # per-address excess answered 429
        self.evicted = 0  # oldest heads evicted with 408 (node cap or out of descriptors)
        self._logged = (0, 0)  # (refused, evicted) when last logged
        self._log_after = 0.0

    def __len__(self) -> int:
        return len(self._heads)

    def enter(self, transport: HeadTransport, address: str) -> PendingHead | None:
        """Register a connection just accepted; None (after answering 429 and
        closing it) if its address has too many unfinished heads already."""
        count = self._per_address.get(address, 0)
        if (
            count >= self.limits.max_pending_per_address
            and len(self._heads) >= self._pressure
            and not _head_arrived(transport)
        ):
            self.refused += 1
            self._shed(transport, TOO_MANY_FROM_ADDRESS)
            return None
        while len(self._heads) >= self.limits.max_pending:
            self.evict_oldest()
        head = PendingHead(self, transport, address)
        self._heads[head] = None
        self._per_address[address] = count + 1
        return head

    def leave(self, head: PendingHead) -> None:
        if head in self._heads:
            del self._heads[head]
            count = self._per_address[head.address] - 1
            if count:
                self._per_address[head.address] = count
            else:
                del self._per_address[head.address]

    def evict_oldest(self) -> bool:
        """Answer the oldest unfinished head 408 and close it now (its
        descriptor is free on return; closing wakes its task, which then
        sees ``evicted``); False if there is none."""
        if not self._heads:
            return False
        head = next(iter(self._heads))
        self.leave(head)
        head.evicted = True
        self.evicted += 1
        self._shed(head.transport, EVICTED)
        return True

    def _shed(self, transport: HeadTransport, response: Response) -> None:
        shed(transport, response)
        if self.counters is not None:
            # Unread, so whether it asked for an upgrade is unknown: a response only.
            self.counters.count_shed(response.status)
        self._report()

    def report_if_due(self) -> None:
        """Log what was shed since the last warning, if anything and if due:
        called periodically, so that the end of an episode is logged too."""
        if (self.refused, self.evicted) != self._logged:
            self._report()

    def _report(self) -> None:
        """One warning per ``SHED_LOG_INTERVAL`` at most, with the counts since the last."""
        now = time.monotonic()
        if now < self._log_after:
            return
        self._log_after = now + SHED_LOG_INTERVAL
        refused, evicted = self._logged
        self._logged = (self.refused, self.evicted)
        logger.warning(
            "slow handshakes shed: %d answered 429 (over %d unfinished heads from one "
            "address), %d evicted with 408 (over %d unfinished heads or out of descriptors)",
            self.refused - refused,
            self.limits.max_pending_per_address,
            self.evicted - evicted,
            self.limits.max_pending,
        )


def _head_arrived(transport: HeadTransport) -> bool:
    """True if the connection's whole request head is already received (looked
    at without consuming it): such a client is not slow, only not read yet, as
    in a burst of connections from one address (a proxy, a NAT, a load test).
    Over TLS it cannot be told (the bytes are encrypted): False."""
    if transport.secure:
        return False
    try:
        data = transport.sock.recv(SHED_DRAIN, socket.MSG_PEEK)
    except OSError:
        return False
    try:
        return find_head_end(data, 0) >= 0
    except HeadError:
        return True  # answered 400 as soon as it is read: not slow either


# The per-address cap applies once the process holds this share of its
# ``max_pending`` unfinished heads: a slowloris from one address is held to its
# share before it can crowd the node, while a burst of prompt clients behind one
# address is not refused as long as there is room for it.
PRESSURE_SHARE = 0.5
# What a shed connection's unread input is drained of before closing: a head's worth.
SHED_DRAIN = 16384
# Under attack, shedding happens thousands of times a second: say so this often at most.
SHED_LOG_INTERVAL = 10.0

# Answers for connections shed under load: written without waiting, then closed.
TOO_MANY_FROM_ADDRESS = Response.error(
    429, "too many unfinished handshakes from this address", [("retry-after", "1")]
)
EVICTED = Response.error(408, "request head not received in time (server busy)")


def shed(transport: HeadTransport, response: Response) -> None:
    """Answer ``response`` if the socket takes it at once, and close now: a
    connection shed under load must not cost a task or a descriptor any longer.
    What the client sent is read first (without waiting), so that the close
    is a FIN after the answer rather than a reset that may discard it."""
    with contextlib.suppress(OSError):
        transport.sock.recv(SHED_DRAIN)
    try:
        transport.try_send([serialize_response(response, close=True)])
    except trio.BrokenResourceError:
        pass
    transport.close()


async def answer_handshake(
    app: Axeom,
    transport: HeadTransport,
    client: tuple[str, int] | None,
    limits: HandshakeLimits,
    admit: Callable[[], Response | None] | None = None,
    pending: PendingHead | None = None,
    counters: HandshakeCounters | None = None,
    handle: Callable[[Request], Awaitable[Response]] | None = None,
) -> Accepted | None:
    """Read the request (head, and body if any), run ``app.handle`` and answer.

    ``admit`` is asked before a 101 would be returned; a response it returns
    is sent instead (the acceptor answers 503 when no worker is alive).
    ``pending`` is this connection's entry among the unfinished requests (see
    ``PendingHeads``): it leaves once the request is read, and if it was
    evicted meanwhile (answered 408 and closed) None is returned.
    Returns ``Accepted`` with the 101 *not yet written* (the caller writes
    ``response_head``, or has a worker write it), or ``None`` once a
    rejection was written (the transport is then closed).
    ``counters``, if given, records every rejection written here; a 101 is
    the caller's to count once it is really on its way (a worker may still
    refuse the socket, and the client then gets a 503 instead).
    ``handle`` runs the app instead of awaiting ``app.handle`` here: the
    acceptor on an asyncio loop runs its hooks there (see ``asyncio_runtime``).
    Every rejection written here has its access line logged here; an
    accepted socket's is the caller's (``Accepted.log_access``).
    """
    started = time.perf_counter()
    try:
        received = await _receive_request(transport, client, limits)
    finally:
        if pending is not None:
            pending.leave()
    if pending is not None and pending.evicted:
        return None  # already answered 408 and closed
    if received.gone:
        transport.close()
        return None
    response = received.answer
    request = received.request
    if response is None:
        assert request is not None
        try:
            response = await (app.handle if handle is None else handle)(request)
        except BaseException:
            _release(request)  # cancelled (a graceful stop's deadline)
            raise
    upgrade_asked, trailing = received.upgrade_asked, received.trailing
    if response.status == 101 and admit is not None:
        response = admit() or response
    try:
        head = serialize_response(response, close=response.status != 101)
    except (ValueError, UnicodeEncodeError):
        logger.exception("response to %s cannot be serialized; answering 500", client)
        response = Response.error(500, "Internal Server Error")
        head = serialize_response(response, close=True)
    request = received.request
    method, path = ("-", "-") if request is None else (request.method, request.path)
    if response.status == 101 and response.upgrade is not None:
        assert request is not None
        return Accepted(
            response.upgrade, trailing, head, request.admission, method, path, client, started
        )
    _release(request)
    if counters is not None:
        counters.count(response.status, upgrade_asked)
    log_access(response.status, method, path, client, started)
    await reject(transport, head)
    return None


def _release(request: Request | None) -> None:
    """The handshake ends without a socket: its place under the limits is free."""
    if request is not None and request.admission is not None:
        request.admission.release()


@dataclass(slots=True)
class _Received:
    """What was read of one request: the request once complete, or the
    answer decided before the app is asked (malformed, too large, too slow)."""

    request: Request | None = None
    trailing: bytes = b""  # read past the request: a client's first frames
    answer: Response | None = None
    upgrade_asked: bool = False
    # The client closed before sending a byte (a load balancer's TCP health
    # check, a failed TLS handshake): nothing to answer, log or count.
    gone: bool = False


async def _receive_request(
    transport: HeadTransport, client: tuple[str, int] | None, limits: HandshakeLimits
) -> _Received:
    """Read one request, its body included, within ``limits.timeout`` in all."""
    received = _Received()
    part = "request head"
    with trio.move_on_after(limits.timeout):
        try:
            head, trailing = await _read_head(transport, limits.max_head_size)
            if head is None:  # the client left
                if not trailing:
                    received.gone = True  # before sending anything
                else:  # mid-head: answered as if it were slow
                    received.answer = Response.error(408, "request head not received in time")
                return received
            request = parse_request_head(head, client, limits.proxies)
            request.secure = request.secure or transport.secure
            received.upgrade_asked = "websocket" in request.headers.tokens("upgrade")
            length = body_length(request, limits.max_body_size)
            if length:
                part = "request body"
                request.body, trailing = await _read_body(transport, trailing, length)
            received.request, received.trailing = request, trailing
        except HeadError as exc:
            received.answer = Response.error(exc.status, exc.reason)
        return received
    received.answer = Response.error(408, f"{part} not received in time")
    return received


async def _read_body(transport: HeadTransport, received: bytes, length: int) -> tuple[bytes, bytes]:
    """The ``length`` bytes of body (some may have come with the head), and
    whatever followed them."""
    buffer = bytearray(received)
    while len(buffer) < length:
        data = await transport.receive(length - len(buffer))
        if not data:
            raise HeadError("connection closed before the request body was complete")
        buffer += data
    return bytes(buffer[:length]), bytes(buffer[length:])


async def _read_head(transport: HeadTransport, limit: int) -> tuple[bytes | None, bytes]:
    """The head and what followed it; at end of input, None and what came
    of the head (empty if the client sent nothing)."""
    buffer = bytearray()
    while True:
        data = await transport.receive()
        if not data:
            return None, bytes(buffer)  # the client left, after sending this
        scanned = len(buffer)
        buffer += data
        end = find_head_end(buffer, scanned)
        if end >= 0:
            if end > limit:
                raise HeadError(f"request head larger than {limit} bytes", 431)
            return bytes(buffer[:end]), bytes(buffer[end:])
        if len(buffer) > limit:
            raise HeadError(f"request head larger than {limit} bytes", 431)


async def reject(transport: HeadTransport, head: bytes) -> None:
    """Write the rejection, then close so that the client can still read it:
    half-close first and discard what the client still sends, briefly, since
    closing with unread input makes the kernel reset the connection."""
    try:
        await transport.send_all([head])
        transport.sock.shutdown(socket.SHUT_WR)
        with trio.move_on_after(0.5):
            while await transport.receive():
                pass
    except (trio.BrokenResourceError, OSError):
        pass
    finally:
        transport.close()
