"""``python -m axeom_workers SETTINGS_JSON``: started by the supervisor only."""

from __future__ import annotations

import functools
import logging

from axeom import Axeom
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
from axeom.watchdog import watchdog_settings

from ._hub_link import ASYNCIO_WAITS
from ._worker import WorkerSettings, run_worker


def main() -> None:
    options = child_settings("worker")
    configure_logging(LogSettings.from_options(options), options["worker_id"])
    logging.getLogger("axeom.worker").info(raise_fd_limit())
    app = load_app_or_exit(options["app"])
    settings = WorkerSettings(
        worker_id=options["worker_id"],
        generation=options["generation"],
        run_dir=options["run_dir"],
        heartbeat_interval=options["heartbeat_interval"],
        graceful_timeout=options["graceful_timeout"],
        tls=options.get("tls"),
        handshake=options.get("handshake"),
        **watchdog_settings(options),
    )
    with exit_if_on_start_failed(settings.worker_id):
        _run(loop_of(options), app, settings)
    logging.getLogger("axeom.worker").debug("worker %s exiting", settings.worker_id)


def _run(loop: str, app: Axeom, settings: WorkerSettings) -> None:
    """Serve on ``loop``, the app's lifespan functions around it: the one
    place a worker picks its event loop."""
    try:
        if loop == "trio":
            import trio

            trio.run(serve_with_lifespan, app, functools.partial(run_worker, app, settings))
        else:
            _run_on_asyncio(loop, app, settings)
    except KeyboardInterrupt:
        pass


def _run_on_asyncio(loop: str, app: Axeom, settings: WorkerSettings) -> None:
    """The sockets, every handler and the lifespan functions on asyncio (or
    uvloop); the worker's own trio code (hand-offs, hub link, heartbeats,
    signals) runs unchanged as a guest of that loop and hands it the sockets."""
    from axeom.asyncio_runtime import (
        AsyncioRuntime,
        LoopUnavailable,
        open_guest_sockets,
        run_on_loop,
        run_trio_guest,
    )

    async def serve() -> None:
        runtime = AsyncioRuntime(app, loop_name=loop)
        try:
            await run_trio_guest(
                run_worker, app, settings, lambda _: open_guest_sockets(runtime), ASYNCIO_WAITS
            )
        finally:
            runtime.close()

    try:
        run_on_loop(loop, lambda: serve_with_lifespan(app, serve))
    except LoopUnavailable as exc:
        exit_loop_unavailable(str(exc), settings.worker_id)


if __name__ == "__main__":
    main()
