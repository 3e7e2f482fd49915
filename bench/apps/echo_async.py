"""Echo app with a coroutine handler: ``axeom run bench/apps/echo_async.py:app``.

The same app as ``bench/apps/echo.py`` (same settings), but its handler is ``async def``
and awaits the send, as the peers' handlers do: ``await ws.send`` is flow control (it waits
only while the outbox is over ``backpressure_limit``), like ``await ws.send`` in websockets
and ``await ws.send_str`` in aiohttp.
"""

from axeom import Axeom
from axeom.ws import WebSocket, ws_plugin


async def message(ws: WebSocket, msg: str | bytes) -> None:
    """Send every message back with its type (``str`` as text, ``bytes`` as binary)."""
    await ws.send(msg)


app = Axeom().use(
    ws_plugin(max_message_size=2 * 2**20, compression=False, ping_interval=None, idle_timeout=None)
)
app.ws("/echo", message=message)
