"""App for the supervision tests: echo, a health route, a worker that can
be made deaf to SIGTERM, and a close handler that can take its time."""

import os
import time

import trio

from axeom import Axeom
from axeom.ws import ws_plugin

RECORD = os.environ.get("AXEOM_TEST_RECORD")
CLOSE_SLEEP = float(os.environ.get("AXEOM_TEST_CLOSE_SLEEP", "0"))

app = Axeom().use(ws_plugin())


def record(line: str) -> None:
    if RECORD:
        with open(RECORD, "a") as out:
            out.write(f"{line}\n")


def on_message(ws, msg):
    if msg == "pid":
        ws.send(str(os.getpid()))
    elif msg == "block":
        time.sleep(3600)  # the worker's loop never runs again: SIGTERM goes unanswered
    else:
        ws.send(f"Echo: {msg}")


async def on_close(ws, code, reason):
    record(f"close started {os.getpid()}")
    await trio.sleep(CLOSE_SLEEP)
    record(f"close finished {os.getpid()}")


app.ws("/chat", message=on_message, close=on_close)
app.get("/health", lambda ctx: "ok")
