"""Read a request head from a socket and answer it: reject, or accept (101).

Shared by the in-process server and the multi-process acceptor. The head is
read under a deadline and a size limit, so a slow or oversized client costs
a bounded amount of time and memory; every rejection is a complete HTTP
response with a reason, written before the connection is closed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .._app import Axeom
from .._http1 import HeadError, find_head_end, parse_request_head, serialize_response
from .._messages import Response
from ..ws._upgrade import Upgrade
from ._transport import SocketTransport

__all__ = ["Accepted", "HandshakeCounters", "HandshakeLimits", "answer_handshake"]

logger = logging.getLogger("axeom.server")


@dataclass(frozen=True, slots=True)
class HandshakeLimits:
    """max_head_size: bytes of request head before 431; timeout: seconds to
    receive the whole head before 408."""

    max_head_size: int = 16384
    timeout: float = 10.0


@dataclass(slots=True)
class HandshakeCounters:
    """What a server answered, for ``axeom status``.

    ``accepted`` counts 101s; ``rejected`` counts refused WebSocket upgrades
    (a request that asked for ``Upgrade: websocket`` and got another status);
    ``responses`` counts every other answer by status class, so a plain HTTP
    route such as ``/health`` answering 200 is a ``2xx``, not a rejection.
    """

    accepted: int = 0
    rejected: int = 0
    responses: dict[str, int] = field(
        default_factory=lambda: {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    )

    def count(self, status: int, upgrade_asked: bool) -> None:
        """Record one answer (called once per request head)."""
        if status == 101:
            self.accepted += 1
            return
        if upgrade_asked:
            self.rejected += 1
        status_class = f"{status // 100}xx"
        if status_class in self.responses:
            self.responses[status_class] += 1

    def report(self) -> dict[str, Any]:
        """The figures as sent in heartbeats and shown by ``axeom status``."""
        return {"accepted": self.accepted, "rejected": self.rejected, "responses": self.responses}


@dataclass(slots=True)
class Accepted:
    """A socket whose 101 has been written: run it with ``trailing`` first."""

    upgrade: Upgrade
    trailing: bytes


async def answer_handshake(
    app: Axeom,
    transport: SocketTransport,
    client: tuple[str, int] | None,
    limits: HandshakeLimits,
    admit: Callable[[], Response | None] | None = None,
    counters: HandshakeCounters | None = None,
) -> Accepted | None:
    """Read the head, run ``app.handle`` and write the response.

    ``admit`` is asked just before a 101 is written; a response it returns
    is sent instead (the acceptor answers 503 when no worker is alive).
    Returns ``Accepted`` after writing a 101, or ``None`` once a rejection
    was written (the transport is then closed). ``counters``, if given,
    records the answer.
    """
    head: bytes | None = None
    trailing = b""
    response: Response | None = None
    upgrade_asked = False
    with trio.move_on_after(limits.timeout):
        try:
            head, trailing = await _read_head(transport, limits.max_head_size)
        except HeadError as exc:
            response = Response.error(exc.status, exc.reason)
    if response is None:
        if head is None:
            response = Response.error(408, "request head not received in time")
        else:
            try:
                request = parse_request_head(head, client)
            except HeadError as exc:
                response = Response.error(exc.status, exc.reason)
            else:
                upgrade_asked = "websocket" in request.headers.tokens("upgrade")
                response = await app.handle(request)
    if response.status == 101 and admit is not None:
        response = admit() or response
    try:
        head = serialize_response(response, close=response.status != 101)
    except (ValueError, UnicodeEncodeError):
        logger.exception("response to %s cannot be serialized; answering 500", client)
        response = Response.error(500, "Internal Server Error")
        head = serialize_response(response, close=True)
    if counters is not None:
        counters.count(response.status, upgrade_asked)
    if response.status == 101 and response.upgrade is not None:
        try:
            await transport.send_all([head])
        except trio.BrokenResourceError:
            transport.close()
            return None
        return Accepted(response.upgrade, trailing)
    await _reject(transport, head)
    return None


async def _read_head(transport: SocketTransport, limit: int) -> tuple[bytes | None, bytes]:
    buffer = bytearray()
    while True:
        data = await transport.receive()
        if not data:
            return None, b""
        scanned = len(buffer)
        buffer += data
        end = find_head_end(buffer, scanned)
        if end >= 0:
            if end > limit:
                raise HeadError(f"request head larger than {limit} bytes", 431)
            return bytes(buffer[:end]), bytes(buffer[end:])
        if len(buffer) > limit:
            raise HeadError(f"request head larger than {limit} bytes", 431)


async def _reject(transport: SocketTransport, head: bytes) -> None:
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
