"""Case-insensitive, multi-valued HTTP headers.

Header names are compared without regard to case (RFC 9110 section 5.1) and a
name may repeat; the order the client sent them in is kept. Values are ``str``
decoded as latin-1, which round-trips every byte a request head may carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Headers"]

HeaderItems = Iterable[tuple[str, str]]


class Headers(Mapping[str, str]):
    """A read-mostly mapping from lower-cased header name to value(s).

    ``headers["x"]`` and ``headers.get("x")`` give the first value;
    ``headers.get_all("x")`` gives every value in order.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: HeaderItems | Mapping[str, str] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        if items is None:
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append one header, keeping any earlier value of the same name."""
        lowered = name.lower()
        self._items.append((lowered, value))
        values = self._index.get(lowered)
        if values is None:
            self._index[lowered] = [value]
        else:
            values.append(value)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in the order received (empty if absent)."""
        return list(self._index.get(name.lower(), ()))

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of every ``name`` header, stripped and lower-cased.

        ``Connection: keep-alive, Upgrade`` gives ``["keep-alive", "upgrade"]``.
        """
        found: list[str] = []
        for value in self._index.get(name.lower(), ()):
            found.extend(part.strip().lower() for part in value.split(",") if part.strip())
        return found

    def items_list(self) -> list[tuple[str, str]]:
        """All (lower-cased name, value) pairs in order, repeats included."""
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"
