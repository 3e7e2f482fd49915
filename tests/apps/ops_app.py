"""Routes for the logging and watchdog tests: a handler that logs, one that
blocks its loop with ``time.sleep``, a hook that refuses, and a handler whose
log calls are odd (``extra`` keys Axeom also sets, a bad format)."""

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


class Unprintable:
    def __str__(self):
        raise RuntimeError("no text for this one")


def odd(ws, msg):
    # Keys Axeom sets on every record: the caller's values win, as without Axeom.
    log.warning("with extra", extra={"route": "mine", "role": "admin", "socket_id": 7})
    log.warning("%s and %s", "one argument")  # a bad log call: two %s, one argument
    log.warning(Unprintable())
    ws.send(f"odd {msg}")


app.ws("/odd", message=odd)
