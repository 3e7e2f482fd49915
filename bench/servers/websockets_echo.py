"""Echo server built on the ``websockets`` library's default asyncio server (the baseline).

Deliberately uses the plain asyncio event loop (not uvloop): the baseline is what a user
gets from the library out of the box. Prints its bound port on one line when ready.
"""

import asyncio
import ssl
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

MAX_SIZE = 2**21  # 2 MiB, same limit as every server under test


async def echo(ws: ServerConnection) -> None:
    """Send every message back with its type: ``str`` frames go out as text, bytes as binary."""
    if ws.request is None or ws.request.path != "/echo":
        await ws.close(1008, "unknown path")
        return
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass  # the client closed while echoes were queued: normal end of a test


async def main(tls: ssl.SSLContext | None) -> None:
    """Bind an ephemeral port, announce it, and serve until killed (TLS with a context)."""
    async with serve(echo, "127.0.0.1", 0, max_size=MAX_SIZE, compression=None, ssl=tls) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        scheme = "wss" if tls else "ws"
        print(f"websockets echo listening on {scheme}://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


def tls_context(argv: list[str]) -> ssl.SSLContext | None:
    """``CERTFILE KEYFILE`` as arguments: serve TLS (``bench.tls``), with the
    settings Axeom uses (``axeom.tls``: TLS 1.2 at least, ALPN http/1.1)."""
    if not argv:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(argv[0], argv[1])
    return context


if __name__ == "__main__":
    asyncio.run(main(tls_context(sys.argv[1:])))
