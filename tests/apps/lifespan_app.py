"""App for the lifespan and wrong-loop tests.

``on_start`` records its pid and decorates the app with a resource of this
process; ``derive`` (a hook, in the acceptor with --workers N) and the
handler read it back. ``AXEOM_TEST_FAIL_ON_START`` makes ``on_start`` raise.
Other routes await asyncio primitives on a trio server.
"""

import asyncio
import os

import trio

from axeom import Axeom
from axeom.ws import ws_plugin

RECORD = os.environ.get("AXEOM_TEST_RECORD")
FAIL_ON_START = os.environ.get("AXEOM_TEST_FAIL_ON_START")
CLOSE_SLEEP = float(os.environ.get("AXEOM_TEST_CLOSE_SLEEP", "0"))

app = Axeom().use(ws_plugin())


def record(line: str) -> None:
    if RECORD:
        with open(RECORD, "a") as out:
            out.write(f"{line} {os.getpid()}\n")


@app.on_start
async def open_resource():
    await trio.sleep(0.2)  # a real wait on the loop: nothing is served meanwhile
    if FAIL_ON_START:
        raise RuntimeError("the database is down")
    app.decorate(resource=f"resource-{os.getpid()}")
    record("start-1")


@app.on_start
def second_start():
    record("start-2")


@app.on_stop
async def close_resource():
    await trio.sleep(0)
    record("stop-1")


@app.on_stop
def second_stop():
    record("stop-2")


@app.derive
def seen_by_hook(ctx):
    return {"hook_saw": ctx.resource}


async def on_close(ws, code, reason):
    await trio.sleep(CLOSE_SLEEP)
    record("close")


def on_message(ws, msg):
    ws.send(f"{ws.resource} {ws.data['hook_saw']} {os.getpid()}")


async def asyncio_in_handler(ws, msg):
    await asyncio.sleep(0.01)


async def asyncio_in_hook(ctx):
    await asyncio.open_connection("127.0.0.1", 9)
    return {}


app.ws("/resource", message=on_message, close=on_close)
app.ws("/asyncio-handler", message=asyncio_in_handler)
app.group("/hooked", lambda g: (g.derive(asyncio_in_hook), g.ws("/ws", message=on_message)))
