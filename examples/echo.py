"""The Axeom quick start: an echo server.

axeom run examples/echo.py:app
"""

import logging

from axeom import Axeom
from axeom.ws import ws_plugin

log = logging.getLogger("echo")

app = Axeom().use(ws_plugin())


def on_open(ws):
    log.info("open %s from %s", ws.id, ws.remote_address)


def on_message(ws, message):
    ws.send(f"Echo: {message}")


def on_close(ws, code, reason):
    log.info("close %s (%s %s)", ws.id, code, reason)


app.ws("/chat", {"open": on_open, "message": on_message, "close": on_close})
