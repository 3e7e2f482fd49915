"""``Schema``: what every adapted type offers the rest of Axeom."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import msgpack

from ._failure import ValidationFailure, json_invalid

__all__ = ["Decoder", "Schema"]

Decoder = Callable[[Any], Any]

# What a decoder may raise for bad input: JSON and msgpack errors, the
# libraries' validation errors (pydantic's and msgspec's are ValueErrors) and
# ours, and RecursionError (json, msgspec and jsonschema recurse per level of
# nesting); a ``parse`` object's schema widens it to any Exception.
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    msgpack.UnpackException,
    RecursionError,
)


class Schema(ABC):
    """A type adapted for validation, JSON Schema and encoding.

    ``name`` is a title usable as a message or schema name; ``kind`` says
    which adapter made it (``pydantic``, ``msgspec``, ``dataclass``,
    ``typeddict``, ``jsonschema``, ``parser``); ``source`` is what was adapted.

    The per-message path uses ``json_decoder()`` / ``msgpack_decoder()``:
    callables that decode and validate in one step where the library can,
    raising one of ``decode_errors``, which ``failure(exc)`` turns into the one
    error shape. Decoding raw bytes this way skips a Python frame per message;
    ``decode_json`` is the same with the conversion done for you.
    """

    kind = "schema"
    decode_errors: tuple[type[BaseException], ...] = _DECODE_ERRORS

    def __init__(self, source: Any, name: str) -> None:
        self.source = source
        self.name = name

    def __repr__(self) -> str:
        return f"<Schema {self.kind} {self.name}>"

    # -- what each adapter defines -------------------------------------------

    @abstractmethod
    def validate(self, raw: Any) -> Any:
        """The valid value made from ``raw`` (plain data: dicts, lists, str,
        numbers); raises ``ValidationFailure``."""

    def validate_strings(self, raw: Any) -> Any:
        """``validate`` for values that all came as strings (a query, path
        params, headers): a library that can convert them (``"5"`` to ``5``
        for an ``int`` field) does; pydantic does so in ``validate`` already."""
        return self.validate(raw)

    @abstractmethod
    def json_schema(self) -> dict[str, Any]:
        """A JSON Schema of valid values, from the library's own generator."""

    def to_builtins(self, value: Any) -> Any:
        """``value`` as plain JSON-ready data (for encoding and checks)."""
        return value

    def failure(self, exc: BaseException) -> ValidationFailure:
        """The ``ValidationFailure`` for what a decoder raised."""
        if isinstance(exc, ValidationFailure):
            return exc
        return json_invalid(exc)

    # -- shared -----------------------------------------------------------------

    def json_decoder(self) -> Decoder:
        """A callable: JSON text or bytes in, valid value out."""
        validate = self.validate
        loads = json.loads
        return lambda data: validate(loads(data))

    def msgpack_decoder(self) -> Decoder:
        """A callable: msgpack bytes in, valid value out."""
        validate = self.validate
        unpackb = msgpack.unpackb
        return lambda data: validate(unpackb(data))

    def decode_json(self, data: str | bytes) -> Any:
        """Decode and validate one JSON document; raises ``ValidationFailure``."""
        try:
            return self.json_decoder()(data)
        except self.decode_errors as exc:
            raise self.failure(exc) from None

    def encode_json(self, value: Any) -> str:
        """``value`` (an instance, or plain data) as JSON text."""
        return json.dumps(self.to_builtins(value), separators=(",", ":"))

    def const(self, field: str) -> Any:
        """The one value the schema allows for ``field`` (a ``Literal``, a
        ``const``, a one-item ``enum``, a msgspec tag), or None: how an event
        type names itself by its discriminator field."""
        schema = _resolve_top(self.json_schema())
        prop = schema.get("properties", {}).get(field)
        if not isinstance(prop, dict):
            return None
        if "const" in prop:
            return prop["const"]
        enum = prop.get("enum")
        if isinstance(enum, list) and len(enum) == 1:
            return enum[0]
        return None


def _resolve_top(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema whose top is ``{"$ref": "#/$defs/X"}`` read as ``X`` itself."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref[len("#/$defs/") :])
        if isinstance(target, dict):
            return target
    return schema


def inline_top_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """``{"$ref": "#/$defs/X", "$defs": {...}}`` as ``X`` with the other
    definitions kept under ``$defs``: the properties are visible at the top,
    as pydantic's generator puts them."""
    target = _resolve_top(schema)
    if target is schema:
        return schema
    name = schema["$ref"][len("#/$defs/") :]
    defs = dict(schema["$defs"])
    if schema["$ref"] not in json.dumps([target, defs]):
        del defs[name]  # only the top referred to it (a tree would keep it)
    return {**target, "$defs": defs} if defs else dict(target)
