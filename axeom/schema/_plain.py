"""Dataclasses and TypedDicts without a schema library installed.

A small validator and JSON-Schema generator for the field types JSON
carries: ``str``, ``int``, ``float``, ``bool``, ``None``, ``list[X]``,
``dict[str, X]``, ``X | None``, ``Literal[...]``, nested dataclasses and
TypedDicts. A field of any other type is accepted as it came. With msgspec
or pydantic installed, those validate dataclasses instead (see ``adapt``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ._base import Schema
from ._failure import ErrorDict, ValidationFailure, too_deep

__all__ = ["PlainSchema", "plain_json_schema"]

_SCALARS: dict[Any, tuple[str, tuple[type, ...]]] = {
    str: ("string", (str,)),
    int: ("integer", (int,)),
    float: ("number", (int, float)),
    bool: ("boolean", (bool,)),
    type(None): ("null", (type(None),)),
}


class PlainSchema(Schema):
    """A dataclass or TypedDict checked by Axeom's own small validator."""

    def __init__(self, type_: type, kind: str, name: str | None = None) -> None:
        super().__init__(type_, name or type_.__name__)
        self.kind = kind

    def validate(self, raw: Any) -> Any:
        errors: list[ErrorDict] = []
        try:
            value = _check(self.source, raw, [], errors)
        except RecursionError:  # a recursive dataclass follows the nesting
            raise too_deep() from None
        if errors:
            raise ValidationFailure(errors)
        return value

    def json_schema(self) -> dict[str, Any]:
        return plain_json_schema(self.source)

    def to_builtins(self, value: Any) -> Any:
        return _builtins(value)


def _builtins(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _builtins(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _builtins(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_builtins(v) for v in value]
    return value


def _is_record(tp: Any) -> bool:
    from ._adapt import is_typeddict

    return isinstance(tp, type) and (dataclasses.is_dataclass(tp) or is_typeddict(tp))


def _check(tp: Any, raw: Any, loc: list[Any], errors: list[ErrorDict]) -> Any:
    """``raw`` as a value of ``tp``; appends to ``errors`` where it is not."""
    if _is_record(tp):
        return _check_record(tp, raw, loc, errors)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if raw not in args:
            errors.append(_error(loc, f"Input should be one of {list(args)!r}", "literal_error"))
        return raw
    if origin is typing.Union or origin is types.UnionType:
        for option in args:
            trial: list[ErrorDict] = []
            value = _check(option, raw, loc, trial)
            if not trial:
                return value
        errors.append(_error(loc, f"Input does not match {_type_name(tp)}", "union_error"))
        return raw
    if origin is list or tp is list:
        if not isinstance(raw, list):
            errors.append(_error(loc, "Input should be a valid list", "list_type"))
            return raw
        item = args[0] if args else Any
        return [_check(item, v, [*loc, i], errors) for i, v in enumerate(raw)]
    if origin is dict or tp is dict:
        if not isinstance(raw, dict):
            errors.append(_error(loc, "Input should be a valid dictionary", "dict_type"))
            return raw
        item = args[1] if len(args) == 2 else Any
        return {k: _check(item, v, [*loc, k], errors) for k, v in raw.items()}
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        name, accepted = scalar
        if not isinstance(raw, accepted) or (tp is not bool and isinstance(raw, bool)):
            errors.append(_error(loc, f"Input should be a valid {name}", f"{name}_type"))
        return float(raw) if tp is float and isinstance(raw, int) else raw
    return raw


def _check_record(tp: type, raw: Any, loc: list[Any], errors: list[ErrorDict]) -> Any:
    if not isinstance(raw, dict):
        errors.append(_error(loc, f"Input should be an object ({tp.__name__})", "model_type"))
        return raw
    hints = typing.get_type_hints(tp)
    values = {}
    for name, required in _fields(tp):
        if name in raw:
            values[name] = _check(hints.get(name, Any), raw[name], [*loc, name], errors)
        elif required:
            errors.append(_error([*loc, name], "Field required", "missing"))
    if errors or not dataclasses.is_dataclass(tp):
        return values
    return tp(**values)


def _fields(tp: type) -> list[tuple[str, bool]]:
    """(name, required) of each field of a dataclass or TypedDict."""
    if dataclasses.is_dataclass(tp):
        return [
            (f.name, f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(tp)
            if f.init
        ]
    required: frozenset[str] = getattr(tp, "__required_keys__", frozenset())
    return [(name, name in required) for name in typing.get_type_hints(tp)]


def _error(loc: list[Any], msg: str, type_: str) -> ErrorDict:
    return {"loc": list(loc), "msg": msg, "type": type_}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def plain_json_schema(tp: Any) -> dict[str, Any]:
    """A JSON Schema for the field types above (``{}``, anything, for others)."""
    if _is_record(tp):
        hints = typing.get_type_hints(tp)
        fields = _fields(tp)
        return {
            "title": tp.__name__,
            "type": "object",
            "properties": {name: plain_json_schema(hints.get(name, Any)) for name, _ in fields},
            "required": [name for name, required in fields if required],
        }
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Union or origin is types.UnionType:
        return {"anyOf": [plain_json_schema(option) for option in args]}
    if origin is list or tp is list:
        return {"type": "array", "items": plain_json_schema(args[0]) if args else {}}
    if origin is dict or tp is dict:
        extra = plain_json_schema(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": extra}
    scalar = _SCALARS.get(tp)
    return {"type": scalar[0]} if scalar is not None else {}
