"""Tests for the public surface: every exported name exists, and the engine is sans-IO
(importing it does not import trio)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import axeom
import axeom.schema
import axeom.ws


@pytest.mark.parametrize("module", [axeom, axeom.ws, axeom.schema], ids=lambda m: m.__name__)
def test_all_names_exist(module: object) -> None:
    """Every name in __all__ is an attribute of the module, and __all__ has no duplicates."""
    names = module.__all__  # type: ignore[attr-defined]
    assert names, "__all__ must not be empty"
    assert len(names) == len(set(names))
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def test_engine_names_are_the_real_objects() -> None:
    """Top-level names are the engine's classes, not copies."""
    from axeom._app import Axeom
    from axeom._messages import Request, Response
    from axeom.ws._plugin import ws_plugin

    assert axeom.Axeom is Axeom
    assert axeom.Request is Request
    assert axeom.Response is Response
    assert axeom.ws.ws_plugin is ws_plugin
    assert issubclass(axeom.Unauthorized, axeom.HTTPError)


def test_unknown_attribute_raises_attribute_error() -> None:
    """The lazy module __getattr__ raises AttributeError for unknown names."""
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = axeom.no_such_name  # type: ignore[attr-defined]


def _modules_after_import(statement: str, tmp_path: Path) -> list[str]:
    code = (
        "import json, sys\n"
        f"{statement}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'trio' or m.startswith('trio.'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import axeom",
        "import axeom.ws",
        "import axeom._http1",
        "import axeom.schema",
        "import axeom, axeom.ws, axeom._http1\nfrom axeom.ws import *",
    ],
)
def test_engine_import_does_not_import_trio(statement: str, tmp_path: Path) -> None:
    """Importing the sans-IO engine in a fresh interpreter leaves trio unimported."""
    assert _modules_after_import(statement, tmp_path) == []


def test_trio_check_detects_trio(tmp_path: Path) -> None:
    """The subprocess check does see trio when something imports it (the check is live)."""
    assert "trio" in _modules_after_import("import trio", tmp_path)


@pytest.mark.parametrize(
    "module",
    [
        "axeom.__main__",
        "axeom_acceptor.__main__",
        "axeom_workers.__main__",
        "axeom_supervisor.__main__",
    ],
)
def test_main_modules_run_only_as_main(module: str) -> None:
    """Importing a ``__main__`` module (a docs tool, a test collector) runs nothing:
    each starts its process only under ``python -m``."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
