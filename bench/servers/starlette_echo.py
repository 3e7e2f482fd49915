"""Echo endpoint written with Starlette, the peer of Axeom on the same ASGI server.

Started by ``asgi_launch.py`` (``starlette_echo:app`` on uvicorn or granian), so the
server, its event loop and its WebSocket implementation are the same as Axeom's in the
comparison; only the framework differs. Written the way Starlette's docs write an
endpoint: ``accept``, then ``receive`` and ``send_text`` / ``send_bytes`` in a loop.
"""

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def echo(websocket: WebSocket) -> None:
    """Send every message back with its type (text stays text, binary stays binary)."""
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(message.get("bytes") or b"")
    except WebSocketDisconnect:
        pass  # the client left while an echo was on its way


app = Starlette(routes=[WebSocketRoute("/echo", echo)])
