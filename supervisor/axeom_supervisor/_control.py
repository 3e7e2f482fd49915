"""The control commands of a process tree, answered on the supervisor's
control socket (nng REQ/REP, msgpack): ``axeom status``, ``axeom publish``
and ``axeom.control`` send them.

One table, ``COMMANDS``: each entry is a name and the function that does
the command on the supervisor's side; its docstring gives the wire message
and the result. The envelope is the single-process server's too
(``axeom.trio_runtime.handle_request``): request ``{"cmd": NAME, ...}``;
reply ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": CODE,
"message": TEXT}``. A failing command answers an error, never takes the
supervisor down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pynng

from axeom import wire
from axeom.trio_runtime import handle_request as _handle_request
from axeom.trio_runtime import publish_arguments

from . import _status

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["COMMANDS", "handle_request", "serve"]

Command = Callable[["Supervisor", dict[str, Any]], Awaitable[Any]]


async def status(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "status"}``: every process (role, pid, state, uptime, restarts,
    open sockets for workers) and the totals of the tree."""
    return _status.status(supervisor)


async def ping(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "ping"}``: answers ``"pong"`` (is the supervisor alive?)."""
    return "pong"


async def reload(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "reload"}``: as SIGHUP: roll the workers one at a time, then
    replace the acceptor (every process that runs application code). Answers
    ``"reloading"`` at once; the roll goes on after the reply. Under ``--reload``
    it answers ``"restarting"``: an edit's restart (import check, 1012) follows."""
    supervisor.request_reload()
    return "restarting" if supervisor.config.server.reload else "reloading"


async def publish(supervisor: Supervisor, request: dict[str, Any]) -> Any:
    """``{"cmd": "publish", "topic": str, "data": str | bytes}``: publish from
    outside the server to every subscriber of the topic (all workers, and other
    nodes with a Redis bridge). Answers how many workers it was forwarded to."""
    topic, data = publish_arguments(request)
    hub = supervisor.hub
    if hub is None:
        return 0
    hub.handle(None, [(wire.PUB, topic, data)], {})
    return len(hub.topics.get(topic, ()))


COMMANDS: dict[str, Command] = {
    "status": status,
    "ping": ping,
    "reload": reload,
    "publish": publish,
}


async def handle_request(supervisor: Supervisor, data: bytes) -> bytes:
    """One encoded request in, one encoded reply out, from ``COMMANDS``."""
    return await _handle_request(supervisor, data, COMMANDS)


async def serve(supervisor: Supervisor, control: pynng.Socket) -> None:
    """Answer requests on the bound control socket, one at a time, until cancelled."""
    while True:
        request = await control.arecv()
        await control.asend(await handle_request(supervisor, request))
