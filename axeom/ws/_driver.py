"""What every socket runtime does the same way, whatever its event loop:
dispatching received messages to the handlers, the timers of a socket,
and the frame layer a socket starts with.

Loop-agnostic (no await here): the trio runtime (``axeom.trio_runtime``) and
the asyncio runtime (``axeom.asyncio_runtime``) mix ``SocketDriver`` into
their connection classes, so ordering, one message at a time, the pub/sub
work budget and keepalive behave identically on both; only reading,
writing and waking tasks differ per loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode

from ..pubsub import WORK_BUDGET
from ._deflate import rebuild
from ._frames import FrameConnection
from ._socket import SendStatus, WebSocket
from ._tally import TALLY

if TYPE_CHECKING:
    from .._app import Axeom
    from ._actor import Actor
    from ._options import WSOptions
    from ._socket import Connection
    from ._upgrade import Upgrade

__all__ = ["MAX_TICK", "SocketDriver", "clock", "frames_for", "sweep_tick", "websocket_for"]

clock = time.perf_counter  # the time budget of a dispatch (cheaper than a loop's clock)


def frames_for(upgrade: Upgrade) -> FrameConnection:
    """The frame layer of one socket, with the compression its client negotiated."""
    options = upgrade.route.options
    # An empty offer (bare "permessage-deflate") is an offer: test for None.
    offer = upgrade.deflate_offer
    extensions = None if offer is None else [rebuild(offer)]
    return FrameConnection(
        max_message_size=options.max_message_size,
        backpressure_limit=options.backpressure_limit,
        extensions=extensions,
    )


def websocket_for(
    conn: Connection,
    app: Axeom | None,
    upgrade: Upgrade,
    *,
    path_prefix: str = "",
    socket_id: str | None = None,
) -> WebSocket:
    """The ``ws`` handlers get for one upgraded socket, talking to ``conn``:
    what the handshake decided, the same on every runtime (``path_prefix``:
    an ASGI mount's, kept in ``ws.path``)."""
    route = upgrade.route
    typing = route.typing
    query, params, headers = upgrade.query, upgrade.params, upgrade.headers
    if typing.handshake:
        query, params, headers = upgrade.typed or typing.revalidate(upgrade)
    ws = WebSocket(
        conn,
        app=app,
        route=route.pattern,
        path=path_prefix + upgrade.path,
        params=params,
        query=query,
        headers=headers,
        data=upgrade.data,
        subprotocol=upgrade.subprotocol,
        remote_address=upgrade.remote_address,
        socket_id=socket_id,
        publish_to_self=route.options.publish_to_self,
    )
    if typing.send is not None and app is not None and app.debug:
        ws._send_check = typing.send_check()
    ws._on_end = upgrade.on_end
    return ws


# The sweeper's tick: a quarter of the shortest timer in use, kept within
# these bounds (ticks under 10 ms cost more than they buy; an idle process
# still looks once a second).
MIN_TICK, MAX_TICK = 0.01, 1.0


def sweep_tick(options: WSOptions) -> float:
    """How often the process's sweeper must look for these options' timers."""
    timers = [
        t
        for t in (
            options.idle_timeout,
            options.ping_interval,
            options.ping_timeout,
            options.close_timeout,
        )
        if t is not None
    ]
    return min(max(min(timers, default=math.inf) / 4, MIN_TICK), MAX_TICK)


class SocketDriver:
    """Mixin: the per-socket semantics every runtime's connection shares.

    The class it is mixed into provides the attributes below (set in its
    ``__init__``), ``close(code, reason)``, ``_break()`` (end the socket at
    once: the peer is gone or the close timed out) and a ``runtime`` with
    ``pubsub`` and ``schedule_flush(conn)``. The slots below are its
    state; the class mixing this in declares only its own.
    """

    __slots__ = (
        "active",
        "actor",
        "backlog",
        "close_started_at",
        "flush_scheduled",
        "frames",
        "in_dispatch",
        "last_activity",
        "options",
        "ping_sent_at",
        "runtime",
    )

    actor: Actor
    backlog: list[str | bytes]
    frames: FrameConnection
    options: WSOptions
    runtime: Any
    in_dispatch: bool
    flush_scheduled: bool
    active: bool
    last_activity: float
    ping_sent_at: float | None
    close_started_at: float | None
    broken: bool  # the peer is gone (a slot of the class mixing this in)

    # Each runtime's connection class defines these two: start the closing
    # handshake, and drop the TCP connection at once.
    close: Callable[[int, str], object]
    _break: Callable[[], None]

    # -- Connection protocol: what ws.send calls ------------------------------

    def send_message(self, data: str | bytes) -> SendStatus:
        if self.broken:  # the peer is gone (1006): nothing queued now would ever leave
            return SendStatus.CLOSED
        status = self.frames.send(data)
        if status and not self.in_dispatch and not self.flush_scheduled:
            self.flush_scheduled = True
            self.runtime.schedule_flush(self)
        return status

    def send_text(self, payload: bytes) -> SendStatus:
        """``send_message`` of a text message already encoded as UTF-8."""
        if self.broken:
            return SendStatus.CLOSED
        status = self.frames.send_text(payload)
        if status and not self.in_dispatch and not self.flush_scheduled:
            self.flush_scheduled = True
            self.runtime.schedule_flush(self)
        return status

    def dispatch(self, deadline: float = math.inf) -> Awaitable[None] | None:
        """Run the handlers of ``backlog`` in arrival order, inline, as far as
        they go without waiting; what every driver of a socket calls.

        Returns the rest of a coroutine handler, which the caller's task must
        await before anything else of this socket (the messages after it stay
        in ``backlog``). Returns None when the backlog is done or must wait,
        left non-empty: a handler of this socket still runs elsewhere
        (``actor.busy``), or, after a message, pub/sub deliveries passed
        ``WORK_BUDGET`` or the clock passed ``deadline`` (let the process run).
        """
        actor = self.actor
        if actor.busy:
            return None
        messages = self.backlog
        frames = self.frames
        pubsub = self.runtime.pubsub
        self.in_dispatch = True
        done = 0
        for message in messages:
            done += 1
            if frames.close_started:
                done = len(messages)
                break
            rest = actor.start_message(message)
            if rest is not None:
                del messages[:done]
                TALLY.messages_in += done
                return rest  # still in dispatch: the rest is this handler's
            if (pubsub is not None and pubsub.work >= WORK_BUDGET) or clock() >= deadline:
                break
        del messages[:done]
        TALLY.messages_in += done
        self.in_dispatch = False
        return None

    def sweep(self, now: float) -> None:
        """Idle timeout, keepalive ping and close timeout, checked once per
        tick of the runtime's sweeper (``now`` on the runtime's clock)."""
        options = self.options
        frames = self.frames
        if self.active:
            self.active = False
            self.last_activity = now
        if frames.pong_seen:
            frames.pong_seen = False
            self.ping_sent_at = None
        if frames.close_started or frames.eof:
            if self.close_started_at is None:
                self.close_started_at = now
            elif now - self.close_started_at >= options.close_timeout:
                self._break()
            return
        idle = now - self.last_activity
        if options.idle_timeout is not None and idle >= options.idle_timeout:
            self.close(CloseCode.GOING_AWAY, "idle timeout")
        elif self.ping_sent_at is not None:
            if now - self.ping_sent_at >= options.ping_timeout:
                self.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif options.ping_interval is not None and idle >= options.ping_interval:
            self.ping_sent_at = now
            frames.ping()
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self.runtime.schedule_flush(self)
