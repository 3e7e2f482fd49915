"""Typed echo apps: the per-message cost of validation, one app per schema library.

``axeom run bench/apps/typed_echo.py:msgspec_app`` (or ``pydantic_app``,
``dataclass_app``, ``jsonschema_app``): the route's ``body`` is the same
three-field message in each library; the handler sends the validated value
back, which the route encodes as JSON again. The untyped peer is
``bench/apps/echo.py`` (the ``axeom`` server), which sends the JSON text back
as it came: the ratio typed / untyped is what decoding, validating and
encoding cost per message. Settings are those of ``bench/apps/echo.py``.
The message is ``scenarios.JSON_MESSAGE``; compact JSON in field order, so the
echo is byte for byte the message sent (the load generator checks its size).
"""

from dataclasses import dataclass
from typing import Any

import msgspec
import pydantic

from axeom import Axeom
from axeom.ws import WebSocket, ws_plugin


class EchoStruct(msgspec.Struct):
    room: str
    text: str
    seq: int


class EchoModel(pydantic.BaseModel):
    room: str
    text: str
    seq: int


@dataclass
class EchoData:
    room: str
    text: str
    seq: int


ECHO_SCHEMA: dict[str, Any] = {
    "title": "Echo",
    "type": "object",
    "properties": {
        "room": {"type": "string"},
        "text": {"type": "string"},
        "seq": {"type": "integer"},
    },
    "required": ["room", "text", "seq"],
}


def message(ws: WebSocket, msg: Any) -> None:
    """Send the validated message back (encoded as JSON by the route)."""
    ws.send(msg)


def _app(body: Any) -> Axeom:
    app = Axeom().use(
        ws_plugin(
            max_message_size=2 * 2**20, compression=False, ping_interval=None, idle_timeout=None
        )
    )
    app.ws("/echo", message=message, body=body)
    return app


msgspec_app = _app(EchoStruct)
pydantic_app = _app(EchoModel)
dataclass_app = _app(EchoData)
jsonschema_app = _app(ECHO_SCHEMA)
