"""App for the TLS connection-limit test: echo, two open sockets per address."""

from axeom import Axeom
from axeom.security import security_plugin
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin()).use(security_plugin(max_connections_per_ip=2))
app.ws("/echo", message=lambda ws, msg: ws.send(msg))
