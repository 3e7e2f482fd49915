"""The ``ws`` object handlers receive: one per socket, whatever the adapter."""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

from websockets.frames import EXTERNAL_CLOSE_CODES, CloseCode

from .._call import not_awaited
from .._headers import Headers
from .._messages import to_message
from ..pubsub import UNSUBSCRIBED, Published, Subscribed, Unsubscribed
from ..schema._encode import json_encoders

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = [
    "Closing",
    "Connection",
    "SendResult",
    "SendStatus",
    "WebSocket",
    "new_socket_id",
    "socket_id_prefix",
]


class SendStatus(enum.Enum):
    """What ``ws.send`` did with a message.

    QUEUED: queued; it leaves with the next write.
    BACKPRESSURE: queued, but the outbox is now over ``backpressure_limit``;
        further sends are dropped until ``drain`` runs.
    DROPPED: not queued, the outbox was already over the limit.
    CLOSED: not queued, the socket is closing or closed.
    """

    QUEUED = "queued"
    BACKPRESSURE = "backpressure"
    DROPPED = "dropped"
    CLOSED = "closed"

    def __bool__(self) -> bool:
        return self is SendStatus.QUEUED or self is SendStatus.BACKPRESSURE


_QUEUED = SendStatus.QUEUED


@not_awaited
class SendResult:
    """What ``ws.send`` returns: its ``SendStatus``, which can also be awaited.

    Without ``await`` it is the status: ``==`` to a ``SendStatus`` member (and hashes
    like it), truthy when the message was queued, with the member's ``name`` and
    ``value``; ``.status`` is the member itself (for ``is``). ``await ws.send(x)``
    is flow control, as in the websockets library: it returns the status once the
    socket's outbox is back under ``backpressure_limit`` (at once when it is), so a
    loop of awaited sends never drops and never outruns a slow reader.

    Each socket keeps one instance per status, made on first use, so ``ws.send``
    allocates nothing per call.
    """

    __slots__ = ("_ok", "_ws", "status")

    def __init__(self, ws: WebSocket, status: SendStatus) -> None:
        self._ws = ws
        self._ok = bool(status)
        self.status = status

    def __await__(self) -> Generator[Any, Any, SendStatus]:
        yield from self._ws._conn.wait_writable().__await__()
        return self.status

    def __bool__(self) -> bool:
        return self._ok

    def __eq__(self, other: object) -> bool:
        if type(other) is SendResult:
            return other.status is self.status
        if type(other) is SendStatus:
            return other is self.status
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.status)

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def value(self) -> str:
        return str(self.status.value)

    def __repr__(self) -> str:
        return repr(self.status)


@not_awaited
class Closing:
    """What ``ws.close`` returns: ``await`` it to wait until the close frame is written.

    Written, not acknowledged: inside a handler the peer's close frame is only read
    after the handler returns (one message at a time), so waiting for it there could
    only time out. The ``close`` handler runs when the closing handshake ends.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __await__(self) -> Generator[Any, Any, None]:
        return self._conn.wait_drained().__await__()


class Connection(Protocol):
    """What an adapter provides under a ``WebSocket`` (frames, writes, timers)."""

    def send_message(self, data: str | bytes) -> SendStatus: ...

    def send_text(self, payload: bytes) -> SendStatus:
        """Send a text message already encoded as UTF-8 (valid: ``ws.send``'s
        encoder made it), so that it need not become a ``str`` first."""
        ...

    def close(self, code: int, reason: str) -> None: ...

    async def wait_drained(self) -> None: ...

    async def wait_writable(self) -> None:
        """Return once the outbox is under ``backpressure_limit`` or the socket is
        closing. Under the limit an adapter may return without a task switch, but
        a loop of awaited sends must still let the rest of the process run now and
        then (the trio one: a cancellation point always, a checkpoint once per
        turn of the socket)."""
        ...

    @property
    def buffered_amount(self) -> int: ...

    @property
    def is_open(self) -> bool: ...


_process_prefix = os.urandom(6).hex()
_counter = itertools.count(1)


def new_socket_id() -> str:
    """An id unique across processes and nodes: a random per-process prefix
    (48 bits) and a counter. The prefix tells the hub which worker has it."""
    return f"{_process_prefix}-{next(_counter):x}"


def socket_id_prefix() -> str:
    """The prefix of every socket id this process issues."""
    return _process_prefix


class WebSocket:
    """One connected socket, as its handlers see it.

    ``send`` never blocks: it queues a frame and everything queued while a
    handler runs leaves in one write. ``data`` is this socket's private
    state, seeded by ``derive`` at handshake time. Values given to
    ``app.decorate`` are readable as attributes (``ws.db``).
    """

    __slots__ = (
        "_conn",
        "_on_end",
        "_publish_to_self",
        "_queued",
        "_results",
        "_send_check",
        "_topics",
        "app",
        "data",
        "headers",
        "id",
        "params",
        "path",
        "query",
        "remote_address",
        "route",
        "subprotocol",
    )

    def __init__(
        self,
        conn: Connection,
        *,
        app: Axeom | None,
        route: str,
        path: str,
        params: dict[str, str],
        query: dict[str, str],
        headers: Headers,
        data: dict[str, Any],
        subprotocol: str | None,
        remote_address: tuple[str, int] | None,
        socket_id: str | None = None,
        publish_to_self: bool = False,
    ) -> None:
        self._conn = conn
        # Called once when the socket ends (set by the server that counts it open).
        self._on_end: Callable[[], object] | None = None
        self._queued: SendResult | None = None  # made on first use (memory)
        self._results: dict[str, SendResult] | None = None  # the other statuses, likewise
        self._topics: set[str] | None = None  # created on first subscribe (memory)
        self._publish_to_self = publish_to_self
        # The route's ``send`` type check, in debug mode only (websocket_for).
        self._send_check: Callable[[Any], None] | None = None
        self.app = app
        self.id = socket_id or new_socket_id()
        self.route = route
        self.path = path
        self.params = params
        self.query = query
        self.headers = headers
        self.data = data
        self.subprotocol = subprotocol
        self.remote_address = remote_address

    def send(self, data: Any) -> SendResult:
        """Queue a message: ``str`` as a text frame, bytes-like as binary, a
        dict or list, a pydantic model, a msgspec Struct or a dataclass as JSON
        text. Returns at once with what happened (a ``SendStatus``);
        ``await ws.send(data)`` also waits until the outbox is back under
        ``backpressure_limit`` (see ``SendResult``). In debug mode an object
        is checked against the route's ``send`` type (``TypeError``)."""
        if type(data) is str or type(data) is bytes:  # the hot path: no conversion
            status = self._conn.send_message(data)
        else:
            if self._send_check is not None:
                self._send_check(data)
            to_json = json_encoders.get(type(data))
            if to_json is not None:  # a model, Struct or dataclass type sent before
                status = self._conn.send_text(to_json(data))  # its UTF-8 as it is
            else:
                status = self._conn.send_message(to_message(data))
        if status is _QUEUED:
            result = self._queued
            if result is None:
                result = self._queued = SendResult(self, status)
            return result
        return self._result(status)

    def _result(self, status: SendStatus) -> SendResult:
        """The cached result of a status other than QUEUED (keyed by the member's
        value: a str hash is cached, an Enum's is a Python call)."""
        results = self._results
        if results is None:
            results = self._results = {}
        result = results.get(status._value_)
        if result is None:
            result = results[status._value_] = SendResult(self, status)
        return result

    # -- pub/sub ---------------------------------------------------------------

    def subscribe(self, topic: str) -> Subscribed:
        """Receive what is published to ``topic`` (from any worker or node).

        Takes effect at once in this process and a moment later in the others;
        ``await ws.subscribe(topic)`` returns once it is in effect for
        publishes from every worker (and every node, with Redis)."""
        if not self._conn.is_open:
            return Subscribed(None)
        if self._topics is None:
            self._topics = set()
        self._topics.add(topic)
        pubsub = self._pubsub()
        pubsub.subscribe(self, topic)
        return Subscribed(pubsub)

    def unsubscribe(self, topic: str) -> Unsubscribed:
        """Stop receiving ``topic``, at once; the result may be awaited (it returns
        at once), like ``ws.subscribe``'s."""
        if self._topics is not None and topic in self._topics:
            self._topics.discard(topic)
            self._pubsub().unsubscribe(self, topic)
        return UNSUBSCRIBED

    def is_subscribed(self, topic: str) -> bool:
        return self._topics is not None and topic in self._topics

    @property
    def subscriptions(self) -> frozenset[str]:
        return frozenset(self._topics or ())

    def publish(self, topic: str, data: str | bytes | dict[str, Any] | list[Any]) -> Published:
        """Publish to ``topic``; this socket gets it only if its route sets
        ``publish_to_self=True``. Returns how many local sockets got it;
        ``await ws.publish(...)`` also waits while the link to the other
        workers is congested (flow control)."""
        sender = None if self._publish_to_self else self
        return self._pubsub().publish(topic, to_message(data), sender)

    def _pubsub(self) -> Any:
        if self.app is None:
            raise RuntimeError("pub/sub needs the socket to belong to an app")
        return self.app.pubsub

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> Closing:
        """Start the closing handshake; ``close`` handler runs when it ends.

        Returns at once; ``await ws.close()`` also waits until the close frame
        has been written (see ``Closing``)."""
        _check_close(code, reason)
        self._conn.close(code, reason)
        return Closing(self._conn)

    async def drained(self) -> None:
        """Wait until everything queued so far has been written to the socket."""
        await self._conn.wait_drained()

    @property
    def buffered_amount(self) -> int:
        """Bytes queued and not yet written, exactly as they go on the wire:
        frame headers included, and with compression the compressed frames."""
        return self._conn.buffered_amount

    @property
    def is_open(self) -> bool:
        """True until a close frame was sent or received."""
        return self._conn.is_open

    def __getattr__(self, name: str) -> Any:
        app = object.__getattribute__(self, "app")
        if app is not None and name in app.decorations:
            return app.decorations[name]
        raise AttributeError(f"WebSocket has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<WebSocket {self.id} {self.path}>"


# What a server may put in a close frame: the registered codes meant for the
# wire (RFC 6455 section 7.4; 1010 is the client's alone), and the ranges for
# libraries (3000-3999) and applications (4000-4999).
SENDABLE_CLOSE_CODES = EXTERNAL_CLOSE_CODES - {CloseCode.MANDATORY_EXTENSION}


# RFC 6455 section 7.4.2: 3000-3999 for libraries and frameworks, 4000-4999 private.
FIRST_REGISTERED_CODE, LAST_PRIVATE_CODE = 3000, 4999
# A control frame carries at most 125 bytes (section 5.5): 2 for the code, the rest reason.
MAX_CLOSE_REASON = 123


def _check_close(code: int, reason: str) -> None:
    if not (code in SENDABLE_CLOSE_CODES or FIRST_REGISTERED_CODE <= code <= LAST_PRIVATE_CODE):
        raise ValueError(
            f"close code {code} cannot be sent: use 1000-1003, 1007-1009, 1011-1014 or 3000-4999"
        )
    if len(reason.encode()) > MAX_CLOSE_REASON:
        raise ValueError(f"close reason must be at most {MAX_CLOSE_REASON} bytes of UTF-8")
