"""An app with the security plugin, for the live limit tests.

Small limits, so that a test reaches each with a few sockets: two open
sockets per address, four on the node, four handshakes per address per ten
minutes (no token comes back during a test), origins of ``*.example.com``.
"""

from __future__ import annotations

from axeom import Axeom
from axeom.security import security_plugin
from axeom.ws import ws_plugin

PER_ADDRESS = 2
NODE = 4
HANDSHAKES = (4, 600)
ALLOWED_ORIGIN = "https://*.example.com"
MESSAGES = (2, 600)

app = (
    Axeom()
    .use(ws_plugin())
    .use(
        security_plugin(
            allowed_origins=[ALLOWED_ORIGIN],
            max_connections_per_ip=PER_ADDRESS,
            max_connections=NODE,
            handshake_rate_per_ip=HANDSHAKES,
        )
    )
)


def echo(ws, message):
    ws.send(message)


app.ws("/echo", message=echo)
app.ws("/limited", message=echo, rate_limit=MESSAGES, on_rate_limit="drop")


@app.get("/health")
def health(ctx):
    return "ok"
