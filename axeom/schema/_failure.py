"""One error shape for every schema library.

Each adapter turns its library's errors into a list of
``{"loc": [...], "msg": str, "type": str}`` dicts: ``loc`` is the path to the
failing value (keys and list indexes, ``[]`` for the whole message), ``msg``
a sentence for a person, ``type`` a short machine code (the library's own
where it has one: pydantic's ``int_parsing``, jsonschema's ``required``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ErrorDict", "ValidationFailure", "json_invalid", "one_error", "too_deep"]

ErrorDict = dict[str, Any]


class ValidationFailure(ValueError):
    """A value did not match its schema; ``errors`` says where and why.

    A ``ValueError``, so code that validates by hand (``parse`` objects) may
    raise it too and keep its own locations.
    """

    def __init__(self, errors: list[ErrorDict]) -> None:
        super().__init__(errors)
        self.errors = errors

    def __str__(self) -> str:
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(message)'}: {error['msg']}"
            for error in self.errors
        )


def one_error(msg: str, type_: str, loc: list[Any] | None = None) -> ValidationFailure:
    """A failure with a single error."""
    return ValidationFailure([{"loc": loc or [], "msg": msg, "type": type_}])


def json_invalid(exc: BaseException) -> ValidationFailure:
    """The failure for bytes that are no JSON (or no msgpack) at all."""
    if isinstance(exc, RecursionError):
        return too_deep()
    return one_error(f"invalid encoding: {exc}", "json_invalid")


def too_deep() -> ValidationFailure:
    """The failure for a message nested deeper than a decoder or validator
    follows (they raise ``RecursionError``: a client's ``[[[[...`` must be
    an invalid message, not the handler's exception)."""
    return one_error("nested too deeply", "too_deep")
