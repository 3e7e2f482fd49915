"""The tree shows the architecture, and dependencies point one way.

The acceptor, the workers and the supervisor each have a package of their own
and build only on what ``axeom`` makes public: never on a private ``axeom._*``
module, and never on each other. ``axeom`` itself imports none of them (it
starts them as ``python -m`` processes). The README's layout table names the
same folders as the tree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top-level folder -> the import package inside it, one per process role.
ROLE_PACKAGES = {
    "acceptor": "axeom_acceptor",
    "workers": "axeom_workers",
    "supervisor": "axeom_supervisor",
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module a file imports (``from a import b`` counts as
    ``a.b`` too, since ``b`` may be a module), with its line number."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def violations(folder: Path, allowed_own: str) -> list[str]:
    """Imports in ``folder`` of a private ``axeom._*`` module or of another role,
    each as ``path:line imports module`` (paths relative to the folder's parent)."""
    others = set(ROLE_PACKAGES.values()) - {allowed_own}
    found = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imported_modules(path):
            parts = module.split(".")
            where = f"{path.relative_to(folder.parent)}:{line} imports {module}"
            private = parts[0] == "axeom" and any(part.startswith("_") for part in parts[1:])
            if private or parts[0] in others:
                found.append(where)
    return found


@pytest.mark.parametrize("folder", sorted(ROLE_PACKAGES))
def test_roles_import_only_public_axeom(folder: str) -> None:
    """A role package imports ``axeom``'s public modules and its own, nothing else of ours."""
    package = ROLE_PACKAGES[folder]
    assert (ROOT / folder / package / "__init__.py").is_file()
    assert violations(ROOT / folder, package) == []


def test_axeom_does_not_import_the_roles() -> None:
    """``axeom`` starts the role processes by module name; it never imports them."""
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "axeom").rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] in ROLE_PACKAGES.values()
    ]
    assert found == []


def test_the_rule_catches_a_private_import(tmp_path: Path) -> None:
    """The checker itself: a private import and a cross-role import are both reported."""
    folder = tmp_path / "workers"
    folder.mkdir()
    (folder / "bad.py").write_text(
        "from axeom._app import Axeom\nimport axeom_acceptor\nfrom axeom import _config\n"
        "from axeom import ipc\n"
    )
    found = [entry.split(" imports ")[1] for entry in violations(folder, "axeom_workers")]
    assert found == ["axeom._app", "axeom._app.Axeom", "axeom_acceptor", "axeom._config"]


def test_readme_layout_table_matches_the_tree() -> None:
    """Every folder the README's layout table names exists, and every package
    folder of the tree is in the table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+)/`", section, re.MULTILINE))
    for entry in listed:
        assert (ROOT / entry).is_dir(), f"README lists {entry}/, which does not exist"
    packages = {"axeom", "axeom/trio_runtime", "axeom/ws"} | {
        f"{folder}/{package}" for folder, package in ROLE_PACKAGES.items()
    }
    assert packages <= listed
    processes = section.split("Processes", 1)[1]
    for role in ("supervisor", "acceptor", "worker", "hub", "Redis bridge"):
        assert role in processes, f"the README's process table does not list the {role}"
