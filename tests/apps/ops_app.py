"""Routes for the logging and watchdog tests: a handler that logs, one that
blocks its loop with ``time.sleep``, and a hook that refuses."""

import logging
import os
import time

from axeom import Axeom, Forbidden
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())
log = logging.getLogger("opsapp")


@app.derive
def check(ctx):
    if ctx.query.get("deny") == "1":
        raise Forbidden("denied by a hook")
    return None


def say(ws, msg):
    log.warning("handler got %s", msg)
    ws.send(f"logged {msg}")


app.ws("/say/:name", message=say)


def where(ws):
    ws.send(f"pid {os.getpid()}")


def block(ws, msg):
    if msg.startswith("sleep "):
        time.sleep(float(msg.split()[1]))  # the blocking call the watchdog names
    ws.send(f"done {msg}")


app.ws("/block", open=where, message=block)
app.ws("/calm", open=where, message=lambda ws, msg: ws.send(f"calm {msg}"))
