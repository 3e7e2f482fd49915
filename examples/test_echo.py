"""The README's test of the echo example: ``python -m pytest examples/test_echo.py``.

pytest runs ``async def`` tests through pytest-trio once its configuration says
``trio_mode = true`` (this repository's pyproject.toml does; in your project put
``[tool.pytest.ini_options]`` / ``trio_mode = true`` in pyproject.toml, or
``[pytest]`` / ``trio_mode = true`` in pytest.ini). ``app`` comes from echo.py
beside this file: pytest puts the test file's folder on the import path.
"""

from echo import app  # examples/echo.py: pytest puts the test's folder on the path

from axeom.testing import TestClient


async def test_echo():
    async with TestClient(app) as client:
        async with client.websocket("/chat?room=1", headers={"x-user": "ann"}) as ws:
            await ws.send("hi")
            assert await ws.receive() == "Echo: hi"
