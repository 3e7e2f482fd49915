"""Fan-out peer: aiohttp in one process, every subscriber sent to in turn.

``/sub`` connections are kept in a set; every message received on ``/pub`` is
sent to all of them, the way aiohttp's own chat example does it (aiohttp has no
``broadcast()``; a send awaits only when that socket's write buffer is over its
limit). Plain asyncio loop, like the ``websockets`` baseline. Prints its port
when ready.
"""

import asyncio
import contextlib

from aiohttp import WSMsgType, web

SUBSCRIBERS: set[web.WebSocketResponse] = set()


async def broadcast(data: str | bytes) -> None:
    """Send ``data`` to every open subscriber; one that went away is skipped, like
    ``websockets.broadcast()`` skips it."""
    for sub in list(SUBSCRIBERS):
        if sub.closed:
            continue
        with contextlib.suppress(ConnectionResetError):
            if isinstance(data, str):
                await sub.send_str(data)
            else:
                await sub.send_bytes(data)


async def handler(request: web.Request) -> web.WebSocketResponse:
    """``/sub`` waits to be sent to; ``/pub`` sends each message to every subscriber."""
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    try:
        if request.path == "/sub":
            SUBSCRIBERS.add(ws)
            async for _ in ws:  # until the client closes
                pass
        else:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await broadcast(msg.data)
    except ConnectionResetError:
        pass
    finally:
        SUBSCRIBERS.discard(ws)
    return ws


async def main() -> None:
    """Bind an ephemeral port, announce it, and serve until killed."""
    app = web.Application()
    app.router.add_get("/sub", handler)
    app.router.add_get("/pub", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"aiohttp fanout listening on ws://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
