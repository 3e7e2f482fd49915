"""``python -m axeom_supervisor ARGS_JSON``: what ``axeom run --workers N`` execs.

ARGS_JSON holds the app import string, the config file path and the
command-line overrides; the configuration was validated by the CLI already.
"""

from __future__ import annotations

import json
import logging
import sys

import trio

from axeom.config import Config, ConfigError
from axeom.logs import LogSettings
from axeom.process import configure_logging, raise_fd_limit
from axeom.trio_runtime import bind_listener

from ._supervisor import Supervisor


def main() -> None:
    arguments = json.loads(sys.argv[1])
    try:
        config = Config.build(arguments["app"], arguments.get("file"), **arguments["overrides"])
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(LogSettings.of(config.server), "supervisor")
    logging.getLogger("axeom.supervisor").info(raise_fd_limit())
    try:
        listener = bind_listener(config.server.host, config.server.port)
    except OSError as exc:
        print(
            f"Error: cannot listen on {config.server.host}:{config.server.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        sys.exit(1)
    with listener:
        listener.set_inheritable(True)
        code = trio.run(Supervisor(config, listener).run)
    sys.exit(code)


if __name__ == "__main__":
    main()
