"""Axeom: a WebSocket framework with a multi-process, actor-style runtime.

The engine (``Axeom``, ``Request``, ``Response``, errors) is sans-IO and
imports no event loop; ``axeom.serve`` (the trio server) is loaded on first
use so that ``import axeom`` stays light.
"""

from typing import TYPE_CHECKING, Any

from ._app import Axeom, Group
from ._context import Context
from ._headers import Headers
from ._messages import Request, Response
from ._router import RouteConflict
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    HTTPError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UpgradeRequired,
)

if TYPE_CHECKING:
    from .trio_runtime._serve import serve as serve

__all__ = [
    "Axeom",
    "BadRequest",
    "Conflict",
    "Context",
    "Forbidden",
    "Group",
    "HTTPError",
    "Headers",
    "MethodNotAllowed",
    "NotFound",
    "Request",
    "Response",
    "RouteConflict",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UpgradeRequired",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "serve":
        from .trio_runtime._serve import serve as serve

        return serve
    raise AttributeError(f"module 'axeom' has no attribute {name!r}")


# ``serve`` is deliberately not in __all__: ``from axeom import *`` must not load trio.
