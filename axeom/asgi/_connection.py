"""One accepted WebSocket under an ASGI server: the ``Connection`` under ``ws``.

The server owns the socket: it frames, compresses, pings and writes. What is
Axeom's is the same actor as on the native runtime (``ws/_actor.py``): the
socket's messages are handled one at a time, in order, in the task the
server gave the app (nothing more is received while a handler runs, so a
slow handler slows its own client, through the server's receive buffer);
``close`` runs exactly once; a raising handler closes only its socket, 1011.

Writes: ``ws.send`` queues an ASGI ``websocket.send`` message and returns at
once. What a handler queued is handed to the server right after it returns
(or as soon as it suspends), in the same task; what is sent to the socket
from elsewhere (a publish, ``app.send``, another socket's handler) wakes a
writer task of the socket's own. One writer at a time, so the order of
``ws.send`` calls is the order on the wire.

Backpressure: the server's transport buffer is out of sight, so
``buffered_amount`` counts the payload bytes of messages queued here and not
yet taken by the server's ``send`` (the message being handed over included:
it counts until ``await send(...)`` returns). Servers whose ``send`` waits
for their transport to drain (see the README's table) turn that into TCP
backpressure; on the others it measures only what is queued in the process.
``backpressure_limit``, ``BACKPRESSURE``/``DROPPED``, ``await ws.send`` and
``drain`` then behave as on the native runtime.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode

from ..pubsub import WORK_BUDGET
from ..ws._actor import Actor
from ..ws._driver import websocket_for
from ..ws._socket import SendStatus
from ..ws._upgrade import Upgrade
from ._loop import Cutoff, Event, Loop

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = ["ASGIConnection"]

logger = logging.getLogger("axeom.asgi")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_QUEUED = SendStatus.QUEUED
_BACKPRESSURE = SendStatus.BACKPRESSURE
_DROPPED = SendStatus.DROPPED
_CLOSED = SendStatus.CLOSED
# What the close handler gets when the server reports no code (RFC 6455 7.1.5).
NO_STATUS = CloseCode.NO_STATUS_RCVD


class CloseRefused(Exception):
    """Raised from the app when the server refused to send 1011 itself (daphne):
    a server sends 1011 when the app raises, which is what the socket needs."""


class ASGIConnection:
    """The ``Connection`` protocol (``ws/_socket.py``) over ASGI's receive and send."""

    __slots__ = (
        "_drained",
        "_idle",
        "_wake_pending",
        "_wakeup",
        "_writable",
        "actor",
        "broken",
        "buffered",
        "close_refused",
        "close_sent",
        "close_timeout",
        "closing",
        "cutoff",
        "drain_due",
        "in_dispatch",
        "limit",
        "loop",
        "max_size",
        "outbox",
        "peer_close",
        "pubsub",
        "send",
        "wants_drain",
        "writing",
        "ws",
        "yielding",
    )

    def __init__(self, app: Axeom, upgrade: Upgrade, prefix: str, send: Send, loop: Loop) -> None:
        route = upgrade.route
        options = route.options
        self.loop = loop
        self.send = send
        self.pubsub = app.pubsub
        self.limit = options.backpressure_limit
        self.max_size = options.max_message_size
        self.close_timeout = options.close_timeout
        self.ws = websocket_for(self, app, upgrade, path_prefix=prefix)
        self.actor = Actor(self.ws, route.handlers.bind(), self._left_dispatch)
        self.outbox: deque[tuple[dict[str, Any], int]] = deque()  # (message, payload bytes)
        self.buffered = 0
        self.closing: tuple[int, str] | None = None  # what ws.close asked for
        self.close_sent = False
        self.close_refused = False  # 1011 refused: the app raises for the server to send it
        self.peer_close: tuple[int, str] | None = None  # the server's websocket.disconnect
        self.broken = False  # send raised: the peer is gone
        self.writing = False
        self.in_dispatch = False
        self.yielding = False
        self.wants_drain = False
        self.drain_due = False
        self.cutoff = Cutoff()
        self._wakeup: Event = loop.event()
        self._wake_pending = False
        self._drained: Event | None = None
        self._writable: Event | None = None
        self._idle: Event | None = None

    # -- Connection protocol (what ws.* calls) -------------------------------

    def send_message(self, data: str | bytes) -> SendStatus:
        if self.closing is not None or self.peer_close is not None or self.broken:
            return _CLOSED
        if self.buffered >= self.limit:
            self.wants_drain = True
            return _DROPPED
        if type(data) is str:
            # isascii() is O(1) in CPython: most text is counted without encoding it.
            size = len(data) if data.isascii() else len(data.encode())
            self.outbox.append(({"type": "websocket.send", "text": data}, size))
        else:
            size = len(data)
            self.outbox.append(({"type": "websocket.send", "bytes": data}, size))
        self.buffered += size
        if not self.in_dispatch:
            self._wake_writer()
        if self.buffered >= self.limit:
            self.wants_drain = True
            return _BACKPRESSURE
        return _QUEUED

    def send_text(self, payload: bytes) -> SendStatus:
        # An ASGI text message is a str: the server encodes it again.
        return self.send_message(payload.decode())

    def close(self, code: int, reason: str) -> None:
        if self.closing is not None or self.peer_close is not None:
            return
        self.closing = (code, reason)
        if not self.in_dispatch:
            self._wake_writer()
        self._wake_writable()  # a closing socket takes no more sends: stop waiting

    async def wait_drained(self) -> None:
        if not self.writing and (self.outbox or self._close_due()):
            self._wake_writer()  # whoever queued it may be a handler waiting right here
        while (self.outbox or self.writing or self._close_due()) and not self.broken:
            if self._drained is None:
                self._drained = self.loop.event()
            await self._drained.wait()

    async def wait_writable(self) -> None:
        if not self._over_limit():
            # A schedule point, not a wait: what the handler queued stays with it.
            self.yielding = True
            try:
                await self.loop.checkpoint()
            finally:
                self.yielding = False
            return
        if not self.writing:
            self._wake_writer()
        while self._over_limit():
            if self._writable is None:
                self._writable = self.loop.event()
            await self._writable.wait()

    @property
    def buffered_amount(self) -> int:
        return self.buffered

    @property
    def is_open(self) -> bool:
        return self.closing is None and self.peer_close is None and not self.broken

    # -- the socket's life ---------------------------------------------------

    async def run(self, receive: Receive) -> None:
        """Serve the socket until the server reports it gone or our close is
        sent; then run the ``close`` handler (exactly once, whatever happened)."""
        pubsub = self.pubsub
        if pubsub.checkpoint is None:
            pubsub.checkpoint = self.loop.checkpoint
        try:
            await self.loop.run_beside(lambda: self._read(receive), self._write_loop, self.cutoff)
        finally:
            self.broken = self.broken or (self.peer_close is None and self.closing is None)
            self._wake_drained()
            code, reason = self._close_status()
            await self.actor.close(code, reason)
        if self.close_refused:
            raise CloseRefused("the server cannot send close code 1011: raised for it to send it")

    async def _read(self, receive: Receive) -> None:
        actor = self.actor
        self.in_dispatch = True
        await actor.open()
        self.in_dispatch = False
        await self._after_handler()
        while not self.close_sent:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if self.closing is not None:
                    continue  # after our close, as on the native runtime: not handled
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                size = len(data)
                if size > self.max_size or (
                    size * 4 > self.max_size and _utf8_over(data, self.max_size)
                ):
                    # The native runtime's reason (ws/_frames.py), word for word.
                    self.close(CloseCode.MESSAGE_TOO_BIG, f"message over {self.max_size} bytes")
                    await self.flush()
                    continue
                if actor.busy:
                    await self._wait_idle()  # a drain handler runs in the writer task
                self.in_dispatch = True
                rest = actor.start_message(data)
                if rest is not None:
                    await rest
                self.in_dispatch = False
                await self._after_handler()
            elif kind == "websocket.disconnect":
                self.peer_close = (message.get("code", NO_STATUS), message.get("reason") or "")
                return

    async def _after_handler(self) -> None:
        """What follows every handler: a ``drain`` due meanwhile, the writes,
        and a pause for the rest of the process after many pub/sub deliveries."""
        if self.drain_due:
            self.drain_due = False
            self.in_dispatch = True
            await self.actor.drain()
            self.in_dispatch = False
        if self.outbox or self._close_due():
            await self.flush()
        if self.pubsub.work >= WORK_BUDGET:
            await self.pubsub.pause()

    def _left_dispatch(self) -> bool:
        """A coroutine handler suspended: what it queued leaves now (False for
        the mere schedule point of an awaited send, as on the native runtime)."""
        if self.yielding:
            return False
        self.in_dispatch = False
        if self.outbox or self._close_due():
            self._wake_writer()
        return True

    async def _wait_idle(self) -> None:
        while self.actor.busy:
            if self._idle is None:
                self._idle = self.loop.event()
            await self._idle.wait()

    # -- writing ---------------------------------------------------------------

    async def _write_loop(self) -> None:
        """The writer task: writes what was sent from outside a handler."""
        while True:
            await self._wakeup.wait()
            self._wakeup = self.loop.event()
            self._wake_pending = False
            await self.flush()

    def _wake_writer(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            self._wakeup.set()

    async def flush(self) -> None:
        """Hand the outbox to the server, then our close if one is due (one
        writer at a time: a second caller finds ``writing`` and leaves it)."""
        if self.writing or self.broken:
            return
        self.writing = True
        outbox = self.outbox
        send = self.send
        try:
            while outbox:
                message, size = outbox.popleft()
                try:
                    await send(message)
                except Exception:  # the servers raise OSError, RuntimeError, their own
                    self.broken = True
                    outbox.clear()
                    return
                finally:
                    self.buffered -= size
                if self._writable is not None:
                    self._wake_writable()
            if self._close_due():
                await self._send_close()
        finally:
            self.writing = False
            self._wake_drained()
        if self.wants_drain and not outbox and not self.broken:
            self.wants_drain = False
            await self._run_drain()

    async def _send_close(self) -> None:
        assert self.closing is not None
        code, reason = self.closing
        self.close_sent = True
        try:
            await self.send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception as exc:
            await self._close_refused(exc, code, reason)
        # The server finishes the closing handshake itself. A handler still
        # running (it may await ws.close()) gets close_timeout to return;
        # a receive waiting for the next message is ended at once.
        busy = self.actor.busy or self.in_dispatch
        self.cutoff.after(self.close_timeout if busy else 0)

    async def _close_refused(self, exc: Exception, code: int, reason: str) -> None:
        """The server did not take our close. A peer already gone is the usual
        cause; daphne (autobahn) refuses every code but 1000 and 3000-4999 with
        a bare ``Exception``: then 1011 is left to the server itself (it sends
        1011 when the app raises, see ``run``), any other code becomes 1000, so
        the socket is closed either way."""
        if type(exc) is not Exception:
            self.broken = True
        elif code == CloseCode.INTERNAL_ERROR:
            self.close_refused = True
        else:
            try:
                await self.send({"type": "websocket.close", "code": 1000, "reason": reason})
            except Exception:
                self.broken = True

    async def _run_drain(self) -> None:
        if self.actor.busy or self.in_dispatch:
            self.drain_due = True  # the reader runs it after the current handler
            return
        await self.actor.drain()
        if self._idle is not None:
            self._idle.set()
            self._idle = None
        if self.outbox:
            await self.flush()

    def _close_due(self) -> bool:
        return self.closing is not None and not self.close_sent and self.peer_close is None

    def _over_limit(self) -> bool:
        return self.buffered >= self.limit and self.is_open

    def _wake_drained(self) -> None:
        if self._drained is not None and not self.outbox:
            self._drained.set()
            self._drained = None
        self._wake_writable()

    def _wake_writable(self) -> None:
        if self._writable is not None and not self._over_limit():
            self._writable.set()
            self._writable = None

    def _close_status(self) -> tuple[int, str]:
        """(code, reason) for the ``close`` handler: ours if we closed first,
        else the server's report, else 1006 (the connection was lost)."""
        if self.closing is not None:
            return self.closing
        if self.peer_close is not None:
            return self.peer_close
        return CloseCode.ABNORMAL_CLOSURE, ""


def _utf8_over(data: str | bytes, limit: int) -> bool:
    """True for text whose UTF-8 form is over ``limit`` bytes though its length
    in characters is not (asked only when it could be: 4 bytes a character)."""
    return type(data) is str and not data.isascii() and len(data.encode()) > limit
