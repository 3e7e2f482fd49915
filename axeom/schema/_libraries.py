"""Adapters for the schema libraries: pydantic, msgspec, jsonschema, ``parse`` objects.

Each module is imported only here, when a user's type comes from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ._base import Decoder, Schema, inline_top_ref
from ._failure import ErrorDict, ValidationFailure, json_invalid, one_error, too_deep

__all__ = ["JSONSchemaDict", "MsgspecSchema", "ParserSchema", "PydanticSchema"]


class PydanticSchema(Schema):
    """A pydantic ``BaseModel`` subclass (or a ``TypeAdapter`` over another type)."""

    kind = "pydantic"

    def __init__(self, model: Any, name: str | None = None, adapter: Any = None) -> None:
        import pydantic

        super().__init__(model, name or str(getattr(model, "__name__", "Message")))
        self._error = pydantic.ValidationError
        if adapter is None and isinstance(model, type) and issubclass(model, pydantic.BaseModel):
            self._validate = model.model_validate
            self._validate_json = model.model_validate_json
            self._schema: Callable[[], dict[str, Any]] = model.model_json_schema
            self._model: Any = model
        else:
            adapter = adapter or pydantic.TypeAdapter(model)
            self._validate = adapter.validate_python
            self._validate_json = adapter.validate_json
            self._schema = adapter.json_schema
            self._dump = adapter.dump_python
            self._model = None

    def validate(self, raw: Any) -> Any:
        try:
            return self._validate(raw)
        except self._error as exc:
            raise self.failure(exc) from None

    def json_decoder(self) -> Decoder:
        from pydantic_core import SchemaValidator

        validator = getattr(self._model, "__pydantic_validator__", None)
        if isinstance(validator, SchemaValidator):
            # What model_validate_json calls with its defaults: a Python frame less
            # per message. (Not while the model waits for model_rebuild: a mock.)
            return validator.validate_json
        return self._validate_json  # type: ignore[no-any-return]

    def json_schema(self) -> dict[str, Any]:
        return self._schema()

    def to_builtins(self, value: Any) -> Any:
        if self._model is not None:
            return value.model_dump(mode="json") if isinstance(value, self._model) else value
        return self._dump(value, mode="json")

    def encode_json(self, value: Any) -> str:
        if self._model is not None and isinstance(value, self._model):
            return value.model_dump_json()  # type: ignore[no-any-return]
        return super().encode_json(value)

    def failure(self, exc: BaseException) -> ValidationFailure:
        if isinstance(exc, self._error):
            return ValidationFailure(
                [
                    {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors(include_url=False)
                ]
            )
        return super().failure(exc)


# msgspec says where in one phrase: "Expected `int`, got `str` - at `$.items[0].id`".
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?) - at `\$(?P<path>[^`]*)`$")
_MSGSPEC_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MSGSPEC_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


class MsgspecSchema(Schema):
    """A msgspec ``Struct`` subclass; also dataclasses and TypedDicts when
    msgspec is installed (it validates them as fast as Structs)."""

    kind = "msgspec"

    def __init__(self, type_: Any, name: str | None = None, kind: str | None = None) -> None:
        import msgspec

        super().__init__(type_, name or str(getattr(type_, "__name__", "Message")))
        if kind is not None:
            self.kind = kind
        self._msgspec = msgspec
        self._type = type_
        self._error = msgspec.ValidationError
        self._encode = msgspec.json.Encoder().encode

    def validate(self, raw: Any) -> Any:
        if isinstance(self._type, type) and type(raw) is self._type:
            return raw
        try:
            return self._msgspec.convert(raw, self._type)
        except self._error as exc:
            raise self.failure(exc) from None
        except RecursionError:
            raise too_deep() from None

    def validate_strings(self, raw: Any) -> Any:
        try:
            return self._msgspec.convert(raw, self._type, strict=False)
        except self._error as exc:
            raise self.failure(exc) from None
        except RecursionError:
            raise too_deep() from None

    def json_decoder(self) -> Decoder:
        return self._msgspec.json.Decoder(self._type).decode  # type: ignore[no-any-return]

    def msgpack_decoder(self) -> Decoder:
        return self._msgspec.msgpack.Decoder(self._type).decode  # type: ignore[no-any-return]

    def json_schema(self) -> dict[str, Any]:
        return inline_top_ref(self._msgspec.json.schema(self._type))

    def to_builtins(self, value: Any) -> Any:
        return self._msgspec.to_builtins(value)

    def encode_json(self, value: Any) -> str:
        return self._encode(value).decode()  # type: ignore[no-any-return]

    def failure(self, exc: BaseException) -> ValidationFailure:
        if isinstance(exc, self._error):
            return ValidationFailure([_msgspec_error(str(exc))])
        return super().failure(exc)


def _msgspec_error(text: str) -> ErrorDict:
    loc: list[Any] = []
    at = _MSGSPEC_AT.match(text)
    if at is not None:
        text = at["msg"]
        loc = [int(i) if n == "" else n for n, i in _MSGSPEC_PART.findall(at["path"])]
    missing = _MSGSPEC_MISSING.match(text)
    if missing is not None:
        return {"loc": [*loc, missing["field"]], "msg": "Field required", "type": "missing"}
    type_ = "type_error" if text.startswith("Expected") else "value_error"
    return {"loc": loc, "msg": text, "type": type_}


class JSONSchemaDict(Schema):
    """A JSON-Schema dict, checked with the ``jsonschema`` library (its
    validator class for the schema's ``$schema``, built once)."""

    kind = "jsonschema"

    def __init__(self, schema: dict[str, Any], name: str | None = None) -> None:
        try:
            import jsonschema
        except ImportError:
            raise ImportError(
                "a JSON-Schema dict as a schema needs the jsonschema library: "
                "pip install 'axeom[jsonschema]'"
            ) from None
        super().__init__(schema, name or str(schema.get("title") or "Message"))
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise TypeError(f"invalid JSON Schema: {exc.message}") from None
        self._validator = cls(schema)

    def validate(self, raw: Any) -> Any:
        validator = self._validator
        try:
            if validator.is_valid(raw):  # the common case, without building errors
                return raw
            errors = [_jsonschema_error(e) for e in validator.iter_errors(raw)]
        except RecursionError:  # a recursive schema ($ref) follows the nesting
            raise too_deep() from None
        raise ValidationFailure(errors)

    def json_schema(self) -> dict[str, Any]:
        return dict(self.source)


def _jsonschema_error(error: Any) -> ErrorDict:
    loc = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # jsonschema points at the object; point at the missing key, as the others do.
        missing = [p for p in error.validator_value if p not in error.instance]
        named = [p for p in missing if error.message.startswith(repr(p))]
        if named:
            loc.append(named[0])
    return {"loc": loc, "msg": error.message, "type": str(error.validator)}


# The method names a "parse-style" validator object may have, in lookup order.
PARSER_METHODS = ("parse", "validate")


class ParserSchema(Schema):
    """Any object with ``parse(value)`` or ``validate(value)``: it returns the
    valid value or raises. What it raises becomes the error: a
    ``ValidationFailure`` as it is, anything with an ``errors()`` method
    returning pydantic-style dicts read as those, any other exception as one
    error whose ``msg`` is its text. Its JSON Schema is its ``json_schema()``
    (a method) or ``__json_schema__`` (a dict) if it has one, else ``{}``."""

    kind = "parser"
    decode_errors = (Exception,)

    def __init__(self, obj: Any, method: str, name: str | None = None) -> None:
        default = getattr(obj, "__name__", None) or type(obj).__name__
        super().__init__(obj, name or str(getattr(obj, "title", None) or default))
        self._parse = getattr(obj, method)

    def validate(self, raw: Any) -> Any:
        try:
            return self._parse(raw)
        except Exception as exc:
            raise self.failure(exc) from None

    def json_schema(self) -> dict[str, Any]:
        made = getattr(self.source, "json_schema", None)
        if callable(made):
            return dict(made())
        given = getattr(self.source, "__json_schema__", None)
        return dict(given) if isinstance(given, dict) else {}

    def failure(self, exc: BaseException) -> ValidationFailure:
        if isinstance(exc, ValidationFailure):
            return exc
        if isinstance(exc, json.JSONDecodeError | RecursionError):
            return json_invalid(exc)
        errors = getattr(exc, "errors", None)
        if callable(errors):
            try:
                return ValidationFailure(
                    [
                        {"loc": list(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])}
                        for e in errors()
                    ]
                )
            except (TypeError, KeyError):
                pass
        return one_error(str(exc) or type(exc).__name__, type(exc).__name__)
