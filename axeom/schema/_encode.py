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

__all__ = ["encode_object", "encoders", "to_builtins"]

# The encoder of each object type met so far (read first by ``to_message``).
encoders: dict[type, Callable[[Any], str]] = {}
_PLAIN = (str, int, float, bool, type(None), dict, list)


def encode_object(value: Any) -> str:
    """JSON text for ``value``; ``TypeError`` for a type no encoder knows."""
    encode = encoders.get(type(value))
    if encode is None:
        encode = encoders[type(value)] = _encoder_for(type(value))
    return encode(value)


def _encoder_for(cls: type) -> Callable[[Any], str]:
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(cls, msgspec.Struct):
        return _msgspec_encoder()
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        return lambda value: value.model_dump_json()  # type: ignore[no-any-return]
    if dataclasses.is_dataclass(cls):
        try:
            return _msgspec_encoder()
        except ImportError:
            return _dataclass_json
    raise TypeError(
        f"a message is str, bytes-like, dict, list, a pydantic model, a msgspec Struct "
        f"or a dataclass, not {cls.__name__}"
    )


def _msgspec_encoder() -> Callable[[Any], str]:
    import msgspec

    encode = msgspec.json.Encoder().encode
    return lambda value: encode(value).decode()  # type: ignore[no-any-return]


def _dataclass_json(value: Any) -> str:
    return json.dumps(dataclasses.asdict(value), separators=(",", ":"))


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
