"""App for the reverse-proxy tests: tells each socket the address it was given."""

import json

from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())


def on_open(ws):
    ws.send(json.dumps(ws.remote_address))


app.ws("/who", open=on_open, message=lambda ws, msg: ws.send(msg))
app.get("/client", lambda ctx: {"client": ctx.client})
