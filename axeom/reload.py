"""``axeom run --reload`` (development): watch the app's source, check that an edit imports,
then restart what runs application code.

Shared by the two processes that restart application code on an edit: the supervisor of
``--workers N`` (it rolls its workers, then the acceptor) and the small parent process of
``--workers 0 --reload`` (it restarts its one server child). Neither imports the app: each
edit is first imported in a throwaway interpreter (``python -m axeom.reload IMPORT``), so an
edit that does not import (a syntax error, an exception at import) leaves the last good code
serving, and its error is printed once, as one line at the user's file and line, instead of
by every process that would have failed to start with it.

Only ``.py`` files count; ``__pycache__`` and hidden folders (``.git``, ``.venv``) are not
watched. An editor's burst of writes is one change (watchfiles groups events until the files
have been quiet for ``QUIET_MS``).
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import trio

from ._importer import APP_DIR_ENV

__all__ = [
    "CHECK_TIMEOUT",
    "RELOADER_ENV",
    "ImportCheck",
    "SourceFilter",
    "reloader_pid",
    "source_changes",
    "watched_folders",
    "watchfiles_missing",
]

logger = logging.getLogger("axeom.reload")

# Milliseconds the watched files must be quiet before an edit counts: an editor
# writes a file in several steps (truncate, write, rename, touch) within a few ms.
QUIET_MS = 50
# Milliseconds after which a burst that never goes quiet counts anyway (a build
# writing many files): the whole burst is one reload, not one per file.
MAX_BURST_MS = 1600
# Milliseconds the watch thread waits before it looks whether it was cancelled:
# the longest a server's shutdown waits for its watcher.
WATCH_POLL_MS = 300
# Seconds an import check may take (a slow import on a loaded machine): as long
# as a new child gets to become ready.
CHECK_TIMEOUT = 60.0


# Set by the parent of ``--workers 0 --reload`` for its server child: the pid
# to send SIGHUP to when ``axeom reload`` asks the child to reload.
RELOADER_ENV = "AXEOM_RELOADER_PID"


def reloader_pid() -> int | None:
    """The pid of the ``--reload`` parent of this process, or None. The variable
    is believed only if it names our parent: a process the app starts inherits it."""
    value = os.environ.get(RELOADER_ENV, "")
    if value.isdigit() and int(value) == os.getppid():
        return int(value)
    return None


def watchfiles_missing() -> str | None:
    """Why ``--reload`` cannot run in this install (watchfiles absent), or None."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return "--reload needs the watchfiles package: pip install 'axeom[reload]'"
    return None


def watched_folders(app: str, extra: Iterable[str] = (), app_dir: str | None = None) -> list[str]:
    """The folder of the app's file, or of its top-level module or package, then ``extra``:
    absolute, without repeats. Found without importing anything of the app (the supervisor
    must never run application code). ``app_dir``: where ``app`` is looked up first
    (``axeom run --app-dir``, which the CLI puts in the environment for the whole tree)."""
    if app_dir is None:
        app_dir = os.environ.get(APP_DIR_ENV) or "."
    folders = [_app_folder(app, app_dir), *(str(Path(folder).resolve()) for folder in extra)]
    return list(dict.fromkeys(folders))


def _app_folder(app: str, app_dir: str) -> str:
    module = app.partition(":")[0]
    if module.endswith(".py") or "/" in module:
        return str(Path(module).resolve().parent)
    top = module.split(".")[0]
    # PathFinder looks the name up on the path without running the module (a
    # dotted name would import its parent packages: application code).
    spec = importlib.machinery.PathFinder.find_spec(top, [app_dir, *sys.path])
    if spec is not None and spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))).resolve())
    if spec is not None and spec.origin:
        return str(Path(spec.origin).resolve().parent)
    return str(Path(app_dir).resolve())


class SourceFilter:
    """The watchfiles filter of ``--reload``: ``.py`` files only, and none in
    ``__pycache__`` or in a hidden folder below a watched folder (a watched folder
    may itself sit in a hidden one, such as a home's ``.local``)."""

    def __init__(self, folders: Iterable[str]) -> None:
        from watchfiles import DefaultFilter

        self.folders = [Path(folder) for folder in folders]
        self._default = DefaultFilter()

    def __call__(self, change: Any, path: str) -> bool:
        if not path.endswith(".py") or not self._default(change, path):
            return False
        return not any(part.startswith(".") for part in self._below(Path(path)))

    def _below(self, path: Path) -> tuple[str, ...]:
        """The parts of ``path`` below the watched folder it is in."""
        for folder in self.folders:
            if path.is_relative_to(folder):
                return path.relative_to(folder).parts
        return path.parts


async def source_changes(folders: list[str]) -> AsyncIterator[list[str]]:
    """Each edit of the app's source (a burst of writes is one), as the sorted
    paths that changed; on trio, until the watch fails (a watched folder removed,
    the system's limit of watches reached): then one error line, and the server
    goes on serving without reloading rather than stop."""
    from watchfiles import awatch

    # Ours is the line that says what changed; watchfiles would add its own.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    try:
        async for changes in awatch(
            *folders,
            watch_filter=SourceFilter(folders),
            debounce=MAX_BURST_MS,
            step=QUIET_MS,
            rust_timeout=WATCH_POLL_MS,
        ):
            yield sorted({path for _, path in changes})
    except (OSError, RuntimeError) as exc:
        logger.error("--reload: watching stopped (%s); edits are no longer reloaded", exc)


class ImportCheck:
    """Imports the app in a throwaway interpreter, and prints why when it fails: once
    per distinct failure (saving the same broken file again prints nothing new)."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.last_error: str | None = None

    async def passes(self) -> bool:
        """True if the app imports as it is on disk now."""
        error = await _import_error(self.app)
        if error is _INTERRUPTED:
            return False  # stopped with the server (Ctrl-C reaches the whole group): no verdict
        if error is not None and error != self.last_error:
            print(
                f"{error}\n(--reload: still serving the last code that imported; "
                "fix the file and save it to reload)",
                file=sys.stderr,
                flush=True,
            )
        self.last_error = error
        return error is None


# Signals that stop a check from outside (the terminal's Ctrl-C, ``kill`` of the
# process group): no verdict on the app, nothing to print.
_STOPPED_BY = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP})
_INTERRUPTED = "interrupted"


async def _import_error(app: str) -> str | None:
    """What importing ``app`` in a new interpreter printed when it failed, else None."""
    command = [sys.executable, "-m", "axeom.reload", app]
    with trio.move_on_after(CHECK_TIMEOUT):
        result = await trio.run_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the app's own prints at import: not ours to repeat
            capture_stderr=True,
            check=False,
        )
        if result.returncode == 0:
            return None
        if -result.returncode in _STOPPED_BY:
            return _INTERRUPTED
        printed = result.stderr.decode(errors="replace").strip()
        return printed or f"Error: importing {app!r} exited with status {result.returncode}"
    return f"Error: importing {app!r} took longer than {CHECK_TIMEOUT:g}s"


def _check_main(app: str) -> None:
    """``python -m axeom.reload IMPORT``: exit 0 if the app imports; else the one
    line ``axeom run`` prints for it, and its status."""
    from .process import load_app_or_exit

    load_app_or_exit(app)
    sys.stdout.flush()
    os._exit(0)  # the app's threads or atexit hooks must not hold the check up


if __name__ == "__main__":
    _check_main(sys.argv[1])
