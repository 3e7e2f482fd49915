"""Load an app from ``module:attr`` or ``path/to/file.py:attr``.

Every way this can fail becomes an ``ImportFromStringError`` with one line a
user can act on; the CLI prints it instead of a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any

__all__ = [
    "APP_DIR_ENV",
    "ImportFromStringError",
    "add_app_dir",
    "describe_error",
    "import_from_string",
]

APP_DIR_ENV = "AXEOM_APP_DIR"
"""Directory put first on ``sys.path`` before the app is imported (``axeom run --app-dir``).

The CLI sets it to an absolute path for the whole process tree, so the acceptor and the
workers import ``app:app`` from the same folder as ``--workers 0`` does.
"""

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# The standard library and installed packages: never "the user's line" of a failure.
_LIBRARY_DIRS = tuple(
    str(Path(sysconfig.get_paths()[key]).resolve()) + os.sep
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
)


class ImportFromStringError(Exception):
    """The import string is malformed, or what it names cannot be loaded."""


def add_app_dir(app_dir: str | os.PathLike[str]) -> str:
    """Put ``app_dir`` (resolved to an absolute path) first on ``sys.path``; return that path.

    ``axeom run app:app`` must find ``app.py`` in the current folder whether it serves in
    this process or in children, as uvicorn's ``--app-dir`` (default ``.``) does: a console
    script, unlike ``python -m``, does not put the current folder on the path by itself.
    """
    path = str(Path(app_dir).resolve())
    if not Path(path).is_dir():
        raise ImportFromStringError(f'App directory "{app_dir}" is not a directory.')
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    return path


def import_from_string(import_str: str) -> Any:
    """Return the object ``import_str`` names."""
    module_str, sep, attrs_str = import_str.partition(":")
    if not sep or not module_str or not attrs_str:
        raise ImportFromStringError(
            f'Import string "{import_str}" must be in format "<module>:<attribute>" '
            'or "<path/to/file.py>:<attribute>".'
        )
    module = _load_module(module_str)
    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise ImportFromStringError(
            f'Attribute "{attrs_str}" not found in module "{module_str}".'
        ) from None
    return instance


def _load_module(module_str: str) -> Any:
    if module_str.endswith(".py") or "/" in module_str:
        return _load_file(Path(module_str))
    try:
        return importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str and not module_str.startswith(f"{exc.name}."):
            raise ImportFromStringError(_describe_failure(module_str, exc)) from None
        raise ImportFromStringError(f'Could not import module "{module_str}".') from None
    except Exception as exc:
        raise ImportFromStringError(_describe_failure(module_str, exc)) from None


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise ImportFromStringError(f'Could not import file "{path}": no such file.')
    name = path.stem if path.stem.isidentifier() else "axeom_app"
    if name in sys.modules:  # never shadow a real module (a user file named logging.py)
        name = f"axeom_app_{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportFromStringError(f'Could not import file "{path}".')
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ImportFromStringError(_describe_failure(str(path), exc)) from None
    return module


def _describe_failure(where: str, exc: BaseException) -> str:
    """One line: what was raised, and the innermost line of user code that raised it."""
    return f'Error loading "{where}": {describe_error(exc)}'


def describe_error(exc: BaseException) -> str:
    """``TypeName: first line of the message (file, line N)``, the line being
    the innermost one of the app's own code: what a user needs to find a
    failure of their code (an import, an ``on_start`` function) without a
    traceback through Axeom and the event loop."""
    location = ""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if _is_user_frame(f.filename)]
    if isinstance(exc, SyntaxError) and exc.filename:
        location = f" ({exc.filename}, line {exc.lineno})"
    elif user:
        last = user[-1]
        location = f" ({last.filename}, line {last.lineno})"
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message}{location}"


def _is_user_frame(filename: str) -> bool:
    """A frame of the app's code: not the import machinery, not Axeom, and not code
    generated at run time (``<string>``: a dataclass's ``__init__``), and not the
    standard library or installed packages (``dataclasses.replace`` checking an option):
    the line to report is the app's call that led there."""
    if filename.startswith("<") or "importlib" in filename or _in_axeom(filename):
        return False
    return not str(Path(filename).resolve()).startswith(_LIBRARY_DIRS)


def _in_axeom(filename: str) -> bool:
    """True for a frame of Axeom's own code: an error an app triggers there (a misspelled
    ``app.ws`` keyword) is reported at the app's line that made the call."""
    return str(Path(filename).resolve()).startswith(_PACKAGE_DIR + os.sep)
