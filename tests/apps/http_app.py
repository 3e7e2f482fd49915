"""App for the request-limit tests: an HTTP route that reads a JSON body,
and a WebSocket echo."""

from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())


@app.route("POST", "/echo")
def echo(ctx):
    return {"got": ctx.json(), "bytes": len(ctx.body)}


app.ws("/chat", message=lambda ws, msg: ws.send(f"Echo: {msg}"))
