"""Copied to a temporary folder by the reload test, which then adds a route."""

from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())
app.ws("/old", message=lambda ws, msg: ws.send(f"old: {msg}"))
