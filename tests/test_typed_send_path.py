"""``to_message`` (every ``ws.send`` of something other than str or bytes) takes
exact types and the encoder already chosen for a type first: the results are
those of the isinstance rules, subclasses included."""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict

import msgspec
import pydantic
import pytest

from axeom._messages import to_message


class Point(msgspec.Struct):
    x: int
    y: int


class Model(pydantic.BaseModel):
    x: int


@dataclasses.dataclass
class Data:
    x: int


class Text(str):
    pass


class Raw(bytes):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hi", "hi"),
        (b"\x00", b"\x00"),
        (Text("hi"), "hi"),
        (Raw(b"\x01"), b"\x01"),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"ab"), b"ab"),
        ({"a": 1}, '{"a":1}'),
        ([1, 2], "[1,2]"),
        (OrderedDict(a=1), '{"a":1}'),
        (Items([1]), "[1]"),
        (Point(1, 2), '{"x":1,"y":2}'),
        (Model(x=1), '{"x":1}'),
        (Data(x=1), '{"x":1}'),
    ],
)
def test_to_message_twice_gives_the_same(value: object, expected: str | bytes) -> None:
    """The first call (no encoder cached yet) and the second agree, with the type kept."""
    for _ in range(2):
        message = to_message(value)
        assert message == expected and isinstance(message, type(expected))
    if isinstance(expected, str) and expected.startswith(("{", "[")):
        json.loads(expected)


def test_to_message_refuses_other_types() -> None:
    """Anything else is still a TypeError naming the type."""
    with pytest.raises(TypeError, match="set"):
        to_message({1})
