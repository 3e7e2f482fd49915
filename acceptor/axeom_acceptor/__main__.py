"""``python -m axeom_acceptor SETTINGS_JSON``: started by the supervisor."""

from __future__ import annotations

import logging
import socket

import trio

from axeom.process import child_settings, configure_logging, load_app_or_exit, raise_fd_limit
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
    try:
        trio.run(Acceptor(app, listener, settings).run)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
