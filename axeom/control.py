"""Talk to a running ``axeom run`` from another process on the same machine:
publish into a topic, read the status.

    from axeom.control import publish
    publish("room:1", "server restarting in 5 minutes", port=8000)

These go through the server's control socket (nng REQ/REP, msgpack): the
supervisor's with ``--workers N``, the server process's with ``--workers 0``;
``axeom status`` and ``axeom publish`` use the same.
"""

from __future__ import annotations

import os
from typing import Any

import pynng

from . import wire
from .ipc import control_address

__all__ = ["ControlError", "publish", "request", "status"]


class ControlError(Exception):
    """No supervisor answered, or it refused the command."""


def request(command: dict[str, Any], *, port: int = 8000, timeout: float = 3.0) -> Any:
    """Send one command to the supervisor of the server on ``port``; its result."""
    address = control_address(port)
    if not os.path.exists(address.removeprefix("ipc://")):
        raise ControlError(
            f"no Axeom server on port {port} (is `axeom run` running there, on this machine?)"
        )
    milliseconds = int(timeout * 1000)
    try:
        with pynng.Req0(dial=address, recv_timeout=milliseconds, send_timeout=milliseconds) as req:
            req.send(wire.encode_request(command))
            data = req.recv()
    except pynng.exceptions.NNGException as exc:
        raise ControlError(f"supervisor on port {port} did not answer: {exc}") from None
    try:
        reply = wire.decode_reply(data)
    except wire.VersionMismatch as exc:
        raise ControlError(
            f"the server on port {port} speaks wire version {exc.version!r}, this axeom "
            f"speaks {wire.WIRE_VERSION}: use the axeom of the install that runs the server"
        ) from None
    except wire.WireError as exc:
        raise ControlError(
            f"the server on port {port} answered something unusable: {exc}"
        ) from None
    if not reply.ok:
        raise ControlError(reply.message or "command failed")
    return reply.result


def publish(topic: str, data: str | bytes, *, port: int = 8000, timeout: float = 3.0) -> int:
    """Publish ``data`` to ``topic`` on the server on ``port`` (text if str,
    binary if bytes). Returns how many workers had subscribers."""
    return int(
        request({"cmd": "publish", "topic": topic, "data": data}, port=port, timeout=timeout)
    )


def status(*, port: int = 8000, timeout: float = 3.0) -> dict[str, Any]:
    """What ``axeom status --json`` prints."""
    result: dict[str, Any] = request({"cmd": "status"}, port=port, timeout=timeout)
    return result
