"""``python -m axeom_acceptor SETTINGS_JSON``: started by the supervisor."""

from __future__ import annotations

import logging
import socket

from axeom import Axeom, Request, Response
from axeom.logs import LogSettings
from axeom.process import (
    child_settings,
    configure_logging,
    exit_if_on_start_failed,
    exit_loop_unavailable,
    load_app_or_exit,
    loop_of,
    raise_fd_limit,
    serve_with_lifespan,
)
from axeom.trio_runtime import HandshakeLimits

from ._acceptor import Acceptor, AcceptorSettings


def main() -> None:
    options = child_settings("acceptor")
    configure_logging(LogSettings.from_options(options), "acceptor")
    logging.getLogger("axeom.acceptor").info(raise_fd_limit())
    app = load_app_or_exit(options["app"])
    listener = socket.socket(fileno=options["listener_fd"])
    listener.setblocking(False)
    settings = AcceptorSettings(
        run_dir=options["run_dir"],
        heartbeat_interval=options["heartbeat_interval"],
        limits=HandshakeLimits(**options.get("handshake", {})),
        generation=options["generation"],
        graceful_timeout=options["graceful_timeout"],
        tls=bool(options.get("tls")),
    )
    with exit_if_on_start_failed("acceptor"):
        _run(loop_of(options), app, listener, settings)


def _run(loop: str, app: Axeom, listener: socket.socket, settings: AcceptorSettings) -> None:
    """Accept on ``loop``, the app's lifespan functions around it (the acceptor
    runs ``derive`` and the hooks, which may use what ``on_start`` opened): the
    one place the acceptor picks its event loop."""
    try:
        if loop == "trio":
            import trio

            trio.run(serve_with_lifespan, app, Acceptor(app, listener, settings).run)
        else:
            _run_on_asyncio(loop, app, listener, settings)
    except KeyboardInterrupt:
        pass


def _run_on_asyncio(
    loop: str, app: Axeom, listener: socket.socket, settings: AcceptorSettings
) -> None:
    """``app.handle`` (hooks, ``derive``) and the lifespan functions on asyncio
    (or uvloop), each handshake's in a task of its own; the acceptor's trio
    code (accepting, reading heads, hand-offs, links) runs unchanged as a
    guest of that loop and awaits them."""
    from axeom.asyncio_runtime import (
        LoopUnavailable,
        call_in_asyncio,
        run_on_loop,
        run_trio_guest,
    )

    async def handle(request: Request) -> Response:
        return await call_in_asyncio(app.handle, request)

    async def serve() -> None:
        await run_trio_guest(Acceptor(app, listener, settings, handle).run)

    try:
        run_on_loop(loop, lambda: serve_with_lifespan(app, serve))
    except LoopUnavailable as exc:
        exit_loop_unavailable(str(exc), "acceptor")


if __name__ == "__main__":
    main()
