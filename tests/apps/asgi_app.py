"""The README quick start, plus the routes the ASGI server tests need: served
by uvicorn, hypercorn, granian and daphne as ``asgi_app:app``, and mounted
under ``/rt`` by ``asgi_mounts.py``."""

import asyncio
import json

import sniffio

from axeom import Axeom, Forbidden, Unauthorized
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())
OPEN_ROUTES = {"/health", "/publish/:topic", "/firehose/sent"}


@app.derive  # handshake phase: runs before the upgrade
async def who(ctx):
    if ctx.route in OPEN_ROUTES:
        return None  # the HTTP routes are open
    if ctx.query.get("deny") == "1":
        raise Forbidden("denied by a hook")
    user = ctx.headers.get("x-user")
    if user is None:
        raise Unauthorized("send x-user")  # HTTP 401, the socket never opens
    ctx.set_header("x-axeom", "yes")
    return {"user": user}  # becomes ws.data


def on_message(ws, msg):
    ws.send(f"{ws.data['user']} in {ws.params['room']}: {msg}")


app.ws("/chat/:room", open=lambda ws: ws.send("welcome"), message=on_message)


def whoami(ws):
    ws.send(json.dumps({"data": ws.data, "path": ws.path, "subprotocol": ws.subprotocol}))


app.ws("/whoami", open=whoami, subprotocols=["v2", "v1"])


def boom(ws, msg):
    if msg == "boom":
        raise RuntimeError("handler failure (expected by the test)")
    ws.send(f"ok {msg}")


app.ws("/boom", message=boom)


async def sleep(seconds):
    """Whatever loop the server runs the app on."""
    if sniffio.current_async_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


async def slow_echo(ws, msg):
    await sleep(0.002 if int(msg) % 7 == 0 else 0)
    await ws.send(msg)


app.ws("/ordered", message=slow_echo)


async def join(ws):
    await ws.subscribe(ws.params["room"])
    ws.send("joined")


def say(ws, msg):
    ws.publish(ws.params["room"], f"{ws.data['user']}: {msg}")


app.ws("/room/:room", open=join, message=say)


def big(ws, msg):
    ws.send(f"got {len(msg)}")


app.ws("/big", message=big, max_message_size=1000)

app.get("/health", lambda ctx: "ok")
app.get("/publish/:topic", lambda ctx: {"delivered": app.publish(ctx.params["topic"], "from http")})

# A socket whose open handler streams FIREHOSE_COUNT awaited sends: with a
# client that does not read, how far it gets shows whether the server's send
# waits for its transport (flow control) or buffers without limit.
FIREHOSE_COUNT = 400
FIREHOSE_CHUNK = b"x" * (128 * 1024)
firehose_sent = {"count": 0}


async def firehose(ws):
    firehose_sent["count"] = 0
    for _ in range(FIREHOSE_COUNT):
        await ws.send(FIREHOSE_CHUNK)
        firehose_sent["count"] += 1


app.ws("/firehose", open=firehose, backpressure_limit=256 * 1024)
app.get("/firehose/sent", lambda ctx: firehose_sent)


async def node_open(ws):
    """Every socket of /node hears "everyone", whichever process or node it is on."""
    await ws.subscribe("everyone")
    ws.send(ws.id)


def node_message(ws, msg):
    kind, _, rest = msg.partition(":")
    if kind == "pub":
        app.publish("everyone", rest)
    elif kind == "to":
        target, _, text = rest.partition(":")
        app.send(target, text)


app.ws("/node", open=node_open, message=node_message)
