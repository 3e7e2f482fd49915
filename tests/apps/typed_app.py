"""A typed app for process-tree tests: the handshake validated in the acceptor
and again in the worker, typed messages, events with replies."""

from typing import Literal

import msgspec
import pydantic

from axeom import Axeom
from axeom.ws import ws_plugin


class Query(pydantic.BaseModel):
    token: str
    limit: int = 10


class Note(msgspec.Struct):
    text: str


class Say(pydantic.BaseModel):
    type: Literal["say"] = "say"
    text: str


class Add(msgspec.Struct, tag="add", tag_field="type"):
    a: int
    b: int


app = Axeom().use(ws_plugin())


def echo(ws, note):
    """What the worker's ws sees: the validated query and the typed message."""
    ws.send(Note(text=f"{ws.query.token}/{ws.query.limit * 2}/{ws.params['room']}: {note.text}"))


app.ws("/notes/:room", query=Query, body=Note, message=echo)


@app.ws("/calc", events=[Say, Add])
class Calc:
    def on_say(self, ws, say):
        ws.send(Note(text=say.text))

    def on_add(self, ws, add):
        return add.a + add.b
