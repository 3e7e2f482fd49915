"""Read a request head on asyncio and answer it: reject, respond, or upgrade.

The same rules as the trio runtime's handshake (``HandshakeLimits``,
``PendingHeads``, the parser of ``axeom._http1``): the head and any body are
read under one deadline and size limits, unfinished heads are capped per
address and per process, every rejection is a complete HTTP response with
its status. Parsing happens in ``data_received``, without a task; only
``app.handle`` runs in one (its hooks and ``derive`` may await an asyncio
client). On a 101 the same transport switches to the socket's protocol,
keeping the bytes read past the head.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from .._http1 import HeadError, body_length, find_head_end, parse_request_head, serialize_response
from .._messages import Request, Response
from ..logs import log_access
from ..trio_runtime._handshake import HandshakeCounters, HandshakeLimits, PendingHead, PendingHeads

if TYPE_CHECKING:
    import socket
    import ssl

    from .._app import Axeom
    from ._runtime import AsyncioRuntime

__all__ = ["HandshakeProtocol", "HeadSocket"]

logger = logging.getLogger("axeom.server")

# How long a rejected client's further input is read and discarded before
# closing: closing with unread input makes the kernel reset the connection,
# which can destroy the answer before the client read it (as in the trio runtime).
REJECT_LINGER = 0.5


class HeadSocket:
    """What ``PendingHeads`` needs of a connection whose head is unfinished
    (``sock``, ``try_send``, ``close``), for a socket an asyncio transport owns."""

    __slots__ = ("closed", "connecting", "sock", "tls", "transport")

    def __init__(self, sock: socket.socket, tls: bool = False) -> None:
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.tls = tls  # nothing readable can be written on the socket itself
        # TLS: the task making the transport (its handshake); the socket is the loop's meanwhile.
        self.connecting: asyncio.Task[None] | None = None

    def try_send(self, chunks: list[bytes]) -> int:
        if self.tls:
            return 0
        try:
            return self.sock.send(b"".join(chunks))
        except OSError:
            return 0

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        elif self.connecting is not None:
            self.connecting.cancel()  # the loop closes the socket it registered
        else:
            self.sock.close()


class _State(enum.Enum):
    HEAD = "request head"
    BODY = "request body"
    HANDLE = "handle"
    DONE = "done"


class Handshakes:
    """What every handshake of one server shares."""

    def __init__(
        self,
        app: Axeom,
        runtime: AsyncioRuntime,
        limits: HandshakeLimits,
        counters: HandshakeCounters,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.limits = limits
        self.counters = counters
        self.pending = PendingHeads(limits, counters)
        self.ssl_context = ssl_context  # TLS only, when given (asyncio runs it)

    def enter(self, sock: socket.socket, address: Any) -> HandshakeProtocol | None:
        """The protocol for a connection just accepted; None if the caps shed it."""
        head_socket = HeadSocket(sock, tls=self.ssl_context is not None)
        # ``PendingHeads`` only uses ``sock``, ``try_send`` and ``close``.
        pending = self.pending.enter(cast(Any, head_socket), address[0])
        if pending is None:
            return None
        return HandshakeProtocol(self, head_socket, address, pending)


class HandshakeProtocol(asyncio.Protocol):
    """One connection until its head is answered (then it switches protocol)."""

    def __init__(
        self, server: Handshakes, head_socket: HeadSocket, address: Any, pending: PendingHead
    ) -> None:
        self.server = server
        self.head_socket = head_socket
        self.address = (address[0], address[1])
        self.pending = pending
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.state = _State.HEAD
        self.request: Request | None = None
        self.body_length = 0
        self.upgrade_asked = False
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.started = time.perf_counter()  # the access line's duration starts here

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.head_socket.transport = transport
        if self.head_socket.closed:  # evicted before its transport was made
            transport.abort()
            return
        loop = self.server.runtime.loop
        self.timer = loop.call_later(self.server.limits.timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is _State.HEAD:
            self._head_data(data)
        elif state is _State.BODY:
            self.buffer += data
            self._body_done()
        # else: answered, or waiting for the app; rejected input is discarded

    def eof_received(self) -> bool:
        if self.state is _State.HEAD and not self.buffer:
            # Closed before sending a byte (a load balancer's TCP health check):
            # nothing to answer, log or count (trio does the same).
            self._read()
            self.state = _State.DONE
            return False
        if self.state in (_State.HEAD, _State.BODY):
            # The client left mid-request: answered as if it were slow (trio does the same).
            self._answer(Response.error(408, f"{self.state.value} not received in time"))
            # (over TLS the transport closes after its answer whatever this says)
            return not self.head_socket.tls
        return False  # after a rejection: nothing more to read, close

    def connection_lost(self, exc: BaseException | None) -> None:
        self.pending.leave()
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.state = _State.DONE

    # -- reading ------------------------------------------------------------------

    def _head_data(self, data: bytes) -> None:
        buffer = self.buffer
        scanned = len(buffer)
        buffer += data
        limit = self.server.limits.max_head_size
        try:
            end = find_head_end(buffer, scanned)
            if end < 0:
                if len(buffer) > limit:
                    raise HeadError(f"request head larger than {limit} bytes", 431)
                return
            if end > limit:
                raise HeadError(f"request head larger than {limit} bytes", 431)
            limits = self.server.limits
            request = parse_request_head(bytes(buffer[:end]), self.address, limits.proxies)
            request.secure = request.secure or self.head_socket.tls
            del buffer[:end]
            self.upgrade_asked = "websocket" in request.headers.tokens("upgrade")
            self.request = request
            self.body_length = body_length(request, self.server.limits.max_body_size)
        except HeadError as exc:
            self._answer(Response.error(exc.status, exc.reason))
            return
        self.state = _State.BODY
        self._body_done()

    def _body_done(self) -> None:
        if len(self.buffer) < self.body_length:
            return
        request = self.request
        assert request is not None
        if self.body_length:
            request.body = bytes(self.buffer[: self.body_length])
            del self.buffer[: self.body_length]
        trailing = bytes(self.buffer)  # a client's first frames, read with the head
        self.buffer = bytearray()
        self._read()
        if self.pending.evicted:
            return  # already answered 408 and closed
        self.state = _State.HANDLE
        assert self.transport is not None
        self.transport.pause_reading()  # the socket's protocol reads what follows
        self.task = self.server.runtime.start_task(self._handle(request, trailing))

    def _read(self) -> None:
        """The request is complete (or answered): it no longer counts as pending."""
        self.pending.leave()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.state in (_State.HEAD, _State.BODY):
            self._answer(Response.error(408, f"{self.state.value} not received in time"))

    # -- answering ------------------------------------------------------------------

    async def _handle(self, request: Request, trailing: bytes) -> None:
        adopted = False
        try:
            response = await self.server.app.handle(request)
            admission = request.admission
            if admission is not None and response.upgrade is not None:
                response.upgrade.on_end = admission.release  # counts open until it ends
            adopted = self._respond(response, trailing)
        except Exception:
            logger.exception("internal error serving %s:%s; connection dropped", *self.address)
            if self.transport is not None:
                self.transport.abort()
        finally:
            if not adopted and request.admission is not None:
                request.admission.release()  # no socket runs: its place is free again

    def _answer(self, response: Response) -> None:
        """Answer without asking the app (malformed, too large, too slow)."""
        self._read()
        self._respond(response, b"")

    def _respond(self, response: Response, trailing: bytes) -> bool:
        """Write the answer; True if it was a 101 and the runtime runs the socket."""
        server = self.server
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        self.state = _State.DONE
        try:
            head = serialize_response(response, close=response.status != 101)
        except (ValueError, UnicodeEncodeError):
            logger.exception("response to %s cannot be serialized; answering 500", self.address)
            response = Response.error(500, "Internal Server Error")
            head = serialize_response(response, close=True)
        request = self.request
        method, path = ("-", "-") if request is None else (request.method, request.path)
        log_access(response.status, method, path, self.address, self.started)
        if response.status == 101 and response.upgrade is not None:
            transport.write(head)
            server.counters.count(101, True)
            server.runtime.adopt(transport, response.upgrade, trailing, tls=self.head_socket.tls)
            return True
        server.counters.count(response.status, self.upgrade_asked)
        self._reject(transport, head)
        return False

    def _reject(self, transport: asyncio.Transport, head: bytes) -> None:
        """Write the rejection, half-close, and discard what the client still
        sends, briefly: closing with unread input would reset the connection."""
        transport.write(head)
        with contextlib.suppress(OSError, RuntimeError):
            if transport.can_write_eof():
                transport.write_eof()
        transport.resume_reading()
        self.server.runtime.loop.call_later(REJECT_LINGER, transport.close)
