"""``python -m axeom_acceptor SETTINGS_JSON``: started by the supervisor."""

from __future__ import annotations

import logging
import socket

from axeom import Axeom
from axeom.process import (
    child_settings,
    configure_logging,
    exit_if_on_start_failed,
    exit_loop_not_built,
    load_app_or_exit,
    loop_of,
    raise_fd_limit,
    serve_with_lifespan,
)
from axeom.trio_runtime import HandshakeLimits

from ._acceptor import Acceptor, AcceptorSettings


def main() -> None:
    options = child_settings("acceptor")
    configure_logging(options["log_level"], "acceptor")
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
    )
    with exit_if_on_start_failed("acceptor"):
        _run(loop_of(options), app, listener, settings)


def _run(loop: str, app: Axeom, listener: socket.socket, settings: AcceptorSettings) -> None:
    """Accept on ``loop``, the app's lifespan functions around it (the acceptor
    runs ``derive`` and the hooks, which may use what ``on_start`` opened): the
    one place the acceptor picks its event loop."""
    if loop != "trio":
        exit_loop_not_built(loop, "acceptor")
    import trio

    try:
        trio.run(serve_with_lifespan, app, Acceptor(app, listener, settings).run)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
