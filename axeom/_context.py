"""The per-request context that hooks, ``derive`` and handlers receive."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._headers import Headers
from ._messages import Request
from .errors import BadRequest

if TYPE_CHECKING:
    from ._app import Axeom

__all__ = ["Context"]

_NOTHING_VALIDATED: Mapping[str, Any] = MappingProxyType({})  # shared: no dict per request
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class Context:
    """What the engine knows about one request while it handles it.

    ``data`` accumulates what ``derive`` functions return (it becomes
    ``ws.data`` on a WebSocket route); values derived earlier are also
    readable as attributes (``ctx.user``), as are the app's ``decorate``
    values. ``set_header`` adds a header to whatever response is sent,
    the 101 included. On a typed WebSocket route (``app.ws(path, query=Q)``)
    ``validated["query"]`` (and ``"params"``, ``"headers"``) are the validated
    values, from ``derive`` on; ``query`` and ``params`` stay the raw dicts.
    """

    __slots__ = (
        "_query",
        "app",
        "data",
        "endpoint_state",
        "params",
        "path",
        "request",
        "response_headers",
        "route",
        "validated",
    )

    def __init__(self, app: Axeom, request: Request) -> None:
        self.app = app
        self.request = request
        self.path = request.path
        self.params: dict[str, str] = {}
        self.route: str | None = None
        self.data: dict[str, Any] = {}
        self.response_headers: list[tuple[str, str]] = []
        self._query: dict[str, str] | None = None
        # Scratch space for the matched endpoint between its check and handle steps.
        self.endpoint_state: Any = None
        # A typed WebSocket route's validated handshake values, by part:
        # {"query": ..., "params": ..., "headers": ...} (raw where undeclared).
        self.validated: Mapping[str, Any] = _NOTHING_VALIDATED

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def headers(self) -> Headers:
        return self.request.headers

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = self.request.query
        return self._query

    @property
    def client(self) -> tuple[str, int] | None:
        return self.request.client

    @property
    def body(self) -> bytes:
        """The request body (``b""`` without one), already read in full."""
        return self.request.body

    def json(self) -> Any:
        """The request body parsed as JSON.

        A body that is not JSON (or not UTF-8, or empty) is the client's
        mistake: it raises ``BadRequest``, so the request is answered 400.
        """
        try:
            return json.loads(self.request.body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
            raise BadRequest("request body is not valid JSON") from None

    def set_header(self, name: str, value: str) -> None:
        """Add a header to the response this request ends with.

        Raises ``ValueError`` for a name that is not a token or a value with
        a line break or a character outside latin-1 (a header injection or an
        unsendable header), so the mistake becomes a logged 500.
        """
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ValueError(f"header {name!r} value contains a line break")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} value is not latin-1; percent-encode it") from None
        self.response_headers.append((name, value))

    def __getattr__(self, name: str) -> Any:
        data = self.data
        if name in data:
            return data[name]
        decorations = self.app.decorations
        if name in decorations:
            return decorations[name]
        raise AttributeError(f"context has no attribute {name!r} (not derived, not decorated)")
