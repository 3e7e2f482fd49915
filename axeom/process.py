"""What every process of ``axeom run`` shares: raise its descriptor limit, set
up logging, load the app (or exit with a status the supervisor reads), run
the app's lifespan functions around serving, and, in a child, send
heartbeats until its parent is gone."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn

import pynng
from websockets.frames import CloseCode

from . import logs, wire
from ._app import Axeom, OnStartError
from ._fdlimit import raise_fd_limit
from ._importer import APP_DIR_ENV, ImportFromStringError, add_app_dir, import_from_string
from ._loops import DEFAULT_LOOP
from .logs import LogSettings

__all__ = [
    "EXIT_APP_LOAD_FAILED",
    "EXIT_BAD_LOG_CONFIG",
    "EXIT_CANNOT_START",
    "EXIT_HUNG",
    "EXIT_ON_START_FAILED",
    "REPORT_SEND_TIMEOUT_MS",
    "RESTART_SIGNAL",
    "STOP_SIGNALS",
    "child_settings",
    "close_code_for",
    "configure_logging",
    "exit_if_on_start_failed",
    "exit_loop_unavailable",
    "heartbeat_forever",
    "load_app_or_exit",
    "loop_of",
    "parent_gone",
    "raise_fd_limit",
    "serve_with_lifespan",
]

# The supervisor reads this status as "the app cannot be loaded": it stops
# everything instead of restarting into the same failure. `axeom run --workers 0`
# exits with it too, so a failed import is one documented status in every mode.
EXIT_APP_LOAD_FAILED = 3
# A child that cannot start for a reason a restart cannot fix either: settings
# from a supervisor of another Axeom install, or a missing optional package.
# The supervisor gives up on it at once, as on EXIT_APP_LOAD_FAILED.
EXIT_CANNOT_START = 4
# An ``on_start`` function of the app raised (its database is down, a setting
# is missing). A restart would run it into the same failure in every process,
# so the supervisor gives up at once and ``axeom run`` exits with this status,
# in every mode.
EXIT_ON_START_FAILED = 5

# The send timeout of a child's report socket. nng holds a send while no
# supervisor is connected; one that died between a parent check and a heartbeat
# would hold it forever, and the child would never check again. Generous: a
# live supervisor takes a report in microseconds.
REPORT_SEND_TIMEOUT_MS = 5000
# A worker whose loop a handler held until the supervisor was about to kill
# it: its watchdog wrote 1011 to its sockets and ended it (see axeom.watchdog).
# Restarted under the policy like any crash.
EXIT_HUNG = 6
# A --log-config file that cannot be applied: a usage error, as a bad config
# file is (click's status for those).
EXIT_BAD_LOG_CONFIG = 2


_parent = os.getppid()


def parent_gone() -> bool:
    """True once the supervisor that started this process has died.

    Children check it with every heartbeat and stop, so that a crashed
    supervisor never leaves workers serving unsupervised. (PR_SET_PDEATHSIG
    would not do: trio starts children from a worker thread, and that signal
    fires when the *thread* exits.)
    """
    return os.getppid() != _parent


def configure_logging(settings: LogSettings | str, process: str | None = None) -> None:
    """Set up logging the one way every process of the tree does (see
    ``axeom.logs``): ``settings``, or just a level for the text format.

    In a tree, every text line carries its process's name in brackets
    (``[supervisor]``, ``[acceptor]``, ``[worker-1]``, ``[redis-bridge]``): the
    children share the supervisor's stderr, and a reader must tell them apart.
    The single-process server (``process`` None) has no tag. A ``--log-config``
    file that cannot be applied ends the process with one line and status 2
    (``axeom run`` applies it first, so a tree never starts with a bad one).
    """
    if isinstance(settings, str):
        settings = LogSettings(level=settings)
    try:
        logs.configure_logging(settings, process)
    except logs.LogConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_LOG_CONFIG)


async def heartbeat_forever(
    report: Callable[[], Awaitable[None]],
    interval: float,
    sleep: Callable[[float], Awaitable[object]],
    on_parent_gone: Callable[[], Awaitable[None]],
    *,
    is_parent_gone: Callable[[], bool] = parent_gone,
) -> None:
    """A child's heartbeat: ``report()`` every ``interval`` seconds until the
    supervisor is gone, then ``await on_parent_gone()`` (stop, or drain first)
    and return.

    One loop for every child, whatever its event loop: it awaits only what it
    is given, so the trio processes pass ``trio.sleep`` and the Redis bridge
    ``asyncio.sleep``. Each child keeps building its own heartbeat message in
    ``report`` (its figures differ). It runs on the child's event loop on
    purpose: a handler that blocks the loop silences the heartbeats, and the
    supervisor replaces the child. The parent is checked before every report,
    so a child of a dead supervisor never reports (to nobody) again.
    """
    while not is_parent_gone():
        try:
            await report()
        except pynng.exceptions.Timeout:
            pass  # nobody took it (REPORT_SEND_TIMEOUT_MS): is the parent still there?
        await sleep(interval)
    await on_parent_gone()


async def serve_with_lifespan(app: Axeom, serve: Callable[[], Awaitable[None]]) -> None:
    """The app's ``on_start`` functions, then ``serve()``, then its ``on_stop``
    functions: how every process that runs application code serves, on
    whatever loop it awaits this.

    ``serve`` returns once the process has drained (close handlers ran), so
    ``on_stop`` comes after them, also on SIGTERM and Ctrl-C (both drain).
    A stop signal often comes twice (``kill`` of the process group, then the
    supervisor's own), and the second may arrive after ``serve`` stopped
    listening: had the default disposition come back then, it would kill the
    process before or during ``on_stop``. So stop signals are ignored from
    before ``serve`` (whose own handlers take them while it listens, and put
    back "ignore" when done) until ``on_stop`` has run; a hung one is
    SIGKILLed after ``shutdown_timeout``, as any child.
    Call it outside any nursery or task group: an ``OnStartError`` must reach
    ``exit_if_on_start_failed`` as itself, not inside an exception group.

    Raises:
        OnStartError: an ``on_start`` function raised; nothing was served and
            no ``on_stop`` function ran.
    """
    await app.run_on_start()
    with _stop_signals_ignored():
        try:
            await serve()
        finally:
            await app.run_on_stop()


# What a reloader (``--reload``) sends a process that runs application code:
# stop as on SIGTERM, but close the sockets with 1012 (service restart: come
# back soon) rather than 1001 (going away).
RESTART_SIGNAL = signal.SIGUSR1

# The signals that ask a process to stop; while it runs on_stop it already is.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, RESTART_SIGNAL)


def close_code_for(signum: int) -> int:
    """The close code of the sockets of a process stopped by ``signum``."""
    return CloseCode.SERVICE_RESTART if signum == RESTART_SIGNAL else CloseCode.GOING_AWAY


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Ignore SIGTERM and SIGINT inside, then put back what was there."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a server runs there
        return
    previous = [(signum, signal.signal(signum, signal.SIG_IGN)) for signum in STOP_SIGNALS]
    try:
        yield
    finally:
        for signum, handler in previous:
            signal.signal(signum, handler)


@contextlib.contextmanager
def exit_if_on_start_failed(process: str | None = None) -> Iterator[None]:
    """Around a process's event loop: an ``on_start`` failure becomes one line
    on stderr (the function, the error, the app's line; the traceback at
    debug level) and exit ``EXIT_ON_START_FAILED``, as an import error is one
    line and ``EXIT_APP_LOAD_FAILED``. In a tree the line names the child
    (``process``, as its log lines do): each child runs the functions."""
    try:
        yield
    except OnStartError as exc:
        logging.getLogger("axeom.server").debug("on_start failed", exc_info=exc.error)
        tag = "" if process is None else f"[{process}] "
        print(logs.error_line(f"{tag}{exc}"), file=sys.stderr, flush=True)
        sys.exit(EXIT_ON_START_FAILED)


def loop_of(settings: dict[str, Any]) -> str:
    """The loop a child's start-up settings name. A supervisor that passes
    none predates the choice, and ran everything on trio: a key added without
    a wire version bump, read with the only value its absence can mean."""
    loop = settings.get("loop", DEFAULT_LOOP)
    return loop if isinstance(loop, str) else DEFAULT_LOOP


def exit_loop_unavailable(reason: str, process: str | None = None) -> NoReturn:
    """One line (``reason``, from ``LoopUnavailable``) and ``EXIT_CANNOT_START``:
    the loop the settings name cannot run in this process's install (``axeom
    run`` checked it, but a child may run in another environment). A restart
    cannot fix it, so a supervisor gives up at once."""
    tag = "" if process is None else f"[{process}] "
    print(logs.error_line(f"{tag}{reason}"), file=sys.stderr, flush=True)
    sys.exit(EXIT_CANNOT_START)


def child_settings(role: str) -> dict[str, Any]:
    """This child's settings, from the one argument its supervisor started it
    with; else one line on stderr and exit ``EXIT_CANNOT_START`` (run by hand,
    or by a supervisor of another version)."""
    try:
        return wire.decode_settings(sys.argv[1:])
    except wire.WireError as exc:
        print(
            f"Error: the {role} process is started by `axeom run --workers N`, not by hand: {exc}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(EXIT_CANNOT_START)


def load_app_or_exit(import_str: str) -> Axeom:
    """Import the app (from ``AXEOM_APP_DIR`` first, when set) or exit 3 with one line."""
    try:
        app_dir = os.environ.get(APP_DIR_ENV)
        if app_dir:
            add_app_dir(app_dir)
        app = import_from_string(import_str)
    except ImportFromStringError as exc:
        _fail(str(exc))
    if not isinstance(app, Axeom):
        _fail(f'"{import_str}" is a {type(app).__name__}, not an Axeom app.')
    return app


def _fail(message: str) -> NoReturn:
    print(logs.error_line(message), file=sys.stderr, flush=True)
    sys.exit(EXIT_APP_LOAD_FAILED)
