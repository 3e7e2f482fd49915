"""App for the message-size tests: small limits, echo, one compressed route."""

from axeom import Axeom
from axeom.ws import ws_plugin

LIMIT = 256 * 1024  # small, so that many connections at the limit stay cheap to send

app = Axeom().use(ws_plugin(max_message_size=LIMIT))
app.ws("/echo", message=lambda ws, msg: ws.send(msg))
app.ws("/z", message=lambda ws, msg: ws.send(msg), compression=True)
