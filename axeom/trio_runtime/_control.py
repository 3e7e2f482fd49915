"""The control socket's wire format and loop, shared by the supervisor and
the single-process server.

Request ``{"cmd": NAME, ...properties}``; reply ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": CODE, "message": TEXT}``, both versioned (see
``axeom.wire``). A command is an async function ``(target, request) ->
result`` in a table of commands; a failing command answers an error and
never takes its server down.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import pynng

from .. import metrics, wire
from ..reload import reloader_pid
from ..security import limits_hit

if TYPE_CHECKING:
    from .._app import Axeom
    from ._handshake import HandshakeCounters
    from ._runtime import SocketRuntime

__all__ = [
    "SINGLE_PROCESS_COMMANDS",
    "handle_request",
    "publish_arguments",
    "remove_ipc_file",
    "serve_control",
]

logger = logging.getLogger("axeom.control")

Command = Callable[[Any, dict[str, Any]], Awaitable[Any]]

_mismatches = wire.MismatchLog(logger, "control requests")


async def handle_request(target: Any, data: bytes, commands: Mapping[str, Command]) -> bytes:
    """Decode one request, run its command against ``target``, encode the reply."""
    try:
        request = wire.decode_request(data)
    except wire.VersionMismatch as exc:
        _mismatches.report(exc, "answered with an error", "a client")
        return wire.encode_error(
            wire.ERROR_WIRE_VERSION,
            f"this server speaks wire version {wire.WIRE_VERSION}, the request came in "
            f"version {exc.version!r}: use the axeom of the install that runs the server",
        )
    except wire.WireError:
        return wire.encode_error(
            wire.ERROR_BAD_REQUEST, "request must be a msgpack map with a 'cmd' key"
        )
    name = request["cmd"]
    command = commands.get(name)
    if command is None:
        return wire.encode_error(
            wire.ERROR_UNKNOWN_COMMAND, f"unknown command {name!r}; known: {sorted(commands)}"
        )
    try:
        result = await command(target, request)
    except Exception as exc:
        return wire.encode_error(wire.ERROR_FAILED, f"{name} failed: {exc}")
    return wire.encode_result(result)


def publish_arguments(request: dict[str, Any]) -> tuple[str, str | bytes]:
    """The topic and data of a publish request, checked."""
    topic, data = request.get("topic"), request.get("data")
    if not isinstance(topic, str) or not isinstance(data, str | bytes):
        raise ValueError("publish needs 'topic' (str) and 'data' (str or bytes)")
    return topic, data


async def serve_control(target: Any, address: str, commands: Mapping[str, Command]) -> None:
    """Answer control requests on ``address`` until cancelled."""
    try:
        with pynng.Rep0(listen=address) as control:
            while True:
                request = await control.arecv()
                await control.asend(await handle_request(target, request, commands))
    finally:
        remove_ipc_file(address)


def remove_ipc_file(address: str) -> None:
    try:
        os.unlink(address.removeprefix("ipc://"))
    except OSError:
        pass


# -- the single-process server's commands ----------------------------------------


class SingleProcess:
    """What the control commands of ``--workers 0`` act on."""

    def __init__(
        self, app: Axeom, runtime: SocketRuntime, port: int, counters: HandshakeCounters
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.port = port
        self.counters = counters
        self.started = time.monotonic()


async def _status(server: SingleProcess, request: dict[str, Any]) -> Any:
    """``{"cmd": "status"}``: this one process, its sockets and topics."""
    return single_status(server)


def single_status(server: SingleProcess) -> dict[str, Any]:
    """The status of ``--workers 0``, in the shape a supervisor answers
    (what ``axeom status`` shows and ``/metrics`` renders)."""
    uptime = round(time.monotonic() - server.started, 3)
    runtime = server.runtime
    sockets = len(runtime.connections)
    figures = metrics.process_figures(runtime.connections, server.app.pubsub)
    pubsub = server.app.pubsub
    return {
        "pid": os.getpid(),
        "port": server.port,
        "uptime": uptime,
        "processes": [
            {
                "name": "server",
                "role": "server",
                "pid": os.getpid(),
                "state": "running",
                "uptime": uptime,
                "restarts": 0,
                "sockets": sockets,
                "routes": figures["routes"],
            }
        ],
        "pubsub": {
            "topics": pubsub.statistics()["topics"],
            "published": pubsub.published,
            "delivered": pubsub.delivered,
        },
        "totals": {
            "sockets": sockets,
            "handed_off": server.counters.accepted,  # accepted and run right here
            "rejected_handshakes": server.counters.rejected,
            "shed_heads": server.counters.shed,
            "http_responses": dict(server.counters.responses),
            "restarts": 0,
            "invalid_messages": server.app.invalid_messages,  # typed routes' rejects
            "limits_hit": limits_hit(server.app),
            "handshakes": {str(code): n for code, n in server.counters.statuses.items()},
        },
        "routes": figures["routes"],
        "top_topics": metrics.top_topics(pubsub.topic_sizes()),
        "traffic": figures["traffic"],
        "bridge": None,
    }


async def _publish(server: SingleProcess, request: dict[str, Any]) -> Any:
    """``{"cmd": "publish", "topic": str, "data": str | bytes}``: to the subscribers."""
    topic, data = publish_arguments(request)
    delivered = server.app.publish(topic, data)
    return 1 if delivered else 0


async def _ping(server: SingleProcess, request: dict[str, Any]) -> Any:
    """``{"cmd": "ping"}``: answers ``"pong"``."""
    return "pong"


async def _reload(server: SingleProcess, request: dict[str, Any]) -> Any:
    """``{"cmd": "reload"}``: with ``--reload``, ask the parent watcher to restart
    this server (as an edit does): answers ``"restarting"``. Without it there is
    nothing that could load new code into this one process: an error says so."""
    parent = reloader_pid()
    if parent is None:
        raise ValueError(
            "this server runs with --workers 0 and loaded its code once; restart it, or run "
            "it with --reload (restarts on every edit) or --workers N (rolling reloads)"
        )
    os.kill(parent, signal.SIGHUP)
    return "restarting"


SINGLE_PROCESS_COMMANDS: dict[str, Command] = {
    "status": _status,
    "publish": _publish,
    "ping": _ping,
    "reload": _reload,
}
