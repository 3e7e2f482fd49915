"""The test kit as a user meets it: the README's test runs as shown, and a failing
assert reads as the assert, not as nested exception groups."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from axeom import Axeom, Unauthorized
from axeom.testing import HandshakeRejected, TestClient
from axeom.ws import ws_plugin
from tests._processes import ROOT

README = Path(ROOT) / "README.md"
EXAMPLE_TEST = Path(ROOT) / "examples" / "test_echo.py"


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def run_pytest(cwd: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_readme_test_snippet_is_the_example_file() -> None:
    """The README shows examples/test_echo.py itself (its code, import of app included)."""
    snippet = code_blocks(readme_section("Testing your app"), "python")[0]
    assert "from echo import app" in snippet
    assert snippet in EXAMPLE_TEST.read_text()


def test_readme_test_command_runs_as_shown() -> None:
    """`python -m pytest examples/test_echo.py` from the repository root passes, after
    the block's install line (the `test` extra: `pip install -e .` has no pytest)."""
    commands = code_blocks(readme_section("Testing your app"), "sh")
    lines = [line.split("#")[0].strip() for line in commands[0].splitlines()]
    assert lines == ["pip install -e '.[test]'", "python -m pytest examples/test_echo.py"]
    result = run_pytest(ROOT, "examples/test_echo.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_readme_test_runs_in_a_project_with_the_readme_setting(tmp_path: Path) -> None:
    """The example and its test copied into a fresh project whose only pytest setting
    is the README's `trio_mode = true` block: it passes there too."""
    toml = code_blocks(readme_section("Testing your app"), "toml")[0]
    (tmp_path / "pyproject.toml").write_text(toml)
    shutil.copy(Path(ROOT) / "examples" / "echo.py", tmp_path / "echo.py")
    shutil.copy(EXAMPLE_TEST, tmp_path / "test_echo.py")
    result = run_pytest(tmp_path, "-p", "no:cacheprovider", "test_echo.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def echo_app() -> Axeom:
    app = Axeom().use(ws_plugin())
    app.ws("/chat", message=lambda ws, msg: ws.send(f"Echo: {msg}"))
    return app


async def test_failing_assert_inside_a_socket_is_the_assertion_error() -> None:
    """A failing assert in `client.websocket(...)` leaves TestClient as itself."""
    with pytest.raises(AssertionError) as info:
        async with TestClient(echo_app()) as client:
            async with client.websocket("/chat") as ws:
                await ws.send("hi")
                assert await ws.receive() == "Echo: hello"
    assert type(info.value) is AssertionError
    assert info.value.__context__ is None  # no exception group behind it either


async def test_failing_assert_inside_the_client_is_the_assertion_error() -> None:
    """The same for an assert directly inside `async with TestClient(app)`."""
    with pytest.raises(AssertionError) as info:
        async with TestClient(echo_app()) as client:
            response = await client.request("GET", "/nowhere")
            assert response.status == 200
    assert type(info.value) is AssertionError


async def test_other_exceptions_come_out_as_themselves() -> None:
    """Not only asserts: a HandshakeRejected raised in the block is itself too, and its
    body is bytes like Response.body, with .text for the decoded form."""
    app = echo_app()

    @app.derive
    def who(ctx):  # type: ignore[no-untyped-def]
        raise Unauthorized("send x-user")

    with pytest.raises(HandshakeRejected) as info:
        async with TestClient(app) as client, client.websocket("/chat"):
            pass
    assert info.value.status == 401
    assert info.value.body == b"send x-user\n" and info.value.text == "send x-user\n"
