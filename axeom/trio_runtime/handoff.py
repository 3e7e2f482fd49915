"""Moving an accepted WebSocket to a worker: the TCP descriptor and one datagram.

The descriptor travels with SCM_RIGHTS over a Unix SOCK_SEQPACKET socket,
in the same datagram as what describes the upgrade, so the two can never be
paired wrongly. That datagram's format (and the answers') is in
``axeom.wire``; this module moves datagrams. The description names the
route by its pattern (not by position), so a worker running a newer version
of the app during a rolling reload refuses a route it does not have instead
of running the wrong handlers. Bytes the acceptor read past the request head
travel too: a client may send its first frame in the same TCP segment as
the head.

The 101 is not written yet when a socket is handed off: its bytes travel in
the datagram and the worker writes them once it holds the descriptor. Each
hand-off carries a sequence number, and the worker answers every one on the
same channel (it is bidirectional): ``TAKEN`` (the acceptor closes its
copy), or a refusal, such as ``NO_DESCRIPTOR`` when the worker is out of
file descriptors and the kernel dropped the passed one (MSG_CTRUNC).
The acceptor keeps its copy until the answer, so a refused socket can go to
another worker or get a 503: a client never gets a 101 that leads nowhere.
A worker sends TAKEN *before* it writes the 101, so a channel that ends
without an answer means no 101 was written.

Hand-offs come in bursts, so a worker takes every datagram already queued
in one wake (up to ``MAX_BATCH``) and answers them all in one reply
datagram: a run of (sequence number, outcome) pairs. That is one syscall
and one wake-up of the acceptor per burst rather than per socket.

When the app has connection limits (``axeom.security``), the acceptor
counts a socket open until the worker says it ended: the worker sends
(sequence number, ``CLOSED``) pairs on the same channel, batched the same
way (``axeom_workers`` gathers them per channel).
"""

from __future__ import annotations

import array
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .. import wire
from ..ws._route import WSRoute

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = [
    "MAX_BATCH",
    "HandoffError",
    "Received",
    "receive_replies",
    "receive_socket",
    "receive_sockets",
    "send_replies",
    "send_reply",
    "send_socket",
    "tune",
    "ws_routes",
]

logger = logging.getLogger("axeom.handoff")

SOCKET_BUFFER = 4 << 20

# Hand-offs a worker takes in one wake, hence answers in one reply datagram
# (64 x 9 bytes): enough to absorb a burst, small enough that the first
# socket of a burst is not held back long for the last.
MAX_BATCH = 64
_MAX_REPLIES = wire.replies_size(MAX_BATCH)


class HandoffError(Exception):
    """A hand-off that cannot be completed (the other end is gone)."""


@dataclass(slots=True)
class Received:
    """One hand-off as a worker receives it; ``fd`` is None when no
    descriptor arrived (the kernel could not install it: out of descriptors).
    ``head`` is the 101 (None if cut short), whatever the ``version``;
    ``wire.decode_handoff`` reads the ``body`` when the version is ours."""

    seq: int
    fd: int | None
    version: int
    head: bytes | None
    body: bytes


def ws_routes(app: Axeom) -> dict[str, WSRoute]:
    """The app's WebSocket routes by pattern (what a hand-off refers to)."""
    return {pattern: ep for _, pattern, ep in app.routes if isinstance(ep, WSRoute)}


def tune(channel: socket.socket) -> None:
    """Room for large blobs and bursts of hand-offs."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            channel.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


async def _send(
    channel: socket.socket, data: bytes, ancillary: list[tuple[int, int, bytes]]
) -> None:
    while True:
        try:
            channel.sendmsg([data], ancillary)
            return
        except BlockingIOError:
            try:
                await trio.lowlevel.wait_writable(channel)
            except trio.ClosedResourceError:
                raise HandoffError("channel closed") from None
        except OSError as exc:
            raise HandoffError(f"channel failed: {exc}") from None


async def send_socket(channel: socket.socket, fd: int, seq: int, blob: bytes) -> None:
    """Send ``fd`` and ``blob`` (``wire.encode_handoff``) as one datagram,
    numbered ``seq``; raises ``HandoffError`` if the worker end is gone."""
    fds = array.array("i", [fd])
    await _send(
        channel,
        wire.handoff_prefix(seq) + blob,
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())],
    )


# One receive buffer for the whole process, big enough for the largest
# datagram (so that none is truncated), allocated on first use: allocating
# it per datagram costs an mmap and munmap each time. Sharing it is safe
# because each datagram is copied out before the next await.
_buffer: bytearray | None = None


def _receive_buffer() -> bytearray:
    global _buffer
    if _buffer is None:
        _buffer = bytearray(wire.HANDOFF_PREFIX_SIZE + wire.MAX_HANDOFF)
    return _buffer


_FD_SIZE = array.array("i").itemsize
_ANCILLARY_SPACE = socket.CMSG_SPACE(_FD_SIZE)  # room for exactly one descriptor


# A datagram that is no hand-off of any version (too short, no magic): there
# is nothing to answer it with, so it is skipped (its descriptor closed).
_NOT_A_HANDOFF = Received(-1, None, 0, None, b"")
# What was logged already: a peer that sends one unusable datagram sends many.
_logged: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        logger.error("%s", message)


def _receive_one(channel: socket.socket) -> Received | None:
    """The next datagram without waiting (``BlockingIOError`` if none is
    queued), or None if it ends the channel (or the channel failed)."""
    buffer = _receive_buffer()
    try:
        size, ancdata, flags, _ = channel.recvmsg_into([buffer], _ANCILLARY_SPACE)
    except BlockingIOError:
        raise  # nothing queued: the caller waits
    except OSError:
        return None
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % _FD_SIZE)])
    if not size and not fds:
        return None
    frame = wire.read_handoff(buffer, size)
    if frame is None or len(fds) > 1 or flags & socket.MSG_TRUNC:
        for extra in fds:
            socket.close(extra)
        if frame is None:
            _log_once(
                "a datagram on a hand-off channel is not a hand-off of any wire version "
                "(an acceptor from before wire version 1?): its socket is closed unanswered"
            )
            return _NOT_A_HANDOFF
        fds = array.array("i")
    version, seq, head, body = frame
    return Received(seq, fds[0] if fds else None, version, head, body)


async def receive_sockets(channel: socket.socket) -> list[Received] | None:
    """The hand-offs queued on ``channel`` (at least one, at most
    ``MAX_BATCH``; waits for the first), or None once the sending end is
    closed and nothing more is queued.

    A datagram whose descriptor did not arrive (MSG_CTRUNC: this process is
    out of descriptors) is returned with ``fd=None``, so that it can be
    refused; extra descriptors are closed, datagrams that are no hand-off
    of any wire version are skipped.
    """
    batch: list[Received] = []
    while len(batch) < MAX_BATCH:
        try:
            received = _receive_one(channel)
        except BlockingIOError:
            if batch:
                break
            await trio.lowlevel.wait_readable(channel)
            continue
        if received is None:
            break  # what was read before the end is still answered
        if received is not _NOT_A_HANDOFF:
            batch.append(received)
    return batch or None


async def receive_socket(channel: socket.socket) -> Received | None:
    """The next hand-off, or None once the sending end is closed (one at a
    time: for tests and tools; a worker uses ``receive_sockets``)."""
    while True:
        try:
            received = _receive_one(channel)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(channel)
            continue
        if received is not _NOT_A_HANDOFF:
            return received


async def send_replies(channel: socket.socket, replies: list[tuple[int, int]]) -> None:
    """A worker's answers to hand-offs, as (seq, outcome) pairs in one
    datagram (at most ``MAX_BATCH``); raises ``HandoffError`` if the
    acceptor's end is gone."""
    assert 0 < len(replies) <= MAX_BATCH
    await _send(channel, wire.encode_replies(replies), [])


async def send_reply(channel: socket.socket, seq: int, outcome: int) -> None:
    """One answer, in a datagram of its own."""
    await send_replies(channel, [(seq, outcome)])


async def receive_replies(channel: socket.socket) -> wire.Replies | None:
    """The answers of the next answer datagram from a worker (of any wire
    version: see ``axeom.wire``), or None once its end is closed. A datagram
    that is no answer at all is skipped (its hand-offs time out)."""
    while True:
        try:
            data = channel.recv(_MAX_REPLIES)
        except BlockingIOError:
            try:
                await trio.lowlevel.wait_readable(channel)
            except (trio.ClosedResourceError, OSError):
                return None
            continue
        except OSError:
            return None
        if not data:
            return None
        try:
            replies = wire.decode_replies(data)
        except wire.WireError as exc:
            _log_once(f"unusable hand-off answers skipped (their sockets time out): {exc}")
            continue
        if replies.pairs:
            return replies
