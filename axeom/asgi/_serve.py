"""``Axeom.__call__``: one ASGI 3 application for the three scope types.

- ``websocket``: the handshake is the engine's (``app.handle``: hooks,
  ``derive``, origin checks); an accept carries the chosen subprotocol and
  the hooks' headers, a refusal the engine's status, headers and body where
  the server offers the denial response extension (a 403 where it does not).
  Never a 101 followed by a close frame.
- ``http``: the engine's HTTP routes (``app.get``), body read whole first.
- ``lifespan``: the app's startup and shutdown hooks, once per process.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from .._messages import Response
from ._connection import ASGIConnection, Receive, Send
from ._loop import Event, current_loop
from ._redis import ensure_link, stop_link
from ._scope import (
    accept_message,
    denial_messages,
    request_from_scope,
    response_messages,
    split_root,
)

if TYPE_CHECKING:
    from .._app import Axeom

__all__ = ["MAX_BODY_SIZE", "serve_asgi"]

logger = logging.getLogger("axeom.asgi")

# Largest HTTP request body read for a route (the native server's default
# ``max_body_size``): an HTTP route here is a health check or a small API.
MAX_BODY_SIZE = 1 << 20


class _LateStart:
    """``on_start`` run at the first connection, for a server or parent app
    that sent no lifespan startup (daphne; an app mounted in FastAPI or
    Starlette without ``lifespan=axeom_app.lifespan``): later connections
    wait for it, and all of them are refused if it failed."""

    __slots__ = ("done", "failure")

    def __init__(self, done: Event) -> None:
        self.done = done
        self.failure: BaseException | None = None


_late_starts: weakref.WeakKeyDictionary[Axeom, _LateStart] = weakref.WeakKeyDictionary()


async def _started(app: Axeom) -> None:
    """Return once the app's ``on_start`` functions ran; run them here if no
    lifespan startup did. Raises what a late start raised."""
    late = _late_starts.get(app)
    if late is None:
        if app.started:
            return  # the lifespan (or app.lifespan) ran them
        late = _late_starts[app] = _LateStart(current_loop().event())
        logger.warning(
            "no lifespan startup reached this app: its on_start functions run at the "
            "first connection and its on_stop functions will not run (mounted in "
            "FastAPI or Starlette? pass lifespan=axeom_app.lifespan to the parent app)"
        )
        try:
            await app.run_on_start()
        except BaseException as exc:
            late.failure = exc
            raise
        finally:
            late.done.set()
        return
    if not late.done.is_set():
        await late.done.wait()
    if late.failure is not None:
        raise RuntimeError("this app's on_start failed at its first connection") from late.failure


async def serve_asgi(app: Axeom, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Serve one ASGI scope with ``app``."""
    ensure_link(app)  # pub/sub through Redis, when configured
    kind = scope["type"]
    if kind != "lifespan" and (_late_starts or not app.started):
        await _started(app)
    if kind == "websocket":
        await serve_websocket(app, scope, receive, send)
    elif kind == "http":
        await serve_http(app, scope, receive, send)
    elif kind == "lifespan":
        await serve_lifespan(app, receive, send)
    else:
        # The spec: an app raises on a scope type it does not know.
        raise ValueError(f"Axeom does not serve ASGI scope type {kind!r}")


async def serve_websocket(app: Axeom, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left before the handshake began
    prefix, target = split_root(scope)
    response = await app.handle(request_from_scope(scope, target))
    upgrade = response.upgrade
    if response.status != 101 or upgrade is None:
        await _deny(scope, send, response)
        return
    try:
        accept = accept_message(response)
    except UnicodeEncodeError:
        logger.exception("101 to %s has an unsendable header; answering 500", scope.get("client"))
        await _deny(scope, send, Response.error(500, "Internal Server Error"))
        return
    connection = ASGIConnection(app, upgrade, prefix, send, current_loop())
    await send(accept)
    await connection.run(receive)


async def _deny(scope: dict[str, Any], send: Send, response: Response) -> None:
    try:
        messages = denial_messages(scope, response)
    except UnicodeEncodeError:
        logger.exception("rejection has an unsendable header; answering 500")
        messages = denial_messages(scope, Response.error(500, "Internal Server Error"))
    for message in messages:
        await send(message)


async def serve_http(app: Axeom, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    _, target = split_root(scope)
    body = await _read_body(receive, MAX_BODY_SIZE)
    if body is None:
        response = Response.error(413, f"request body larger than {MAX_BODY_SIZE} bytes")
    else:
        response = await app.handle(request_from_scope(scope, target, body))
        if response.status == 101:
            # Only a server without WebSocket support passes an upgrade as http.
            response = Response.error(
                501, "this ASGI server passed a WebSocket upgrade as plain HTTP"
            )
    try:
        messages = response_messages(response)
    except UnicodeEncodeError:
        logger.exception("response to %s cannot be sent; answering 500", scope.get("client"))
        messages = response_messages(Response.error(500, "Internal Server Error"))
    for message in messages:
        await send(message)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it is over ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # http.disconnect: answered, to no one
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def serve_lifespan(app: Axeom, receive: Receive, send: Send) -> None:
    """Startup and shutdown: each phase runs the app's ``on_start`` or
    ``on_stop`` functions and reports complete, or failed with the error
    (the server then refuses to start, or logs it)."""
    while True:
        message = await receive()
        phase = message["type"].removeprefix("lifespan.")
        if phase == "startup":
            run = app.run_on_start
        elif phase == "shutdown":
            run = app.run_on_stop
        else:
            continue
        try:
            await run()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            # One line for the operator (the server prints the reason too);
            # the traceback at debug level.
            logger.error("lifespan %s failed: %s", phase, reason)
            logger.debug("lifespan %s failure", phase, exc_info=exc)
            await send({"type": f"lifespan.{phase}.failed", "message": reason})
            return
        await send({"type": f"lifespan.{phase}.complete"})
        if phase == "shutdown":
            stop_link(app)
            return
