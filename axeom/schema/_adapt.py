"""``adapt``: one ``Schema`` from whatever the user's library made."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import typing
from typing import Any

from ._base import Schema
from ._libraries import PARSER_METHODS, JSONSchemaDict, MsgspecSchema, ParserSchema, PydanticSchema
from ._plain import PlainSchema

__all__ = ["ACCEPTED", "adapt", "is_typeddict"]

ACCEPTED = (
    "a pydantic model, a msgspec Struct, a dataclass, a TypedDict, a JSON-Schema dict, "
    "or an object with a parse(value) or validate(value) method"
)


def adapt(obj: Any, *, name: str | None = None) -> Schema:
    """The ``Schema`` for ``obj``, built once (at route registration).

    ``name`` overrides the title taken from ``obj`` (its class name, a JSON
    Schema's ``title``). Dataclasses and TypedDicts are validated by msgspec
    if it is installed, else by pydantic's ``TypeAdapter``, else by a small
    built-in validator (plain JSON field types); their JSON Schema comes from
    pydantic if installed, else msgspec, else the built-in generator.

    Raises:
        TypeError: ``obj`` is none of the accepted kinds (the message names
            its type and the kinds), or an invalid JSON Schema.
        ImportError: a JSON-Schema dict without the ``jsonschema`` library.
    """
    if isinstance(obj, Schema):
        return obj
    if isinstance(obj, dict):
        return JSONSchemaDict(obj, name)
    library = _library_schema(obj, name)
    if library is not None:
        return library
    if isinstance(obj, type) and (dataclasses.is_dataclass(obj) or is_typeddict(obj)):
        return _record_schema(obj, name)
    for method in PARSER_METHODS:
        if callable(getattr(obj, method, None)):
            return ParserSchema(obj, method, name)
    described = obj.__name__ if isinstance(obj, type) else f"{type(obj).__name__} {obj!r}"
    raise TypeError(f"cannot use {described} as a schema: give {ACCEPTED}")


def _library_schema(obj: Any, name: str | None) -> Schema | None:
    """A pydantic model or msgspec Struct class; their modules are looked up
    in ``sys.modules`` only (a type from them means they are imported)."""
    if not isinstance(obj, type):
        return None
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(obj, pydantic.BaseModel):
        return PydanticSchema(obj, name)
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(obj, msgspec.Struct):
        return MsgspecSchema(obj, name)
    return None


def _record_schema(obj: type, name: str | None) -> Schema:
    kind = "dataclass" if dataclasses.is_dataclass(obj) else "typeddict"
    if _installed("msgspec"):
        return _RecordSchema(obj, name, kind)
    if _installed("pydantic"):
        import pydantic

        try:
            schema = PydanticSchema(obj, name)
        except pydantic.PydanticUserError:
            return PlainSchema(obj, kind, name)  # as in _RecordSchema.json_schema
        schema.kind = kind
        return schema
    return PlainSchema(obj, kind, name)


class _RecordSchema(MsgspecSchema):
    """A dataclass or TypedDict validated by msgspec; its JSON Schema from
    pydantic when installed (richer titles), else msgspec's."""

    def json_schema(self) -> dict[str, Any]:
        if _installed("pydantic"):
            import pydantic

            try:
                return pydantic.TypeAdapter(self.source).json_schema()  # type: ignore[no-any-return]
            except pydantic.PydanticUserError:
                pass  # typing.TypedDict before Python 3.12: pydantic wants typing_extensions'
        return super().json_schema()


def _installed(module: str) -> bool:
    return module in sys.modules or importlib.util.find_spec(module) is not None


def is_typeddict(obj: Any) -> bool:
    """A TypedDict class, from ``typing`` or ``typing_extensions``."""
    if typing.is_typeddict(obj):
        return True
    extensions = sys.modules.get("typing_extensions")
    return extensions is not None and bool(extensions.is_typeddict(obj))
