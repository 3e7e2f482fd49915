"""Normalise the three ways of giving socket handlers into one shape.

A dict ``{"open": f, "message": g}``, keyword arguments
``open=f, message=g``, or a class whose methods are the handlers. A class is
instantiated once per socket, so ``self`` is that socket's private state.
"""

from __future__ import annotations

import difflib
import inspect
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ._typed import RouteTyping

__all__ = ["HANDLER_NAMES", "Handlers", "did_you_mean", "user_stacklevel"]

HANDLER_NAMES = ("open", "message", "drain", "close", "error")
_ARITY = {"open": 1, "message": 2, "drain": 1, "close": 3, "error": 2}

# Typing slips a handler name can take and still be a misspelling of it: one edit
# ("mesage", "messgae", "clsoe", "opne"), two for the longer names; "reopen" or "opened"
# (two edits from "open") and "send_message" stay helpers.
_SLIPS_SHORT = 1
_SLIPS_LONG = 2
_LONG_NAME = 6  # "message" is long; "open", "close", "drain", "error" are short

# Prefixes of the handler-function habit (``on_message``) that a method name may carry.
_HANDLER_PREFIXES = ("on_", "handle_", "on")

_AXEOM_DIR = str(Path(__file__).resolve().parent.parent)

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Handlers:
    """The handlers of one route; ``None`` where the user gave none."""

    open: Handler | None = None
    message: Handler | None = None
    drain: Handler | None = None
    close: Handler | None = None
    error: Handler | None = None
    factory: type | None = None
    # A typed route's message decoding and event dispatch (``_typed``), or None.
    typing: RouteTyping | None = None

    @classmethod
    def from_mapping(cls, handlers: Mapping[str, Handler]) -> Handlers:
        unknown = sorted(set(handlers) - set(HANDLER_NAMES))
        if unknown:
            raise TypeError(
                f"unknown WebSocket handler {unknown[0]!r}{did_you_mean(unknown[0], HANDLER_NAMES)}"
                f"; handlers: {', '.join(HANDLER_NAMES)}"
            )
        for name, fn in handlers.items():
            _check_callable(name, fn, _ARITY[name])
        return cls(**cast("dict[str, Any]", dict(handlers)))

    @classmethod
    def from_class(cls, klass: type, *, events: bool = False) -> Handlers:
        """Handlers from a class; methods are looked up on a fresh instance per socket.

        With ``events`` (the route dispatches named events to ``on_<event>``
        methods) the class may define none of the handlers."""
        try:
            inspect.signature(klass).bind()
        except TypeError as exc:
            raise TypeError(
                f"WebSocket handler class {klass.__name__} must be constructible without "
                f"arguments (one instance per socket): {exc}"
            ) from None
        found = {name: getattr(klass, name) for name in HANDLER_NAMES if hasattr(klass, name)}
        misspelled = _misspelled_handlers(klass, found)
        if not found and not events:
            hint = "".join(f"; {name!r}: did you mean {handler!r}?" for name, handler in misspelled)
            raise TypeError(
                f"WebSocket handler class {klass.__name__} defines none of "
                f"{', '.join(HANDLER_NAMES)}{hint}"
            )
        for name, handler in misspelled:
            warnings.warn(
                f"WebSocket handler class {klass.__name__}: method {name!r} is not a handler "
                f"and will never be called (did you mean {handler!r}?)",
                stacklevel=user_stacklevel(),
            )
        for name, fn in found.items():
            _check_callable(name, fn, _ARITY[name] + 1)
        return cls(**found, factory=klass)

    def bind(self) -> BoundHandlers:
        """The callables for one socket (a new instance for class-based handlers)."""
        if self.factory is None:
            bound = BoundHandlers(self.open, self.message, self.drain, self.close, self.error)
            instance = None
        else:
            instance = self.factory()
            bound = BoundHandlers(*(getattr(instance, n, None) for n in HANDLER_NAMES))
        if self.typing is not None:
            return self.typing.bind(bound, instance)
        return bound


@dataclass(slots=True)
class BoundHandlers:
    open: Handler | None
    message: Handler | None
    drain: Handler | None
    close: Handler | None
    error: Handler | None


def _check_callable(name: str, fn: object, arity: int) -> None:
    if not callable(fn):
        raise TypeError(f"WebSocket handler {name!r} must be callable, got {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = list(signature.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > arity or len(positional) < arity:
        raise TypeError(
            f"WebSocket handler {name!r} ({getattr(fn, '__qualname__', fn)}) must accept "
            f"{arity} positional argument(s), its signature is {signature}"
        )


def _misspelled_handlers(klass: type, found: Mapping[str, Handler]) -> list[tuple[str, str]]:
    """(method, handler) pairs: a public method close to a handler name the class lacks.

    Helpers with unrelated names, methods beside a handler that is defined, and
    ``_private`` names are never reported.
    """
    missing = [name for name in HANDLER_NAMES if name not in found]
    pairs = []
    for name in dir(klass):
        if name.startswith("_") or name in HANDLER_NAMES or not callable(getattr(klass, name)):
            continue
        handler = next((h for h in missing if _is_misspelling(name.lower(), h)), None)
        if handler is not None:
            pairs.append((name, handler))
    return pairs


def _is_misspelling(name: str, handler: str) -> bool:
    for prefix in _HANDLER_PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] == handler:
            return True
    slips = _SLIPS_LONG if len(handler) >= _LONG_NAME else _SLIPS_SHORT
    return _edit_distance(name, handler) <= slips


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance counting a swap of neighbours as one edit (optimal string
    alignment): "messgae" is one slip from "message", as a person would count it."""
    if abs(len(a) - len(b)) > _SLIPS_LONG:
        return abs(len(a) - len(b))
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ``' (did you mean "x"?)'`` suffix for the closest candidate, or ``''``."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def user_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel of the innermost caller outside Axeom's package.

    A registration warning then points at the user's ``app.ws(...)`` or class line,
    whichever of Axeom's functions (decorator, registrar, plugin) it went through.
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_AXEOM_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
