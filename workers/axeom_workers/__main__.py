"""``python -m axeom_workers SETTINGS_JSON``: started by the supervisor only."""

from __future__ import annotations

import functools
import logging

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

from ._worker import WorkerSettings, run_worker


def main() -> None:
    options = child_settings("worker")
    configure_logging(options["log_level"], options["worker_id"])
    logging.getLogger("axeom.worker").info(raise_fd_limit())
    app = load_app_or_exit(options["app"])
    settings = WorkerSettings(
        worker_id=options["worker_id"],
        generation=options["generation"],
        run_dir=options["run_dir"],
        heartbeat_interval=options["heartbeat_interval"],
        graceful_timeout=options["graceful_timeout"],
    )
    with exit_if_on_start_failed(settings.worker_id):
        _run(loop_of(options), app, settings)
    logging.getLogger("axeom.worker").debug("worker %s exiting", settings.worker_id)


def _run(loop: str, app: Axeom, settings: WorkerSettings) -> None:
    """Serve on ``loop``, the app's lifespan functions around it: the one
    place a worker picks its event loop."""
    if loop != "trio":
        exit_loop_not_built(loop, settings.worker_id)
    import trio

    try:
        trio.run(serve_with_lifespan, app, functools.partial(run_worker, app, settings))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
