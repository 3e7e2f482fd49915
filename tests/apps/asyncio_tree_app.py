"""App for the process tree on asyncio/uvloop: every piece of application
code here awaits asyncio (and would fail on trio).

``on_start``/``on_stop`` record the type of the running loop and their pid
(``AXEOM_TEST_RECORD``); ``derive`` and the /echo handler talk to a TCP echo
server the test started (``AXEOM_TEST_ECHO_PORT``) with
``asyncio.open_connection``; /room obeys small commands for pub/sub and
``app.send``; /trio awaits a trio primitive (the wrong loop here).
"""

import asyncio
import os

import trio

from axeom import Axeom
from axeom.ws import ws_plugin

RECORD = os.environ.get("AXEOM_TEST_RECORD")
ECHO_PORT = int(os.environ.get("AXEOM_TEST_ECHO_PORT", "0"))
CLOSE_SLEEP = float(os.environ.get("AXEOM_TEST_CLOSE_SLEEP", "0"))

app = Axeom().use(ws_plugin())


def loop_kind() -> str:
    """What runs this code: "uvloop" or "asyncio" (raises outside asyncio)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def record(what: str) -> None:
    if RECORD:
        with open(RECORD, "a") as out:
            out.write(f"{what} {loop_kind()} {os.getpid()}\n")


async def echoed(text: str) -> str:
    """``text`` sent to the test's echo server and read back, on asyncio."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ECHO_PORT)
    try:
        writer.write(text.encode() + b"\n")
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()
        await writer.wait_closed()


@app.on_start
async def started():
    await asyncio.sleep(0.01)
    app.decorate(started_on=loop_kind())
    record("start")


@app.on_stop
async def stopped():
    await asyncio.sleep(0)
    record("stop")


@app.derive
async def through_echo(ctx):
    await asyncio.sleep(0.001)
    return {"derived": await echoed("derive"), "hook_loop": loop_kind()}


async def on_echo(ws, msg):
    await asyncio.sleep(0.001)
    reply = await echoed(msg)
    ws.send(f"{reply} {ws.data['derived']} {ws.data['hook_loop']} {loop_kind()} {os.getpid()}")


def on_plain(ws, msg):
    ws.send(msg)


async def on_room(ws, msg):
    command, _, arg = msg.partition(":")
    if command == "pid":
        ws.send(f"R:{os.getpid()}")
    elif command == "id":
        ws.send(f"R:{ws.id}")
    elif command == "sub":
        await ws.subscribe(arg)
        ws.send("R:subscribed")
    elif command == "pub":
        topic, _, text = arg.partition(":")
        await ws.publish(topic, text)
    elif command == "send":
        target, _, text = arg.partition(":")
        await app.send(target, text)


async def on_room_close(ws, code, reason):
    await asyncio.sleep(CLOSE_SLEEP)
    record("close")


async def on_trio(ws, msg):
    await trio.sleep(0)


app.ws("/echo", message=on_echo)
app.ws("/plain", message=on_plain)
app.ws("/room", message=on_room, close=on_room_close)
app.ws("/trio", message=on_trio)
