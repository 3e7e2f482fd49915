"""Echo server built on ``trio-websocket``, the trio peer Axeom is most comparable to.

Prints its bound port on one line when ready, like the other benchmark servers.
"""

from functools import partial

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

MAX_SIZE = 2**21  # 2 MiB, same limit as every server under test


async def echo(request: WebSocketRequest) -> None:
    """Accept ``/echo`` and send every message back with its type (str -> text, bytes -> binary)."""
    if request.path != "/echo":
        await request.reject(404)
        return
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed:
        pass


async def main() -> None:
    """Bind an ephemeral port, announce it, and serve until killed."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve_websocket, echo, "127.0.0.1", 0, None, max_message_size=MAX_SIZE)
        )
        print(f"trio-websocket echo listening on ws://127.0.0.1:{server.port}", flush=True)


if __name__ == "__main__":
    trio.run(main)
