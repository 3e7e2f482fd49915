"""Moving an accepted WebSocket to a worker: the TCP descriptor and one blob.

The descriptor travels with SCM_RIGHTS over a Unix SOCK_SEQPACKET socket,
in the same datagram as a msgpack blob describing the upgrade, so the two
can never be paired wrongly. The blob names the route by its pattern (not
by position), so a worker running a newer version of the app during a
rolling reload refuses a route it does not have instead of running the
wrong handlers. Bytes the acceptor read past the request head travel too:
a client may send its first frame in the same TCP segment as the head.
"""

from __future__ import annotations

import array
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack
import trio

from .._headers import Headers
from ..ws._route import WSRoute
from ..ws._upgrade import Upgrade

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = ["HandedOff", "HandoffError", "decode", "encode", "receive_socket", "send_socket"]

MAX_BLOB = 1 << 20
SOCKET_BUFFER = 4 << 20


class HandoffError(Exception):
    """A hand-off that cannot be completed (worker gone, blob unusable)."""


@dataclass(slots=True)
class HandedOff:
    upgrade: Upgrade
    trailing: bytes
    socket_id: str


def encode(upgrade: Upgrade, trailing: bytes, socket_id: str) -> bytes:
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
    return HandedOff(upgrade, trailing, socket_id)


def tune(channel: socket.socket) -> None:
    """Room for large blobs and bursts of hand-offs."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            channel.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


async def send_socket(channel: socket.socket, fd: int, blob: bytes) -> None:
    """Send ``fd`` and ``blob`` as one datagram; raises ``HandoffError`` if the
    worker end is gone."""
    fds = array.array("i", [fd])
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
    while True:
        try:
            channel.sendmsg([blob], ancillary)
            return
        except BlockingIOError:
            try:
                await trio.lowlevel.wait_writable(channel)
            except trio.ClosedResourceError:
                raise HandoffError("worker channel closed") from None
        except OSError as exc:
            raise HandoffError(f"worker channel failed: {exc}") from None


async def receive_socket(channel: socket.socket) -> tuple[int, bytes] | None:
    """The next (fd, blob), or None once the sending end is closed."""
    fd_size = array.array("i").itemsize
    while True:
        try:
            blob, ancdata, flags, _ = channel.recvmsg(MAX_BLOB, socket.CMSG_SPACE(fd_size))
        except BlockingIOError:
            await trio.lowlevel.wait_readable(channel)
            continue
        except (ConnectionResetError, OSError):
            return None
        fds = array.array("i")
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fd_size)])
        if not blob and not fds:
            return None
        if len(fds) != 1 or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for extra in fds:
                socket.close(extra)
            continue  # malformed datagram: drop it, keep the channel
        return fds[0], blob
