"""Fan-out app: /sub sockets subscribe to "fan", /pub publishes each message there."""

from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(
    ws_plugin(
        compression=False, ping_interval=None, idle_timeout=None, backpressure_limit=64 * 2**20
    )
)
app.ws("/sub", open=lambda ws: ws.subscribe("fan"))
app.ws("/pub", message=lambda ws, msg: ws.publish("fan", msg))
