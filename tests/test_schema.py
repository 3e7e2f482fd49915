"""axeom.schema: every kind of schema adapts to one interface and one error shape."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any, Literal, TypedDict

import msgpack
import msgspec
import pydantic
import pytest

from axeom.schema import Schema, ValidationFailure, adapt, encode_object
from axeom.schema._plain import PlainSchema


class PydanticPoint(pydantic.BaseModel):
    x: int
    y: int = 0


class MsgspecPoint(msgspec.Struct):
    x: int
    y: int = 0


@dataclasses.dataclass
class DataPoint:
    x: int
    y: int = 0


class DictPoint(TypedDict):
    x: int
    y: int


JSON_POINT = {
    "title": "JsonPoint",
    "type": "object",
    "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
    "required": ["x"],
}


class ParsePoint:
    """A hand-written validator with a ``parse`` method."""

    @staticmethod
    def parse(value: Any) -> dict[str, int]:
        if not isinstance(value, dict) or not isinstance(value.get("x"), int):
            raise ValueError("x must be an integer")
        return {"x": value["x"], "y": value.get("y", 0)}


class ValidatePoint:
    """A validator instance with a ``validate`` method that keeps its own locations."""

    def validate(self, value: Any) -> Any:
        if "x" not in value:
            raise ValidationFailure([{"loc": ["x"], "msg": "needed", "type": "missing"}])
        return value


KINDS = {
    "pydantic": PydanticPoint,
    "msgspec": MsgspecPoint,
    "dataclass": DataPoint,
    "typeddict": DictPoint,
    "jsonschema": JSON_POINT,
    "parser": ParsePoint,
}


def kind_name(kind: str) -> str:
    return {"jsonschema": "JsonPoint", "parser": "ParsePoint"}.get(kind) or KINDS[kind].__name__


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_validates_and_names_itself(kind: str) -> None:
    """Each kind adapts, accepts a valid value and says which adapter it used."""
    schema = adapt(KINDS[kind])
    assert isinstance(schema, Schema)
    assert schema.kind == kind
    value = schema.validate({"x": 1, "y": 2})
    assert schema.to_builtins(value) == {"x": 1, "y": 2}
    assert json.loads(schema.encode_json(value)) == {"x": 1, "y": 2}
    assert schema.name == kind_name(kind)


@pytest.mark.parametrize("kind", list(KINDS))
def test_one_error_shape_for_every_kind(kind: str) -> None:
    """A wrong field is reported as a list of {loc, msg, type}, loc pointing at it."""
    schema = adapt(KINDS[kind])
    with pytest.raises(ValidationFailure) as failed:
        schema.validate({"x": "one"})
    errors = failed.value.errors
    assert errors and all(set(error) == {"loc", "msg", "type"} for error in errors)
    assert all(isinstance(e["msg"], str) and isinstance(e["type"], str) for e in errors)
    if kind != "parser":  # a parse function says what it says, with no location
        assert errors[0]["loc"] == ["x"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "parser"])
def test_missing_field_points_at_the_field(kind: str) -> None:
    """A missing required field is located at its own name, by every library."""
    with pytest.raises(ValidationFailure) as failed:
        adapt(KINDS[kind]).validate({"y": 1})
    assert ["x"] in [error["loc"] for error in failed.value.errors]


@pytest.mark.parametrize("kind", list(KINDS))
def test_json_and_msgpack_decoders(kind: str) -> None:
    """The per-message decoders take JSON text, JSON bytes and msgpack; bad
    input is a failure in the same shape (json_invalid), not a library error."""
    schema = adapt(KINDS[kind])
    for decode, data in [
        (schema.json_decoder(), '{"x": 3, "y": 4}'),
        (schema.json_decoder(), b'{"x": 3, "y": 4}'),
        (schema.msgpack_decoder(), msgpack.packb({"x": 3, "y": 4})),
    ]:
        assert schema.to_builtins(decode(data)) == {"x": 3, "y": 4}
    with pytest.raises(ValidationFailure) as failed:
        schema.decode_json("{not json")
    if kind != "parser":
        assert failed.value.errors[0]["type"] == "json_invalid"


@pytest.mark.parametrize("kind", list(KINDS))
def test_json_schema_from_each_library(kind: str) -> None:
    """Each kind gives a JSON Schema with x an integer (the parser has none: {})."""
    generated = adapt(KINDS[kind]).json_schema()
    if kind == "parser":
        assert generated == {}
        return
    assert generated["type"] == "object"
    assert generated["properties"]["x"]["type"] == "integer"
    assert "x" in generated["required"]


def test_validate_method_and_its_own_failure() -> None:
    """An object with validate(value) adapts; a ValidationFailure it raises is kept as it is."""
    schema = adapt(ValidatePoint())
    assert schema.kind == "parser"
    with pytest.raises(ValidationFailure) as failed:
        schema.validate({})
    assert failed.value.errors == [{"loc": ["x"], "msg": "needed", "type": "missing"}]


@pytest.mark.parametrize("bad", [int, 3, "text", list[int], object()])
def test_unsupported_type_is_a_type_error_naming_the_kinds(bad: Any) -> None:
    """Anything else fails at adaptation with its type and the accepted kinds."""
    with pytest.raises(TypeError, match=r"cannot use .* as a schema: give a pydantic model"):
        adapt(bad)


def test_invalid_json_schema_fails_at_adaptation() -> None:
    """A JSON-Schema dict that is not a valid schema is refused when adapted."""
    with pytest.raises(TypeError, match="invalid JSON Schema"):
        adapt({"type": "no-such-type"})


def test_strings_are_converted_for_the_handshake() -> None:
    """Query values arrive as strings: msgspec and pydantic convert "5" to 5."""
    for kind in ("pydantic", "msgspec", "dataclass"):
        assert adapt(KINDS[kind]).validate_strings({"x": "5"}).x == 5


def test_const_names_an_event() -> None:
    """The one value a discriminator field allows, from each library's schema."""

    class Say(pydantic.BaseModel):
        type: Literal["say"] = "say"

    class Add(msgspec.Struct, tag="add", tag_field="type"):
        a: int

    assert adapt(Say).const("type") == "say"
    assert adapt(Add).const("type") == "add"
    assert adapt({"properties": {"type": {"const": "ping"}}}).const("type") == "ping"
    assert adapt(DataPoint).const("type") is None


def test_plain_validator_without_libraries() -> None:
    """Axeom's own small validator (no msgspec, no pydantic) checks plain field
    types, nested lists and optional fields, in the same error shape."""

    @dataclasses.dataclass
    class Item:
        name: str
        tags: list[str]
        size: float | None = None
        kind: Literal["a", "b"] = "a"

    schema = PlainSchema(Item, "dataclass")
    assert schema.validate({"name": "n", "tags": ["t"], "size": 2}) == Item("n", ["t"], 2.0)
    with pytest.raises(ValidationFailure) as failed:
        schema.validate({"name": 1, "tags": ["t", 2], "kind": "c"})
    assert [e["loc"] for e in failed.value.errors] == [["name"], ["tags", 1], ["kind"]]
    assert schema.json_schema()["properties"]["size"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}]
    }


def test_no_library_imported_until_a_type_needs_it() -> None:
    """Importing Axeom (and adapting a dict with jsonschema) imports neither
    pydantic nor msgspec: they are the user's libraries."""
    code = (
        "import sys, axeom, axeom.schema, axeom.ws\n"
        "axeom.schema.adapt({'type': 'object'})\n"
        "print(sorted(m for m in ('pydantic', 'msgspec') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_encode_object() -> None:
    """ws.send's encoder: models, Structs and dataclasses as JSON; others refused."""
    assert json.loads(encode_object(PydanticPoint(x=1))) == {"x": 1, "y": 0}
    assert json.loads(encode_object(MsgspecPoint(x=2))) == {"x": 2, "y": 0}
    assert json.loads(encode_object(DataPoint(x=3))) == {"x": 3, "y": 0}
    with pytest.raises(TypeError, match="not set"):
        encode_object({1})


class AliasedModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)
    user_id: int = pydantic.Field(alias="userId")
    note: str = "é"

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def twice(self) -> int:
        return self.user_id * 2


def test_encoded_bytes_are_what_each_library_makes() -> None:
    """The UTF-8 bytes ``ws.send`` sends for a model are ``model_dump_json()``'s
    (aliases, computed fields, non-ASCII as it is), for a Struct or dataclass
    msgspec's; the text encoder is the same bytes as str."""
    from axeom.schema._encode import json_encoders

    model = AliasedModel(user_id=7)
    for value, expected in [
        (model, model.model_dump_json().encode()),
        (MsgspecPoint(x=2), msgspec.json.encode(MsgspecPoint(x=2))),
        (DataPoint(x=3), msgspec.json.encode(DataPoint(x=3))),
    ]:
        assert encode_object(value) == expected.decode()
        assert json_encoders[type(value)](value) == expected


def test_json_schema_dict_without_the_library_says_what_to_install() -> None:
    """Without jsonschema installed, a JSON-Schema dict fails with the extra to install."""
    code = (
        "import sys\n"
        "sys.modules['jsonschema'] = None  # as if it were not installed\n"
        "from axeom.schema import adapt\n"
        "try:\n"
        "    adapt({'type': 'object'})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'axeom[jsonschema]'" in out.stdout, out.stderr
