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
    "encode",
    "receive_reply",
    "receive_socket",
    "send_reply",
    "send_socket",
]

MAX_BLOB = 1 << 20
SOCKET_BUFFER = 4 << 20

_SEQ = struct.Struct("!Q")  # precedes every blob: the hand-off's sequence number
_REPLY = struct.Struct("!QB")  # a worker's answer: sequence number, outcome

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


async def receive_socket(channel: socket.socket) -> Received | None:
    """The next hand-off, or None once the sending end is closed.

    A datagram whose descriptor did not arrive (MSG_CTRUNC: this process is
    out of descriptors) is returned with ``fd=None``, so that it can be
    refused; extra descriptors are closed, datagrams too short to carry a
    sequence number are skipped.
    """
    fd_size = array.array("i").itemsize
    while True:
        try:
            data, ancdata, flags, _ = channel.recvmsg(
                _SEQ.size + MAX_BLOB, socket.CMSG_SPACE(fd_size)
            )
        except BlockingIOError:
            await trio.lowlevel.wait_readable(channel)
            continue
        except OSError:
            return None
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fd_size)])
        if not data and not fds:
            return None
        if len(data) < _SEQ.size or len(fds) > 1 or flags & socket.MSG_TRUNC:
            for extra in fds:
                socket.close(extra)
            if len(data) < _SEQ.size:
                continue  # not a hand-off at all: nothing to answer
            fds = array.array("i")
        (seq,) = _SEQ.unpack_from(data)
        return Received(seq, fds[0] if fds else None, data[_SEQ.size :])


async def send_reply(channel: socket.socket, seq: int, outcome: int) -> None:
    """A worker's answer to hand-off ``seq``; raises ``HandoffError`` if the
    acceptor's end is gone."""
    await _send(channel, _REPLY.pack(seq, outcome), [])


async def receive_reply(channel: socket.socket) -> tuple[int, int] | None:
    """The next (seq, outcome) from a worker, or None once its end is closed."""
    while True:
        try:
            data = channel.recv(_REPLY.size)
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
        if len(data) == _REPLY.size:
            seq, outcome = _REPLY.unpack(data)
            return seq, outcome
