"""``python bench/servers/asgi_launch.py uvicorn|granian MODULE:ATTR``: an ASGI app on a
real ASGI server, announcing its port on one line when ready, like the other servers.

Both servers are configured the same for every app they run, as the benchmark's other
servers are: 2 MiB messages, no compression, no keepalive pings, access log off. uvicorn
runs with its defaults otherwise (uvloop when installed, its websockets-based protocol);
granian with one worker.
"""

import asyncio
import os
import socket
import sys
import threading
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
SERVERS = str(Path(__file__).resolve().parent)
MAX_SIZE = 2**21  # 2 MiB, same limit as every server under test
HOST = "127.0.0.1"
READY_TIMEOUT = 30.0  # seconds for granian's worker to start accepting


def announce(port: int) -> None:
    print(f"asgi listening on ws://{HOST}:{port}", flush=True)


def run_uvicorn(target: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        target,
        host=HOST,
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws_max_size=MAX_SIZE,
        ws_per_message_deflate=False,
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        announce(server.servers[0].sockets[0].getsockname()[1])
        await serving

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def run_granian(target: str) -> None:
    from granian import Granian

    port = free_port()

    def wait_then_announce() -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            announce(port)
            return

    threading.Thread(target=wait_then_announce, daemon=True).start()
    Granian(target, address=HOST, port=port, interface="asgi", workers=1, log_access=False).serve()


def main() -> None:
    server, target = sys.argv[1], sys.argv[2]
    # The apps live in bench/apps (as bench.apps.*) and in this folder.
    for path in (SERVERS, REPO):
        sys.path.insert(0, path)
    os.environ["PYTHONPATH"] = os.pathsep.join([SERVERS, REPO, os.environ.get("PYTHONPATH", "")])
    {"uvicorn": run_uvicorn, "granian": run_granian}[server](target)


if __name__ == "__main__":
    main()
