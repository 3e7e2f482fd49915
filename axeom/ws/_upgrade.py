"""What a ``101`` response carries: everything needed to run the socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._headers import Headers

if TYPE_CHECKING:
    from ._route import WSRoute

__all__ = ["Upgrade"]


@dataclass(slots=True)
class Upgrade:
    """An accepted WebSocket handshake.

    ``data`` is ``ws.data`` (what ``derive`` returned; msgpack-serializable,
    checked at handshake time, so it can cross a process boundary).
    ``deflate_offer`` is the client's permessage-deflate offer that was
    accepted, from which the socket's process rebuilds the extension:
    ``None`` when compression is off, ``[]`` for a bare offer (no
    parameters), which is an offer all the same. ``query``, ``params`` and
    ``headers`` are the raw values, as they arrived.
    """

    route: WSRoute
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Headers
    data: dict[str, Any]
    subprotocol: str | None
    extensions: str | None
    deflate_offer: list[tuple[str, str | None]] | None
    remote_address: tuple[str, int] | None
    # A typed route's validated (query, params, headers), in the process that
    # validated them; None after a hand-off (the worker validates the raw
    # values again: only plain data crosses a process boundary).
    typed: tuple[Any, Any, Any] | None = None
