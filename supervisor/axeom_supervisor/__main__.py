"""``python -m axeom_supervisor ARGS_JSON``: what ``axeom run --workers N`` execs.

ARGS_JSON holds the app import string, the config file path and the
command-line overrides; the configuration was validated by the CLI already.
"""

from __future__ import annotations

import json
import logging
import sys

import trio

from axeom import metrics
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
        collector, metrics_dir = _serve_metrics(config)
        code = trio.run(Supervisor(config, listener, collector, metrics_dir).run)
    sys.exit(code)


def _serve_metrics(config: Config) -> tuple[metrics.NodeCollector | None, str | None]:
    """With ``--metrics-port``: the tree's directory for application metrics
    (in the environment before any child starts), and /metrics listening."""
    server = config.server
    if server.metrics_port is None:
        return None, None
    metrics_dir = metrics.make_multiprocess_dir()
    collector = metrics.NodeCollector()
    try:
        port = metrics.MetricsServer(collector, metrics_dir).start(server.host, server.metrics_port)
    except OSError as exc:
        metrics.remove_multiprocess_dir(metrics_dir)
        print(
            f"Error: cannot serve metrics on {server.host}:{server.metrics_port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        sys.exit(1)
    host = f"[{server.host}]" if ":" in server.host else server.host
    print(f"Axeom metrics on http://{host}:{port}/metrics", flush=True)
    return collector, metrics_dir


if __name__ == "__main__":
    main()
