"""The WebSocket endpoint: RFC checks, negotiation and the 101 response."""

from __future__ import annotations

import logging
from typing import Any

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
from ._upgrade import Upgrade

__all__ = ["WSRoute"]

logger = logging.getLogger("axeom.ws")


class WSRoute:
    """One ``app.ws(...)`` registration: its pattern, handlers and options.

    As an engine endpoint it answers a valid upgrade with 101 and rejects an
    invalid one with the status its broken rule calls for.
    """

    __slots__ = ("handlers", "message_limits", "options", "origin_policy", "pattern")

    def __init__(self, pattern: str, handlers: Handlers, options: WSOptions) -> None:
        self.pattern = pattern
        self.options = options
        # Wrapped only when the route has message limits: no cost otherwise.
        self.message_limits: MessageLimits | None = None
        if MessageLimits.wanted(options):
            self.message_limits = MessageLimits(options)
            handlers = LimitedHandlers.around(handlers, self.message_limits)
        self.handlers = handlers
        # The route's own origin check (checked now: a bad entry fails at
        # registration); the security plugin's policy applies where it is used.
        allowed = options.allowed_origins
        self.origin_policy = (
            None
            if allowed is None
            else OriginPolicy(allowed, same_origin=False, require_origin=True)
        )

    def __repr__(self) -> str:
        return f"WSRoute({self.pattern!r})"

    def check(self, ctx: Context) -> None:
        """Protocol checks before any user hook runs (no wasted ``derive`` work):
        the upgrade's headers, then the origin and, with the security plugin,
        its connection limits."""
        ctx.endpoint_state = validate_upgrade(ctx.headers)
        security = ctx.app.extensions.get("security")
        if security is not None:
            security.check_handshake(ctx, self)
        else:
            check_origin(ctx.headers, self.origin_policy)

    async def handle(self, ctx: Context) -> Response:
        key = ctx.endpoint_state
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
