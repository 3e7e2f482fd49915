"""Control commands answered on the supervisor's control socket (REQ/REP).

The wire format and the request loop are shared with the single-process
server (``axeom.trio_runtime._control``). Each command is one function registered
in ``COMMANDS``, with its docstring (and wire message) as its documentation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from axeom.trio_runtime import handle_request as _handle_request
from axeom.trio_runtime import publish_arguments

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["COMMANDS", "handle_request"]

Command = Callable[["Supervisor", dict[str, Any]], Awaitable[Any]]


async def status(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "status"}``: every process (role, pid, state, uptime, restarts,
    open sockets for workers) and the totals of the tree."""
    return supervisor.status()


async def ping(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "ping"}``: answers ``"pong"`` (is the supervisor alive?)."""
    return "pong"


async def reload(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "reload"}``: as SIGHUP: roll the workers one at a time, then
    replace the acceptor (every process that runs application code)."""
    supervisor.request_reload()
    return "reloading"


async def publish(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "publish", "topic": str, "data": str | bytes}``: publish from
    outside the server to every subscriber of the topic (all workers, and other
    nodes with a Redis bridge). Answers how many workers it was forwarded to."""
    topic, data = publish_arguments(request)
    return supervisor.publish(topic, data)


COMMANDS: dict[str, Command] = {
    "status": status,
    "ping": ping,
    "reload": reload,
    "publish": publish,
}


async def handle_request(supervisor: Supervisor, data: bytes) -> bytes:
    return await _handle_request(supervisor, data, COMMANDS)
