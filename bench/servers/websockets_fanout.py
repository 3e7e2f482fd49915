"""Fan-out baseline: the ``websockets`` library's ``broadcast()`` in one process.

``/sub`` connections are kept in a set; every message received on ``/pub``
is broadcast to all of them. Prints its port when ready.
"""

import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

SUBSCRIBERS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    try:
        if path == "/sub":
            SUBSCRIBERS.add(ws)
            await ws.wait_closed()
        elif path == "/pub":
            async for message in ws:
                broadcast(SUBSCRIBERS, message)
        else:
            await ws.close(1008, "unknown path")
    except ConnectionClosed:
        pass
    finally:
        SUBSCRIBERS.discard(ws)


async def main() -> None:
    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"websockets fanout listening on ws://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
