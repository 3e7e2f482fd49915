"""``python -m axeom.asyncio_runtime IMPORT [--loop uvloop] [--port 0] ...``:
the single-process asyncio server, until ``axeom run --loop asyncio
--workers 0`` calls ``run`` itself. Prints the same ready line as ``axeom run``."""

from __future__ import annotations

import argparse
import sys

from ..ipc import control_address
from ..process import configure_logging, load_app_or_exit
from ..trio_runtime._handshake import HandshakeLimits
from ..trio_runtime._serve import bind_listener
from ._loops import LOOPS, LoopUnavailable
from ._serve import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m axeom.asyncio_runtime")
    parser.add_argument("app", help="module:attr or path/to/file.py:attr")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--graceful-timeout", type=float, default=10.0)
    parser.add_argument("--head-timeout", type=float, default=HandshakeLimits().timeout)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    app = load_app_or_exit(args.app)
    listener = bind_listener(args.host, args.port)

    def ready(bound: tuple[str, int]) -> None:
        host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"Axeom listening on ws://{host}:{bound[1]} ({args.loop})", flush=True)

    try:
        run(
            app,
            loop_name=args.loop,
            graceful_timeout=args.graceful_timeout,
            limits=HandshakeLimits(timeout=args.head_timeout),
            control=control_address(listener.getsockname()[1]),
            listener=listener,
            on_ready=ready,
        )
    except LoopUnavailable as exc:
        sys.exit(f"error: {exc}")
    finally:
        listener.close()


if __name__ == "__main__":
    main()
