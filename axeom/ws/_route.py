"""The WebSocket endpoint: RFC checks, negotiation and the 101 response."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from .._context import Context
from .._messages import Response
from ..errors import HTTPError
from . import _deflate
from ._handlers import Handlers
from ._handshake import (
    accept_key,
    check_origin,
    parse_extensions,
    select_subprotocol,
    validate_upgrade,
)
from ._options import WSOptions
from ._typed import RouteTyping
from ._upgrade import Upgrade

__all__ = ["WSRoute"]

logger = logging.getLogger("axeom.ws")

F = TypeVar("F", bound=Callable[..., Any])


class _Accepted:
    """Between ``check`` and ``handle`` of a typed handshake: the key and the
    validated (query, params, headers)."""

    __slots__ = ("key", "typed")

    def __init__(self, key: str, typed: tuple[Any, Any, Any]) -> None:
        self.key = key
        self.typed = typed


class WSRoute:
    """One ``app.ws(...)`` registration: its pattern, handlers and options.

    As an engine endpoint it answers a valid upgrade with 101 and rejects an
    invalid one with the status its broken rule calls for.

    ``typing`` (a ``RouteTyping``, always present, empty for an untyped route)
    holds the route's schemas: ``query``, ``params``, ``headers``, ``body``,
    ``send``, ``events``, ``discriminator``, ``on_invalid``, ``binary``.
    """

    __slots__ = ("handlers", "options", "pattern", "typing")

    def __init__(
        self,
        pattern: str,
        handlers: Handlers,
        options: WSOptions,
        typing: RouteTyping | None = None,
    ) -> None:
        self.pattern = pattern
        self.options = options
        self.typing = typing or RouteTyping()
        self.handlers = handlers
        self.set_handlers(handlers)

    def set_handlers(self, handlers: Handlers) -> None:
        """Install ``handlers``, with the route's message typing if it has any."""
        typing = self.typing
        if typing.messages:
            if typing.events and handlers.message is not None:
                raise TypeError(
                    f"route {self.pattern}: a route with events= dispatches each message to "
                    f"its event's handler; remove the message handler"
                )
            typing.check_handlers(handlers.factory, handlers.message)
            handlers = dataclasses.replace(handlers, typing=typing)
        self.handlers = handlers

    def on(self, type_: Any, *, name: str | None = None, reply: Any = None) -> Callable[[F], F]:
        """Decorator: ``fn(ws, msg)`` handles the event of type ``type_`` (named
        by its discriminator value, or ``name``); ``reply`` is the type of what
        it returns (described in documents, checked in debug mode)."""

        def register(fn: F) -> F:
            self.typing.add_event(type_, fn, name=name, reply=reply)
            self.set_handlers(self.handlers)
            return fn

        return register

    def __call__(self, target: F) -> F:
        """Used as a decorator (``@app.ws(path, events=...)``): ``target``, a
        handler class or a message function, becomes this route's handlers."""
        events = bool(self.typing.events)
        if isinstance(target, type):
            self.set_handlers(Handlers.from_class(target, events=events))
        elif callable(target):
            self.set_handlers(Handlers.from_mapping({"message": target}))
        else:
            raise TypeError(f"@app.ws decorates a class or a message function, not {target!r}")
        return target

    def __repr__(self) -> str:
        return f"WSRoute({self.pattern!r})"

    def check(self, ctx: Context) -> None:
        """Protocol checks before any user hook runs (no wasted ``derive`` work)."""
        ctx.endpoint_state = key = validate_upgrade(ctx.headers)
        check_origin(ctx.headers, self.options.allowed_origins)
        typing = self.typing
        if typing.handshake:
            typed = typing.validate_handshake(ctx)
            ctx.endpoint_state = _Accepted(key, typed)
            # For derive and the hooks after it; ctx.query and ctx.params stay
            # the raw dicts that app-wide hooks expect.
            ctx.validated = dict(zip(("query", "params", "headers"), typed, strict=True))

    async def handle(self, ctx: Context) -> Response:
        state = ctx.endpoint_state
        if type(state) is _Accepted:
            key, typed = state.key, state.typed
        else:
            key, typed = state, None
        data = ctx.data
        _check_serializable(self.pattern, data)
        headers = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", accept_key(key)),
        ]
        subprotocol = select_subprotocol(ctx.headers, self.options.subprotocols)
        if subprotocol is not None:
            headers.append(("sec-websocket-protocol", subprotocol))
        extensions = offer = None
        if self.options.compression:
            negotiated = _deflate.negotiate(parse_extensions(ctx.headers))
            if negotiated is not None:
                extensions, offer = negotiated
                headers.append(("sec-websocket-extensions", extensions))
        upgrade = Upgrade(
            route=self,
            path=ctx.path,
            params=ctx.params,
            query=ctx.query,
            headers=ctx.headers,
            data=data,
            subprotocol=subprotocol,
            extensions=extensions,
            deflate_offer=offer,
            remote_address=ctx.client,
            typed=typed,
        )
        return Response(101, headers, b"", upgrade)


def _check_serializable(pattern: str, data: dict[str, Any]) -> None:
    """``ws.data`` must survive msgpack (it may cross a process boundary).

    Fails the handshake with 500 and a log line naming the key, instead of
    failing later in another process.
    """
    if not data:
        return
    try:
        msgpack.packb(data)
        return
    except (TypeError, ValueError, OverflowError):
        pass
    for key, value in data.items():
        try:
            msgpack.packb({key: value})
        except (TypeError, ValueError, OverflowError) as exc:
            logger.error(
                "ws.data[%r] on route %s is not msgpack-serializable (%s: %s); "
                "derive must return plain data (str, int, float, bool, None, bytes, list, dict)",
                key,
                pattern,
                type(exc).__name__,
                exc,
            )
            break
    raise HTTPError(500, "Internal Server Error")
