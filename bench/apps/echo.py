"""Echo app served by ``axeom run bench/apps/echo.py:app`` for the benchmark harness.

Settings mirror the peer servers: 2 MiB messages, no compression, and no pings or idle
timeout so that idle connections in the memory test cost only what the framework needs.
"""

from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(
    ws_plugin(max_message_size=2 * 2**20, compression=False, ping_interval=None, idle_timeout=None)
)
app.ws("/echo", message=lambda ws, msg: ws.send(msg))
