"""App for the TLS tests: echo, a compressed echo, a refused route, and a
route that says how the handshake came in (``ctx.scheme``)."""

from axeom import Axeom
from axeom.errors import Forbidden
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())


@app.derive
def scheme(ctx):
    if ctx.path == "/refused":
        raise Forbidden("not you")
    return {"scheme": ctx.scheme, "secure": ctx.secure}


app.ws("/echo", message=lambda ws, msg: ws.send(msg))
app.ws("/z", message=lambda ws, msg: ws.send(msg), compression=True)
app.ws("/refused", message=lambda ws, msg: ws.send(msg))
app.ws("/scheme", open=lambda ws: ws.send(f"{ws.data['scheme']} {ws.data['secure']}"))
