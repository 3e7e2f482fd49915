"""Moving an accepted WebSocket to a worker: the TCP descriptor and one blob.

The descriptor travels with SCM_RIGHTS over a Unix SOCK_SEQPACKET socket,
in the same datagram as a msgpack blob describing the upgrade, so the two
can never be paired wrongly. The blob names the route by its pattern (not
by position), so a worker running a newer version of the app during a
rolling reload refuses a route it does not have instead of running the
wrong handlers. Bytes the acceptor read past the request head travel too:
a client may send its first frame in the same TCP segment as the head.

The 101 is not written yet when a socket is handed off: its bytes travel in
the blob and the worker writes them once it holds the descriptor. Each
hand-off carries a sequence number, and the worker answers every one on the
same channel (it is bidirectional) with a ``Reply``: ``TAKEN`` (the acceptor
closes its copy), or a refusal, such as ``NO_DESCRIPTOR`` when the worker is
out of file descriptors and the kernel dropped the passed one (MSG_CTRUNC).
The acceptor keeps its copy until the answer, so a refused socket can go to
another worker or get a 503: a client never gets a 101 that leads nowhere.
A worker sends TAKEN *before* it writes the 101, so a channel that ends
without an answer means no 101 was written.

Hand-offs come in bursts, so a worker takes every datagram already queued
in one wake (up to ``MAX_BATCH``) and answers them all in one reply
datagram: a run of (sequence number, outcome) pairs. That is one syscall
and one wake-up of the acceptor per burst rather than per socket.
"""

from __future__ import annotations

import array
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack
import trio

from .._headers import Headers
from ..ws._route import WSRoute
from ..ws._upgrade import Upgrade

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = [
    "NO_DESCRIPTOR",
    "REFUSED",
    "TAKEN",
    "HandedOff",
    "HandoffError",
    "Received",
    "decode",
    "decode_replies",
    "encode",
    "receive_replies",
    "receive_socket",
    "receive_sockets",
    "send_replies",
    "send_reply",
    "send_socket",
]

MAX_BLOB = 1 << 20
SOCKET_BUFFER = 4 << 20

_SEQ = struct.Struct("!Q")  # precedes every blob: the hand-off's sequence number
_REPLY = struct.Struct("!QB")  # a worker's answer: sequence number, outcome
# Hand-offs a worker takes in one wake, hence answers in one reply datagram
# (64 x 9 bytes): enough to absorb a burst, small enough that the first
# socket of a burst is not held back long for the last.
MAX_BATCH = 64

TAKEN = 0  # the worker holds the socket and writes the 101
NO_DESCRIPTOR = 1  # the worker is out of descriptors: the kernel dropped the passed one
REFUSED = 2  # the worker will not run it (draining, unknown route, unusable blob)


class HandoffError(Exception):
    """A hand-off that cannot be completed (worker gone, blob unusable)."""


@dataclass(slots=True)
class HandedOff:
    upgrade: Upgrade
    trailing: bytes
    socket_id: str
    response_head: bytes  # the 101 to write before anything else


@dataclass(slots=True)
class Received:
    """One hand-off as a worker receives it; ``fd`` is None when no
    descriptor arrived (the kernel could not install it: out of descriptors)."""

    seq: int
    fd: int | None
    blob: bytes


def encode(upgrade: Upgrade, trailing: bytes, socket_id: str, response_head: bytes = b"") -> bytes:
    blob = msgpack.packb(
        [
            upgrade.route.pattern,
            upgrade.path,
            upgrade.params,
            upgrade.query,
            upgrade.headers.items_list(),
            upgrade.data,
            upgrade.subprotocol,
            upgrade.extensions,
            upgrade.deflate_offer,
            list(upgrade.remote_address) if upgrade.remote_address else None,
            trailing,
            socket_id,
            response_head,
        ]
    )
    if len(blob) > MAX_BLOB:
        raise HandoffError(
            f"hand-off blob of {len(blob)} bytes exceeds {MAX_BLOB} (ws.data too big)"
        )
    return blob


def ws_routes(app: Axeom) -> dict[str, WSRoute]:
    """The app's WebSocket routes by pattern (what a blob refers to)."""
    return {pattern: ep for _, pattern, ep in app.routes if isinstance(ep, WSRoute)}


def decode(routes: dict[str, WSRoute], blob: bytes) -> HandedOff:
    try:
        (
            pattern,
            path,
            params,
            query,
            headers,
            data,
            subprotocol,
            extensions,
            offer,
            remote,
            trailing,
            socket_id,
            response_head,
        ) = msgpack.unpackb(blob)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise HandoffError(f"malformed hand-off blob: {exc}") from None
    route = routes.get(pattern)
    if route is None:
        raise HandoffError(f"this worker's app has no WebSocket route {pattern!r}")
    upgrade = Upgrade(
        route=route,
        path=path,
        params=params,
        query=query,
        headers=Headers([tuple(pair) for pair in headers]),
        data=data,
        subprotocol=subprotocol,
        extensions=extensions,
        # [] (a bare offer, no parameters) and None (no compression) differ.
        deflate_offer=None if offer is None else [(name, value) for name, value in offer],
        remote_address=tuple(remote) if remote else None,
    )
    return HandedOff(upgrade, trailing, socket_id, response_head)


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
    """Send ``fd`` and ``blob`` as one datagram, numbered ``seq``; raises
    ``HandoffError`` if the worker end is gone."""
    fds = array.array("i", [fd])
    await _send(
        channel, _SEQ.pack(seq) + blob, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]
    )


# One receive buffer for the whole process, big enough for the largest
# datagram (so that none is truncated), allocated on first use: allocating
# it per datagram costs an mmap and munmap each time. Sharing it is safe
# because each datagram is copied out before the next await.
_buffer: bytearray | None = None


def _receive_buffer() -> bytearray:
    global _buffer
    if _buffer is None:
        _buffer = bytearray(_SEQ.size + MAX_BLOB)
    return _buffer


_FD_SIZE = array.array("i").itemsize
_ANCILLARY_SPACE = socket.CMSG_SPACE(_FD_SIZE)  # room for exactly one descriptor


# A datagram too short to carry a sequence number: nothing to answer, skipped.
_NOT_A_HANDOFF = Received(-1, None, b"")


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
    if size < _SEQ.size or len(fds) > 1 or flags & socket.MSG_TRUNC:
        for extra in fds:
            socket.close(extra)
        if size < _SEQ.size:
            return _NOT_A_HANDOFF
        fds = array.array("i")
    (seq,) = _SEQ.unpack_from(buffer)
    return Received(seq, fds[0] if fds else None, bytes(buffer[_SEQ.size : size]))


async def receive_sockets(channel: socket.socket) -> list[Received] | None:
    """The hand-offs queued on ``channel`` (at least one, at most
    ``MAX_BATCH``; waits for the first), or None once the sending end is
    closed and nothing more is queued.

    A datagram whose descriptor did not arrive (MSG_CTRUNC: this process is
    out of descriptors) is returned with ``fd=None``, so that it can be
    refused; extra descriptors are closed, datagrams too short to carry a
    sequence number are skipped.
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
    data = b"".join([_REPLY.pack(seq, outcome) for seq, outcome in replies])
    await _send(channel, data, [])


async def send_reply(channel: socket.socket, seq: int, outcome: int) -> None:
    """One answer, in a datagram of its own."""
    await send_replies(channel, [(seq, outcome)])


def decode_replies(data: bytes) -> list[tuple[int, int]]:
    """The (seq, outcome) pairs of one reply datagram; a trailing partial
    pair (not something a worker sends) is ignored."""
    usable = len(data) - len(data) % _REPLY.size
    return list(_REPLY.iter_unpack(data[:usable]))


async def receive_replies(channel: socket.socket) -> list[tuple[int, int]] | None:
    """The answers of the next reply datagram from a worker, or None once
    its end is closed."""
    while True:
        try:
            data = channel.recv(_REPLY.size * MAX_BATCH)
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
        replies = decode_replies(data)
        if replies:
            return replies
