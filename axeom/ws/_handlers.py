"""Normalise the three ways of giving socket handlers into one shape.

``{"open": f, "message": g}`` (the original Axeom's form), keyword arguments
``open=f, message=g``, or a class whose methods are the handlers. A class is
instantiated once per socket, so ``self`` is that socket's private state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

__all__ = ["HANDLER_NAMES", "Handlers"]

HANDLER_NAMES = ("open", "message", "drain", "close", "error")
_ARITY = {"open": 1, "message": 2, "drain": 1, "close": 3, "error": 2}

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

    @classmethod
    def from_mapping(cls, handlers: Mapping[str, Handler]) -> Handlers:
        unknown = set(handlers) - set(HANDLER_NAMES)
        if unknown:
            raise TypeError(
                f"unknown WebSocket handler(s) {sorted(unknown)}; valid: {', '.join(HANDLER_NAMES)}"
            )
        for name, fn in handlers.items():
            _check_callable(name, fn, _ARITY[name])
        return cls(**cast("dict[str, Any]", dict(handlers)))

    @classmethod
    def from_class(cls, klass: type) -> Handlers:
        """Handlers from a class; methods are looked up on a fresh instance per socket."""
        try:
            inspect.signature(klass).bind()
        except TypeError as exc:
            raise TypeError(
                f"WebSocket handler class {klass.__name__} must be constructible without "
                f"arguments (one instance per socket): {exc}"
            ) from None
        found = {name: getattr(klass, name) for name in HANDLER_NAMES if hasattr(klass, name)}
        if not found:
            raise TypeError(
                f"WebSocket handler class {klass.__name__} defines none of "
                f"{', '.join(HANDLER_NAMES)}"
            )
        for name, fn in found.items():
            _check_callable(name, fn, _ARITY[name] + 1)
        return cls(**found, factory=klass)

    def bind(self) -> BoundHandlers:
        """The callables for one socket (a new instance for class-based handlers)."""
        if self.factory is None:
            return BoundHandlers(self.open, self.message, self.drain, self.close, self.error)
        instance = self.factory()
        return BoundHandlers(*(getattr(instance, n, None) for n in HANDLER_NAMES))


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
