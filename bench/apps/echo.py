"""Echo app with a plain-function handler: ``axeom run bench/apps/echo.py:app``.

A plain function runs inline in the runtime's loop; ``bench/apps/echo_async.py`` is the same
app with a coroutine handler. Settings mirror the peer servers: 2 MiB messages, no
compression, and no pings or idle timeout so that idle connections in the memory test cost
only what the framework needs.
"""

from axeom import Axeom
from axeom.ws import WebSocket, ws_plugin


def message(ws: WebSocket, msg: str | bytes) -> None:
    """Send every message back with its type (``str`` as text, ``bytes`` as binary)."""
    ws.send(msg)


app = Axeom().use(
    ws_plugin(max_message_size=2 * 2**20, compression=False, ping_interval=None, idle_timeout=None)
)
app.ws("/echo", message=message)
