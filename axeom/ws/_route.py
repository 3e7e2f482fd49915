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
from ._origin import OriginPolicy
from ._rate import LimitedHandlers, MessageLimits
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

    __slots__ = ("handlers", "message_limits", "options", "origin_policy", "pattern", "typing")

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
        # Handlers are wrapped only when the route has message limits: no cost otherwise.
        self.message_limits = MessageLimits(options) if MessageLimits.wanted(options) else None
        self.handlers = handlers
        self.set_handlers(handlers)
        # The route's own origin check (checked now: a bad entry fails at
        # registration); the security plugin's policy applies where it is used.
        allowed = options.allowed_origins
        self.origin_policy = (
            None
            if allowed is None
            else OriginPolicy(allowed, same_origin=False, require_origin=True)
        )

    def set_handlers(self, handlers: Handlers) -> None:
        """Install ``handlers``, with the route's message typing and message
        limits if it has any (limits count the raw message, before decoding)."""
        typing = self.typing
        if typing.messages:
            if typing.events and handlers.message is not None:
                raise TypeError(
                    f"route {self.pattern}: a route with events= dispatches each message to "
                    f"its event's handler; remove the message handler"
                )
            typing.check_handlers(handlers.factory, handlers.message)
            handlers = dataclasses.replace(handlers, typing=typing)
        if self.message_limits is not None:
            handlers = LimitedHandlers.around(handlers, self.message_limits)
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
        """Protocol checks before any user hook runs (no wasted ``derive`` work):
        the upgrade's headers, then the origin and, with the security plugin,
        its connection limits, then a typed route's query, params and headers."""
        ctx.endpoint_state = key = validate_upgrade(ctx.headers)
        security = ctx.app.extensions.get("security")
        if security is not None:
            security.check_handshake(ctx, self)
        else:
            check_origin(ctx.headers, self.origin_policy)
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
