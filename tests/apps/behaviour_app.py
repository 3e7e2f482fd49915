"""App for the runtime behaviour suite (tests/behaviour/): one route per behaviour,
written once and served by every runtime. Handlers use no loop's primitives
except through ``pause`` (which asks which loop runs it), so the same file runs
on trio and on asyncio.

``make_app(record)`` builds a fresh one (the in-memory runtime builds one per
test); ``app`` is the one a server process imports, recording close handlers
under the folder named by ``AXEOM_BEHAVIOUR_RECORD``."""

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import pydantic
import trio

from axeom import Axeom, HTTPError, Response
from axeom.ws import ws_plugin

RECORD_ENV = "AXEOM_BEHAVIOUR_RECORD"
# The port of a plain TCP echo server the tests start, for /aio to reach with
# an asyncio client.
ECHO_PORT_ENV = "AXEOM_BEHAVIOUR_ECHO_PORT"
# Small enough that a test message of a few KiB goes over it.
SMALL_MESSAGE_LIMIT = 1024
# With FLOOD_CHUNK: two sends queue, the third goes over, the rest drop.
FLOOD_LIMIT = 1000
FLOOD_CHUNK = 400
FLOOD_SENDS = 5
# A limit far below what /flow sends, so `await ws.send` has to wait.
FLOW_LIMIT = 16 * 1024
GOOD_ORIGIN = "https://good.example"
# Timers short enough for a test to wait them out (the defaults are 120 s and 20 s).
IDLE_TIMEOUT = 0.3
PING_INTERVAL = 0.1
# Idle timeout of the keepalive route: many ping intervals, so that a client
# slowed by a loaded machine still answers in time.
KEEPALIVE_IDLE_TIMEOUT = 2.0
# Message rate limits: three messages, then none for ten minutes (no token
# comes back during a test); bytes: 100, then none.
RATE_LIMIT = (3, 600)
BYTE_RATE_LIMIT = (100, 600)


async def pause(seconds: float) -> None:
    """Sleep on whichever loop runs the handler (a test of ordering needs a
    handler that really yields, on every runtime)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


def _running_loop() -> str:
    """The loop the calling code runs on: "asyncio" (uvloop included) or "trio"."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"
    return "asyncio"


def make_app(record: Path | None) -> Axeom:
    app = Axeom().use(ws_plugin())

    @app.on_start
    async def open_resource():
        """Once per process that runs app code, on its loop: what it makes
        reaches handlers (`ws.resource`) and hooks (`ctx.resource`)."""
        app.decorate(resource=f"resource of {os.getpid()} on {_running_loop()}")
        if record is not None:
            with open(record / f"lifespan-{os.getpid()}", "a") as out:
                out.write("start\n")

    @app.on_stop
    def close_resource():
        if record is not None:
            with open(record / f"lifespan-{os.getpid()}", "a") as out:
                out.write("stop\n")

    @app.derive
    def who(ctx):
        """ws.data from the handshake; `x-deny: STATUS` rejects with that status."""
        deny = ctx.headers.get("x-deny")
        if deny is not None:
            raise HTTPError(int(deny), f"denied by derive: {deny}")
        return {"user": ctx.headers.get("x-user", "anon"), "tag": ctx.query.get("tag", "")}

    @app.on_before_handle
    def teapot(ctx):
        """A hook that ends the handshake with a response of its own."""
        if ctx.headers.get("x-hook") == "teapot":
            return Response(418, [("content-type", "text/plain")], b"short and stout")
        if ctx.headers.get("x-hook") == "resource":
            return Response(409, [("content-type", "text/plain")], ctx.resource.encode())
        return None

    def on_close(ws, code, reason):
        tag = ws.data["tag"]
        if record is not None and tag:
            with open(record / tag, "a") as out:
                out.write(f"{code} {reason}\n")

    def on_echo(ws, msg):
        if msg == "pid":
            ws.send(f"pid {os.getpid()}")
        elif msg == "id":
            ws.send(f"id {ws.id}")
        elif msg == "data":
            ws.send(ws.data)
        elif msg == "resource":
            ws.send(ws.resource)
        elif msg == "raise":
            raise RuntimeError("a handler bug (the client must not see this text)")
        elif msg == "close":
            ws.close(4001, "closed by the server")
        elif isinstance(msg, str) and msg.startswith("send "):
            target, _, text = msg[5:].partition(" ")
            app.send(target, text)
        else:
            ws.send(msg)

    app.ws("/echo", message=on_echo, close=on_close)
    app.ws("/small", message=on_echo, close=on_close, max_message_size=SMALL_MESSAGE_LIMIT)
    app.ws("/origin", message=on_echo, allowed_origins=[GOOD_ORIGIN])
    app.ws("/idle", message=on_echo, idle_timeout=IDLE_TIMEOUT, ping_interval=None)
    app.ws(
        "/keepalive",
        message=on_echo,
        idle_timeout=KEEPALIVE_IDLE_TIMEOUT,
        ping_interval=PING_INTERVAL,
    )
    app.ws("/proto", message=on_echo, subprotocols=["chat.v2", "chat.v1"])

    @app.ws("/slow")
    class Slow:
        """Records how many of its socket's handlers run at once."""

        def __init__(self):
            self.running = 0
            self.most = 0

        async def message(self, ws, msg):
            self.running += 1
            self.most = max(self.most, self.running)
            if msg == "most":
                ws.send(f"most {self.most}")
            else:
                await pause(0.005)
                ws.send(msg)
            self.running -= 1

    @app.ws("/flood", backpressure_limit=FLOOD_LIMIT)
    class Flood:
        """One message fills the outbox past the limit; `drain` reports the statuses."""

        def __init__(self):
            self.statuses = []

        def message(self, ws, msg):
            for _ in range(FLOOD_SENDS):
                self.statuses.append(ws.send(bytes(FLOOD_CHUNK)).name)

        def drain(self, ws):
            ws.send("drained " + " ".join(self.statuses))

    async def flow(ws, msg):
        """`await ws.send` of many chunks: none dropped, all in order."""
        count, size = (int(n) for n in msg.split())
        statuses = [await ws.send(i.to_bytes(4, "big") + bytes(size - 4)) for i in range(count)]
        ws.send(f"flowed {sum(s.name == 'DROPPED' for s in statuses)} dropped")

    app.ws("/flow", message=flow, backpressure_limit=FLOW_LIMIT)

    async def on_room_open(ws):
        """In effect on every worker before the first message is handled."""
        await ws.subscribe(ws.params["topic"])

    def on_room_message(ws, msg):
        if msg == "pid":
            ws.send(f"pid {os.getpid()}")
        else:
            ws.publish(ws.params["topic"], msg)

    app.ws("/room/:topic", open=on_room_open, message=on_room_message)

    # -- per-socket message rate limits (route options) ---------------------------
    app.ws("/rate-close", message=on_echo, rate_limit=RATE_LIMIT)
    app.ws("/byte-rate", message=on_echo, byte_rate_limit=BYTE_RATE_LIMIT)

    @app.ws("/rate-drop", rate_limit=RATE_LIMIT, on_rate_limit="drop")
    class RateDrop:
        """Echoes, and records at its close which messages it was given."""

        def __init__(self):
            self.handled = []

        def message(self, ws, msg):
            self.handled.append(msg)
            ws.send(msg)

        def close(self, ws, code, reason):
            if record is not None:
                with open(record / ws.data["tag"], "a") as out:
                    out.write(" ".join(self.handled) + "\n")

    # -- end of the message rate limit routes ---------------------------------------

    @app.ws("/aio")
    async def through_asyncio(ws, msg):
        """Awaits an asyncio client (a TCP round trip to the tests' echo server):
        answers on an asyncio runtime, fails (1011) on trio."""
        reader, writer = await asyncio.open_connection("127.0.0.1", int(os.environ[ECHO_PORT_ENV]))
        try:
            writer.write(msg.encode() + b"\n")
            ws.send("via asyncio: " + (await reader.readline()).decode().strip())
        finally:
            writer.close()
            await writer.wait_closed()

    add_typed_routes(app)
    return app


# -- typed routes (schemas, handshake validation, events):
# tests/behaviour/test_behaviour_messages_typed.py


class TypedQuery(pydantic.BaseModel):
    token: str
    limit: int = 10


class TypedHeaders(msgspec.Struct):
    x_user: str = "anon"


class Note(msgspec.Struct):
    text: str
    count: int = 1


class Say(pydantic.BaseModel):
    type: Literal["say"] = "say"
    text: str


class Add(msgspec.Struct, tag="add", tag_field="type"):
    a: int
    b: int


@dataclass
class Card:
    text: str
    count: int = 1


def add_typed_routes(app: Axeom) -> None:
    def send_objects(ws, note):
        """Sends the Note back as a msgspec Struct, a pydantic model and a
        dataclass, each twice (a type's first send picks its encoder)."""
        for _ in range(2):
            ws.send(note)
            ws.send(Say(text=note.text))
            ws.send(Card(text=note.text, count=note.count))

    app.ws("/typed-objects", body=Note, message=send_objects)

    def typed_echo(ws, note):
        """Echoes a Note, with what the handshake validated."""
        who = f"{ws.headers.x_user}/{ws.params['room']}/{ws.query.token}/{ws.query.limit}"
        ws.send(Note(text=f"{who}: {note.text}", count=note.count + 1))

    app.ws("/typed/:room", query=TypedQuery, headers=TypedHeaders, body=Note, message=typed_echo)
    app.ws("/typed-close", body=Note, on_invalid="close", message=lambda ws, n: ws.send(n))
    app.ws("/typed-msgpack", body=Note, binary="msgpack", message=lambda ws, n: ws.send(n))

    def count_invalid(ws, raw, errors):
        ws.send(f"invalid {len(raw)} {errors[0]['loc']}")

    app.ws("/typed-custom", body=Note, on_invalid=count_invalid, message=lambda ws, n: ws.send(n))

    events = app.ws("/events", events=[Say, Add])

    @events.on(Say)
    def said(ws, say):
        ws.send({"said": say.text})

    @events.on(Add)
    async def added(ws, add):
        await pause(0.001)  # a reply after a real suspension
        return add.a + add.b

    @app.ws("/events-class", events=Say | Add)
    class Calculator:
        def on_say(self, ws, say):
            return f"heard {say.text}"

        def on_add(self, ws, add):
            return {"sum": add.a + add.b}


_record = os.environ.get(RECORD_ENV)
app = make_app(Path(_record) if _record else None)
