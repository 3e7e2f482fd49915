"""``encode_object``: JSON text for a model, Struct or dataclass instance.

``ws.send(obj)`` and ``publish`` use it for what is not str, bytes, dict or
list. The encoder is chosen once per type and cached: a msgspec Struct by
msgspec's encoder (the fastest), a pydantic model by its own
``model_dump_json``, a dataclass by msgspec when installed, else ``json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["encode_object", "encoders", "json_encoders", "to_builtins"]

# The encoder of each object type met so far (read first by ``to_message``):
# JSON text. dict and list are there from the start, so that their messages
# skip ``to_message``'s isinstance chain too.
encoders: dict[type, Callable[[Any], str]] = {}
# The same types' encoders to JSON as UTF-8 bytes, read first by ``ws.send``:
# it sends them as a text frame as they are, where a str would be encoded to
# UTF-8 again by the frame layer (msgspec and pydantic both make bytes first).
json_encoders: dict[type, Callable[[Any], bytes]] = {}
_PLAIN = (str, int, float, bool, type(None), dict, list)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


encoders[dict] = encoders[list] = _json_dumps


def encode_object(value: Any) -> str:
    """JSON text for ``value``; ``TypeError`` for a type no encoder knows.
    Its type's encoders (to text and to bytes) are kept for the next time."""
    cls = type(value)
    encode = encoders.get(cls)
    if encode is None:
        to_json = json_encoders[cls] = _encoder_for(cls)
        encode = encoders[cls] = _as_text(to_json)
    return encode(value)


def _as_text(to_json: Callable[[Any], bytes]) -> Callable[[Any], str]:
    return lambda value: to_json(value).decode()  # type: ignore[no-any-return]


def _encoder_for(cls: type) -> Callable[[Any], bytes]:
    """JSON bytes for an instance of ``cls``, by the fastest encoder at hand:
    a bound method of the library, not a Python function around it."""
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(cls, msgspec.Struct):
        return _msgspec_encoder()
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        # What model_dump_json() calls, with the same defaults, before its .decode().
        return cls.__pydantic_serializer__.to_json  # type: ignore[attr-defined,no-any-return]
    if dataclasses.is_dataclass(cls):
        try:
            return _msgspec_encoder()
        except ImportError:
            return _dataclass_json
    raise TypeError(
        f"a message is str, bytes-like, dict, list, a pydantic model, a msgspec Struct "
        f"or a dataclass, not {cls.__name__}"
    )


def _msgspec_encoder() -> Callable[[Any], bytes]:
    import msgspec

    return msgspec.json.Encoder().encode


def _dataclass_json(value: Any) -> bytes:
    return json.dumps(dataclasses.asdict(value), separators=(",", ":")).encode()


def to_builtins(value: Any) -> Any:
    """``value`` as plain JSON-ready data: a model, Struct or dataclass (also
    inside dicts and lists) as a dict; plain data as it is."""
    if isinstance(value, _PLAIN) and not isinstance(value, dict | list):
        return value
    if isinstance(value, dict):
        return {key: to_builtins(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_builtins(item) for item in value]
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_builtins(dataclasses.asdict(value))
    return value
