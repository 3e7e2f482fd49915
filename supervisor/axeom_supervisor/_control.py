"""Control commands answered on the supervisor's control socket (REQ/REP).

Wire format: request ``{"cmd": NAME, ...properties}``, reply
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": CODE, "message": TEXT}``.
Each command is one function registered in ``COMMANDS`` with its docstring
as its documentation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["COMMANDS", "handle_request"]

Command = Callable[["Supervisor", dict[str, Any]], Awaitable[Any]]

ERROR_UNKNOWN_COMMAND = "unknown_command"
ERROR_BAD_REQUEST = "bad_request"
ERROR_FAILED = "failed"


async def status(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "status"}``: every process (role, pid, state, uptime, restarts,
    open sockets for workers) and the totals of the tree."""
    return supervisor.status()


async def ping(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "ping"}``: answers ``"pong"`` (is the supervisor alive?)."""
    return "pong"


async def reload(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "reload"}``: roll the workers one at a time, as SIGHUP does."""
    supervisor.request_reload()
    return "reloading"


async def publish(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "publish", "topic": str, "data": str | bytes}``: publish from
    outside the server to every subscriber of the topic (all workers, and other
    nodes with a Redis bridge). Answers how many workers it was forwarded to."""
    topic, data = request.get("topic"), request.get("data")
    if not isinstance(topic, str) or not isinstance(data, str | bytes):
        raise ValueError("publish needs 'topic' (str) and 'data' (str or bytes)")
    return supervisor.publish(topic, data)


COMMANDS: dict[str, Command] = {
    "status": status,
    "ping": ping,
    "reload": reload,
    "publish": publish,
}


async def handle_request(supervisor: Supervisor, data: bytes) -> bytes:
    try:
        request = msgpack.unpackb(data)
        name = request["cmd"]
    except (ValueError, TypeError, KeyError, msgpack.UnpackException):
        return _error(ERROR_BAD_REQUEST, "request must be a msgpack map with a 'cmd' key")
    command = COMMANDS.get(name)
    if command is None:
        return _error(ERROR_UNKNOWN_COMMAND, f"unknown command {name!r}; known: {sorted(COMMANDS)}")
    try:
        result = await command(supervisor, request)
    except Exception as exc:  # a failing command must not take the supervisor down
        return _error(ERROR_FAILED, f"{name} failed: {exc}")
    return msgpack.packb({"ok": True, "result": result})


def _error(code: str, message: str) -> bytes:
    return msgpack.packb({"ok": False, "error": code, "message": message})
