"""Tests for axeom._importer: loading ``module:attr`` and ``path/file.py:attr``, and the
one-line ImportFromStringError for every way that can fail."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from axeom._importer import ImportFromStringError, import_from_string


@pytest.fixture(autouse=True)
def _isolate_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo the importer's sys.path and sys.modules additions after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def load_error(import_str: str) -> str:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(import_str)
    message = str(info.value)
    assert "\n" not in message, f"message must be one line: {message!r}"
    return message


def test_loads_module_attribute() -> None:
    """'module:attr' returns that attribute, dotted attributes included."""
    assert import_from_string("json:dumps") is json.dumps
    assert import_from_string("os:path.join") is os.path.join


def test_loads_module_from_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module found on sys.path loads by name."""
    write(tmp_path, "axeom_test_modapp.py", "app = {'kind': 'module'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_from_string("axeom_test_modapp:app") == {"kind": "module"}


def test_loads_file_path(tmp_path: Path) -> None:
    """'path/file.py:attr' loads the file and returns the attribute."""
    path = write(tmp_path, "axeom_test_fileapp.py", "class App:\n    name = 'x'\napp = App()\n")
    assert import_from_string(f"{path}:app.name") == "x"


def test_file_can_import_its_siblings(tmp_path: Path) -> None:
    """A loaded file can import modules next to it."""
    write(tmp_path, "axeom_test_sibling.py", "VALUE = 42\n")
    source = "from axeom_test_sibling import VALUE\napp = VALUE\n"
    path = write(tmp_path, "axeom_test_main.py", source)
    assert import_from_string(f"{path}:app") == 42


def test_file_with_non_identifier_name_loads(tmp_path: Path) -> None:
    """A file whose stem is not an identifier still loads."""
    path = write(tmp_path, "my-app.py", "app = 'dashed'\n")
    assert import_from_string(f"{path}:app") == "dashed"


@pytest.mark.parametrize("import_str", ["json", "json:", ":app", "", "json.dumps"])
def test_malformed_import_string(import_str: str) -> None:
    """A string without both parts separated by ':' is rejected with the expected format."""
    message = load_error(import_str)
    assert '"<module>:<attribute>"' in message
    assert f'"{import_str}"' in message


def test_missing_module() -> None:
    """A module that does not exist is named in the error."""
    message = load_error("axeom_no_such_module_xyz:app")
    assert message == 'Could not import module "axeom_no_such_module_xyz".'


def test_missing_submodule_of_existing_package() -> None:
    """A missing submodule of a real package is reported as the module not importable."""
    message = load_error("json.no_such_sub:app")
    assert message == 'Could not import module "json.no_such_sub".'


def test_missing_dependency_inside_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that imports a missing dependency names the dependency, not the module."""
    write(tmp_path, "axeom_test_needsdep.py", "import axeom_missing_dep_xyz\napp = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = load_error("axeom_test_needsdep:app")
    assert "ModuleNotFoundError" in message
    assert "axeom_missing_dep_xyz" in message
    assert "axeom_test_needsdep.py, line 1" in message


def test_missing_attribute() -> None:
    """A missing attribute names the attribute and the module."""
    message = load_error("json:nope.deeper")
    assert message == 'Attribute "nope.deeper" not found in module "json".'


def test_missing_attribute_in_file(tmp_path: Path) -> None:
    """A missing attribute in a file names the attribute and the file."""
    path = write(tmp_path, "axeom_test_noattr.py", "other = 1\n")
    message = load_error(f"{path}:app")
    assert message == f'Attribute "app" not found in module "{path}".'


def test_missing_file(tmp_path: Path) -> None:
    """A file path that does not exist says so."""
    path = tmp_path / "absent.py"
    assert load_error(f"{path}:app") == f'Could not import file "{path}": no such file.'


def test_file_raising_at_import_names_type_file_and_line(tmp_path: Path) -> None:
    """An exception at import gives its type, first message line, the file and the line."""
    path = write(
        tmp_path,
        "axeom_test_raiser.py",
        """\
        import os

        raise ValueError("bad setting\\nsecond line")
        """,
    )
    message = load_error(f"{path}:app")
    assert message.startswith(f'Error loading "{path}": ValueError: bad setting')
    assert "second line" not in message
    assert message.endswith(f"({path}, line 3)")
    assert "axeom_test_raiser" not in sys.modules


def test_module_raising_at_import_names_the_innermost_user_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the failure is in a helper the module calls, the helper's line is named."""
    helper = write(tmp_path, "axeom_test_helper.py", "def boom():\n    return 1 / 0\n")
    write(tmp_path, "axeom_test_caller.py", "import axeom_test_helper\naxeom_test_helper.boom()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = load_error("axeom_test_caller:app")
    assert message.startswith('Error loading "axeom_test_caller": ZeroDivisionError: ')
    assert message.endswith(f"({helper}, line 2)")


def test_file_with_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    """A syntax error names SyntaxError and the user's file and line, not the importer's."""
    path = write(tmp_path, "axeom_test_syntax.py", "x = 1\ndef broken(:\n    pass\n")
    message = load_error(f"{path}:app")
    assert message.startswith(f'Error loading "{path}": SyntaxError: ')
    assert "_importer.py" not in message
    assert message.endswith(f"({path}, line 2)")


def test_module_with_syntax_error_names_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A syntax error in a module loaded by name points at the module's file and line."""
    path = write(tmp_path, "axeom_test_syntaxmod.py", "x = (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = load_error("axeom_test_syntaxmod:app")
    assert "SyntaxError" in message
    assert "_importer.py" not in message
    assert f"({path}, line 1)" in message


def test_error_is_chained_from_nothing(tmp_path: Path) -> None:
    """The error suppresses the original traceback context (the CLI prints one line)."""
    path = write(tmp_path, "axeom_test_chain.py", "raise KeyError('k')\n")
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(f"{path}:app")
    assert info.value.__suppress_context__
    assert info.value.__cause__ is None


def test_bad_option_value_is_located_at_the_users_line(tmp_path: Path) -> None:
    """An option refused in a generated dataclass method (filename `<string>`) is
    reported at the app's `app.ws` line, not as `(<string>, line 13)`."""
    path = write(
        tmp_path,
        "axeom_test_bad_option.py",
        """\
        from axeom import Axeom
        from axeom.ws import ws_plugin

        app = Axeom().use(ws_plugin())
        app.ws("/a", message=lambda ws, msg: None, idle_timeout="5")
        """,
    )
    message = load_error(f"{path}:app")
    assert "idle_timeout must be" in message
    assert message.endswith(f"({path}, line 5)")
