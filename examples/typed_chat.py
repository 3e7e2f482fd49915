"""A chat with typed events: ``axeom run examples/typed_chat.py:app``.

Connect to ``ws://127.0.0.1:8000/chat/lobby?user=ann`` and send JSON events::

    {"type": "say", "text": "hello"}          everyone in the room gets a "said"
    {"type": "members", "id": 1}             a reply: {"type": "reply", "id": 1, "data": ...}
    {"type": "say"}                          invalid (no text): an "error" message, socket open

The handshake is typed too: a room name that is not lower-case letters,
digits and dashes, or a missing ``user``, is answered 400 with a JSON body
naming the field. The schemas are msgspec Structs; a pydantic model, a
dataclass or a JSON-Schema dict would do the same. ``GET /asyncapi.json`` (or
``axeom asyncapi examples/typed_chat.py:app --yaml``) describes it all as an
AsyncAPI 3.0 document.
"""

from typing import Annotated

import msgspec

from axeom import Axeom
from axeom.ws import WebSocket, ws_plugin

Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]{1,32}$")]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Room(msgspec.Struct):
    """The path's ``:room``."""

    room: Name


class User(msgspec.Struct):
    """The query string: ``?user=ann``."""

    user: Name


class Say(msgspec.Struct, tag="say"):
    """Say something to the room."""

    text: Text


class MembersQuery(msgspec.Struct, tag="members"):
    """Ask how many are in the room (send it with an ``id`` to get the reply)."""


class Members(msgspec.Struct):
    """The reply to ``members``: counted across every worker, a moment behind."""

    room: str
    count: int


class Said(msgspec.Struct, tag="said"):
    """What everyone in the room receives."""

    user: str
    text: str


app = Axeom().use(ws_plugin(publish_to_self=True))


async def join(ws: WebSocket) -> None:
    """Enter the room: awaited, so that a message said right after reaches us."""
    await ws.subscribe(ws.params.room)


chat = app.ws(
    "/chat/:room",
    open=join,
    params=Room,
    query=User,
    events=[Say, MembersQuery],
    send=Said,
)


@chat.on(Say)
def say(ws: WebSocket, event: Say) -> None:
    ws.publish(ws.params.room, Said(user=ws.query.user, text=event.text))


@chat.on(MembersQuery, reply=Members)
def members(ws: WebSocket, event: MembersQuery) -> Members:
    room = ws.params.room
    return Members(room=room, count=ws.app.subscriber_count(room))


app.asyncapi_route("/asyncapi.json", title="Typed chat")
