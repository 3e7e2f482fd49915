"""What every process of an ``axeom run`` tree does first: raise its descriptor
limit, set up logging, load the app (or exit with a status the supervisor
reads), and notice when its parent is gone."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from ._app import Axeom
from ._fdlimit import raise_fd_limit
from ._importer import APP_DIR_ENV, ImportFromStringError, add_app_dir, import_from_string

__all__ = [
    "EXIT_APP_LOAD_FAILED",
    "configure_child_logging",
    "load_app_or_exit",
    "parent_gone",
    "raise_fd_limit",
]

# The supervisor reads this status as "the app cannot be loaded": it stops
# everything instead of restarting into the same failure. `axeom run --workers 0`
# exits with it too, so a failed import is one documented status in every mode.
EXIT_APP_LOAD_FAILED = 3


_parent = os.getppid()


def parent_gone() -> bool:
    """True once the supervisor that started this process has died.

    Children check it with every heartbeat and stop, so that a crashed
    supervisor never leaves workers serving unsupervised. (PR_SET_PDEATHSIG
    would not do: trio starts children from a worker thread, and that signal
    fires when the *thread* exits.)
    """
    return os.getppid() != _parent


def configure_child_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_APP_LOAD_FAILED)
