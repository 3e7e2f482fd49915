"""Path router: static segments, ``:param`` segments and a trailing ``*``.

Precedence is by segment kind, never by registration order: at every depth a
static segment beats a parameter, which beats the wildcard; the router
backtracks when a more specific branch leads nowhere. Registrations that
could never be told apart (the same path twice for one method, two parameter
names at one position) are rejected when registered, not discovered later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ._messages import decode_segment

__all__ = ["MethodMismatch", "RouteConflict", "RouteMatch", "Router"]

T = TypeVar("T")


class RouteConflict(ValueError):
    """Two routes that the router could not tell apart."""


@dataclass(slots=True)
class RouteMatch(Generic[T]):
    """A path and method that matched: the endpoint and decoded path params."""

    endpoint: T
    pattern: str
    params: dict[str, str]


@dataclass(slots=True)
class MethodMismatch:
    """The path exists, but not for this method; ``allowed`` feeds the ``Allow`` header."""

    allowed: list[str]


@dataclass(slots=True)
class _Node(Generic[T]):
    static: dict[str, _Node[T]] = field(default_factory=dict)
    param: _Node[T] | None = None
    param_name: str | None = None
    wildcard: dict[str, tuple[str, T]] | None = None
    endpoints: dict[str, tuple[str, T]] = field(default_factory=dict)


class Router(Generic[T]):
    """Maps (method, path) to an endpoint of type ``T``."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()

    def add(self, method: str, pattern: str, endpoint: T) -> None:
        """Register ``endpoint`` for ``method`` on ``pattern``.

        Raises ``RouteConflict`` when the pattern is malformed or collides with
        an earlier registration.
        """
        segments = _split_pattern(pattern)
        node = self._root
        for index, segment in enumerate(segments):
            if segment == "*":
                if index != len(segments) - 1:
                    raise RouteConflict(f"{pattern!r}: '*' is only allowed as the last segment")
                if node.wildcard is None:
                    node.wildcard = {}
                _claim(node.wildcard, method, pattern, endpoint)
                return
            if segment.startswith(":"):
                name = segment[1:]
                if not name.isidentifier():
                    raise RouteConflict(
                        f"{pattern!r}: parameter name {name!r} is not an identifier"
                    )
                if node.param is None:
                    node.param, node.param_name = _Node(), name
                elif node.param_name != name:
                    raise RouteConflict(
                        f"{pattern!r}: parameter ':{name}' conflicts with ':{node.param_name}' "
                        "registered at the same position"
                    )
                node = node.param
            else:
                node = node.static.setdefault(segment, _Node())
        _claim(node.endpoints, method, pattern, endpoint)

    def match(self, method: str, path: str) -> RouteMatch[T] | MethodMismatch | None:
        """Find the endpoint for ``method`` and an encoded ``path``.

        Returns ``None`` when no route has this path, ``MethodMismatch`` when
        routes exist for the path but none for this method (a more general
        route that does have the method wins over that).
        """
        segments = path.strip("/").split("/") if path.strip("/") else []
        raw_params: list[str] = []
        allowed: set[str] = set()
        found = _find(self._root, segments, 0, raw_params, method, allowed)
        if found is None:
            return MethodMismatch(sorted(allowed)) if allowed else None
        (pattern, endpoint), names = found
        params = {
            name: decode_segment(value) for name, value in zip(names, raw_params, strict=True)
        }
        return RouteMatch(endpoint, pattern, params)


def _claim(table: dict[str, tuple[str, T]], method: str, pattern: str, endpoint: T) -> None:
    if method in table:
        raise RouteConflict(
            f"{method} {pattern!r} conflicts with {method} {table[method][0]!r}, registered earlier"
        )
    table[method] = (pattern, endpoint)


def _split_pattern(pattern: str) -> list[str]:
    if not pattern.startswith("/"):
        raise RouteConflict(f"route {pattern!r} must start with '/'")
    stripped = pattern.strip("/")
    segments = stripped.split("/") if stripped else []
    if any(segment == "" for segment in segments):
        raise RouteConflict(f"route {pattern!r} has an empty segment")
    return segments


def _find(
    node: _Node[T],
    segments: list[str],
    index: int,
    params: list[str],
    method: str,
    allowed: set[str],
) -> tuple[tuple[str, T], list[str]] | None:
    """Depth-first search in precedence order for a route with ``method``;
    ``params`` collects raw values, ``allowed`` the methods of paths that
    matched without it."""
    if index == len(segments):
        entry = node.endpoints.get(method)
        if entry is not None:
            return entry, _pattern_params(entry[0])
        allowed.update(node.endpoints)
        return _with_wildcard(node, segments, index, params, method, allowed)
    segment = segments[index]
    child = node.static.get(segment)
    if child is not None:
        found = _find(child, segments, index + 1, params, method, allowed)
        if found is not None:
            return found
    if node.param is not None and segment:
        params.append(segment)
        found = _find(node.param, segments, index + 1, params, method, allowed)
        if found is not None:
            return found
        params.pop()
    return _with_wildcard(node, segments, index, params, method, allowed)


def _with_wildcard(
    node: _Node[T],
    segments: list[str],
    index: int,
    params: list[str],
    method: str,
    allowed: set[str],
) -> tuple[tuple[str, T], list[str]] | None:
    if not node.wildcard:
        return None
    entry = node.wildcard.get(method)
    if entry is None:
        allowed.update(node.wildcard)
        return None
    params.append("/".join(segments[index:]))
    return entry, [*_pattern_params(entry[0]), "*"]


def _pattern_params(pattern: str) -> list[str]:
    return [segment[1:] for segment in pattern.strip("/").split("/") if segment.startswith(":")]
