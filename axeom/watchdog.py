"""A watchdog thread that names a handler holding its process's event loop.

A handler that calls ``time.sleep`` or a blocking database client stops
every socket of its process, and the heartbeats with them; the supervisor
replaces such a worker after ``workers.heartbeat_timeout``. Before that, the
operator must learn *which* handler did it: this thread notices that the
loop missed its beats for ``block_warning`` seconds and logs, once per
episode, the route, the socket id, the handler and the stack of the loop
thread (where the blocking call is), then logs again when the loop runs
again, with how long it was held.

The loop's side costs one attribute store every ``block_warning / 4``
seconds (a periodic task, not a per-message store); which handler runs is
read from the loop thread's stack (``sys._current_frames``) only when a
block is reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .logs import find_handler, format_stack, log_for_socket

__all__ = [
    "BEATS_PER_THRESHOLD",
    "Watchdog",
    "beat_forever_trio",
    "close_hung_sockets",
    "start_beating_asyncio",
    "watchdog_options",
    "watchdog_settings",
]

logger = logging.getLogger("axeom.watchdog")

# The loop beats this many times per threshold: a block is noticed at most a
# quarter of the threshold late, and an idle loop wakes only 4 times per
# threshold for it.
BEATS_PER_THRESHOLD = 4
# Never beat more often than this, whatever the threshold (a tiny threshold
# in a test would otherwise spin the loop).
MIN_BEAT_INTERVAL = 0.01


def watchdog_options(config: Any) -> dict[str, Any]:
    """The keys of a worker's start-up settings that set its watchdog (from a ``Config``)."""
    return {
        "block_warning": config.workers.block_warning,
        "heartbeat_timeout": config.workers.heartbeat_timeout,
        "shutdown_timeout": config.supervisor.shutdown_timeout,
    }


def watchdog_settings(options: dict[str, Any]) -> dict[str, Any]:
    """``block_warning`` and ``hang_after`` for a worker, from its start-up
    settings (``watchdog_options``; a supervisor that predates them passes
    none: no watchdog, as then).

    A held loop gets its sockets closed with 1011 halfway between the
    supervisor's SIGTERM (``heartbeat_timeout`` after the last heartbeat) and
    its SIGKILL (``shutdown_timeout`` later): a handler that returns in the
    first half still lets the worker drain normally (1001, close handlers
    run); the second half leaves room for the supervisor's timing.
    """
    block_warning = options.get("block_warning", 0.0)
    heartbeat_timeout = options.get("heartbeat_timeout")
    shutdown_timeout = options.get("shutdown_timeout")
    hang_after = None
    if isinstance(heartbeat_timeout, int | float) and isinstance(shutdown_timeout, int | float):
        hang_after = heartbeat_timeout + shutdown_timeout / 2
    if not isinstance(block_warning, int | float):
        block_warning = 0.0
    return {"block_warning": float(block_warning), "hang_after": hang_after}


class Watchdog:
    """Watches the loop of the thread that creates it; ``beat()`` from that loop.

    ``on_hang``, if given, is called (from the watchdog thread) once the loop
    has been held ``hang_after`` seconds: the worker's last word before the
    supervisor's SIGKILL (see ``axeom_workers``).
    """

    def __init__(
        self,
        threshold: float,
        *,
        hang_after: float | None = None,
        on_hang: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.interval = max(threshold / BEATS_PER_THRESHOLD, MIN_BEAT_INTERVAL)
        self.hang_after = hang_after
        self.on_hang = on_hang
        self.clock = clock
        self.last = clock()
        self.episodes = 0  # blocks reported so far
        self._loop_thread = threading.get_ident()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """The loop ran: called by a periodic task of the loop."""
        self.last = self.clock()

    def start(self) -> None:
        """Start watching (again: no-op); the beat task calls it as it starts,
        so that time spent before serving (``on_start``) is not a block."""
        if self._thread is not None:
            return
        self.last = self.clock()
        self._thread = threading.Thread(target=self._run, name="axeom-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        blocked_since: float | None = None
        hung = False
        while not self._stopped.wait(self.interval):
            last, now = self.last, self.clock()
            if blocked_since is None:
                if now - last >= self.threshold:
                    blocked_since = last
                    self.episodes += 1
                    self._report_block(now - last)
            elif last != blocked_since:
                logger.warning(
                    "event loop ran again after being held for about %.1fs", last - blocked_since
                )
                blocked_since, hung = None, False
            elif not hung and self.hang_after is not None and now - last >= self.hang_after:
                hung = True
                if self.on_hang is not None:
                    self.on_hang()

    def _report_block(self, held: float) -> None:
        """One warning: the handler, its socket and route, the loop thread's stack."""
        frame = sys._current_frames().get(self._loop_thread)
        found = find_handler(frame)
        if found is None:
            stack = format_stack(frame).rstrip()
            logger.warning(
                "event loop held for %.1fs (not by a socket handler); its stack:\n%s",
                held,
                stack,
            )
            return
        below, actor, name = found
        stack = format_stack(frame, below).rstrip()  # from the handler's call down
        ws = actor.ws
        handler = getattr(actor.handlers, name, None)
        log_for_socket(
            logger,
            logging.WARNING,
            ws,
            "event loop held for %.1fs by the %s handler %s of socket %s (route %s); "
            "a blocking call belongs in trio.to_thread.run_sync / asyncio.to_thread. "
            "Its stack:\n%s",
            held,
            name,
            _describe(handler),
            ws.id,
            ws.route,
            stack,
        )


def _describe(handler: Any) -> str:
    """``module.qualname`` of a handler function, or its repr."""
    qualname = getattr(handler, "__qualname__", None)
    module = getattr(handler, "__module__", None)
    if qualname is None:
        return repr(handler)
    return f"{module}.{qualname}" if module else qualname


async def beat_forever_trio(watchdog: Watchdog) -> None:
    """The loop's side on trio (and on a trio guest of asyncio: it runs only
    when the host loop does): beat every ``watchdog.interval``."""
    import trio

    watchdog.start()
    while True:
        watchdog.beat()
        await trio.sleep(watchdog.interval)


def start_beating_asyncio(watchdog: Watchdog, loop: Any) -> None:
    """The loop's side on an asyncio or uvloop ``loop``: a timer callback
    that beats and re-arms itself (not a task: a loop closed under it drops
    a pending timer silently, where a pending task would be reported)."""

    def beat() -> None:
        watchdog.beat()
        loop.call_later(watchdog.interval, beat)

    watchdog.start()
    beat()


# The close frame a hung process writes to its sockets: 1011 (internal
# error), unmasked as a server's frames are. RFC 6455 section 7.4.1.
HUNG_CLOSE_REASON = b"server hung"
HUNG_CLOSE_FRAME = (
    bytes([0x88, 2 + len(HUNG_CLOSE_REASON)]) + (1011).to_bytes(2, "big") + HUNG_CLOSE_REASON
)
# What a hung socket's unread input is drained of before the process exits:
# closing with unread input sends a reset, which may destroy the close frame
# before the client reads it.
HUNG_DRAIN = 65536


def close_hung_sockets(connections: Any) -> tuple[int, int]:
    """Write a 1011 close frame to each open socket of ``connections`` whose
    output stands at a frame boundary, from the watchdog thread of a process
    whose loop is held and about to be killed; ``(closed, skipped)``.

    Only a socket whose every byte handed to the kernel so far was a whole
    frame may get one: a write the kernel took only in part (trio's
    ``pending``, asyncio's transport buffer) would have the close frame land
    inside a frame, which the client would read as garbage. TLS sockets are
    skipped too (a raw write would break the TLS stream). The loop thread is
    held by a handler all along, so it writes nothing meanwhile; the process
    exits right after, so nothing it might write later reaches the client.
    """
    closed = skipped = 0
    for conn in list(connections):
        sock = _raw_socket(conn)
        if sock is None or not getattr(conn, "is_open", False):
            continue
        if not _at_frame_boundary(conn):
            skipped += 1
        elif _write_close(sock.fileno()):
            closed += 1
    return closed, skipped


def _write_close(fd: int) -> bool:
    """Write the 1011 close frame to ``fd``, end our side, drain its input;
    True if the whole frame went out. On a duplicate of the descriptor, so
    that whichever socket object the runtime holds is left as it was."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    with sock:
        sock.setblocking(False)
        try:
            whole = sock.send(HUNG_CLOSE_FRAME) == len(HUNG_CLOSE_FRAME)
            sock.shutdown(socket.SHUT_WR if whole else socket.SHUT_RDWR)
        except OSError:
            return False
        with contextlib.suppress(OSError):  # would block once drained
            while sock.recv(HUNG_DRAIN):
                pass
    return whole


def _raw_socket(conn: Any) -> Any:
    """The plain TCP socket under a connection of either runtime, or None."""
    import ssl

    transport: Any = getattr(conn, "transport", None)
    sock = getattr(transport, "sock", None)  # trio's SocketTransport
    if sock is None and transport is not None and hasattr(transport, "get_extra_info"):
        sock = transport.get_extra_info("socket")  # asyncio
    if sock is None or isinstance(sock, ssl.SSLSocket):
        return None
    asyncio_tls = hasattr(transport, "get_extra_info") and transport.get_extra_info("sslcontext")
    return None if asyncio_tls else sock


def _at_frame_boundary(conn: Any) -> bool:
    """No frame is partly written: nothing held back after a short write."""
    if getattr(conn, "writing", False) or getattr(conn, "pending", None) is not None:
        return False
    transport = getattr(conn, "transport", None)
    size = getattr(transport, "get_write_buffer_size", None)
    return size is None or size() == 0
