"""Echo server built on aiohttp, the fastest pure-asyncio WebSocket server we know of.

Built the way aiohttp users build it for speed: a ``web.Application`` with one route, a
``WebSocketResponse`` per request (its C frame reader and masking are used when installed),
``async for msg in ws``, access log off. Like the ``websockets`` baseline it runs on the
plain asyncio event loop, not uvloop: both peers are measured as their users get them out of
the box, so the two ratios in the report are comparable. Prints its bound port on one line
when ready, like the other benchmark servers.
"""

import asyncio

from aiohttp import WSMsgType, web

MAX_SIZE = 2**21  # 2 MiB, same limit as every server under test


async def echo(request: web.Request) -> web.WebSocketResponse:
    """Send every message back with its type (text stays text, binary stays binary)."""
    # compress=False: permessage-deflate off, as on every server under test. autoping (the
    # default) answers pings; no heartbeat, so idle connections cost only what aiohttp needs.
    ws = web.WebSocketResponse(max_msg_size=MAX_SIZE, compress=False, autoping=True)
    await ws.prepare(request)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:  # ERROR (e.g. a message over MAX_SIZE): aiohttp has closed the socket
                break
    except ConnectionResetError:
        pass  # the client closed while echoes were queued: normal end of a test
    return ws


async def main() -> None:
    """Bind an ephemeral port, announce it, and serve until killed."""
    app = web.Application()
    app.router.add_get("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"aiohttp echo listening on ws://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
