"""``python -m axeom_workers SETTINGS_JSON``: started by the supervisor only."""

from __future__ import annotations

import logging

import trio

from axeom.process import child_settings, configure_logging, load_app_or_exit, raise_fd_limit

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
    try:
        trio.run(run_worker, app, settings)
    except KeyboardInterrupt:
        pass
    logging.getLogger("axeom.worker").debug("worker %s exiting", settings.worker_id)


if __name__ == "__main__":
    main()
