"""examples/typed_chat.py works as the README shows: the client session through
`--workers 2` with the client the README uses, the same through the test kit,
and its AsyncAPI document (served over HTTP, printed by `axeom asyncapi`, copied
in the README) valid and up to date."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio

from axeom.testing import HandshakeRejected, TestClient, open_client
from tests._processes import ROOT, run_axeom, running_axeom, stop
from tests.test_asyncapi import assert_valid

README = Path(ROOT) / "README.md"
EXAMPLE = "examples/typed_chat.py:app"
# The command the README says printed its YAML copy.
YAML_COMMAND = ("asyncapi", EXAMPLE, "--yaml", "--title", "Typed chat")
# Terminal control sequences the interactive client writes around each line.
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[78])|\r")


def _readme_block(after: str, fence: str) -> str:
    """The fenced block of kind ``fence`` that follows the first line containing ``after``."""
    text = README.read_text()
    start = text.index(after)
    opening = text.index(f"```{fence}\n", start) + len(f"```{fence}\n")
    return text[opening : text.index("```\n", opening)]


def _session() -> tuple[str, list[str], list[str]]:
    """The README's client session: (URL, what is typed, what the server answers)."""
    lines = _readme_block("interactive client", "console").splitlines()
    url = lines[0].split("'")[1]
    typed = [line[2:] for line in lines if line.startswith("> ")]
    answers = [line[2:] for line in lines if line.startswith("< ")]
    return url, typed, answers


def test_readme_yaml_is_what_axeom_asyncapi_prints() -> None:
    """The README's copy of the example's AsyncAPI document is the command's output."""
    result = run_axeom(*YAML_COMMAND)
    assert result.returncode == 0, result.stderr
    assert _readme_block("prints it (a test keeps", "yaml") == result.stdout


def test_example_document_is_valid_asyncapi() -> None:
    """The example's document passes the AsyncAPI 3.0.0 JSON Schema and says
    what the README says: two events, one with a reply, the error message."""
    from examples.typed_chat import app

    document = app.asyncapi()
    assert_valid(document)
    channel = document["channels"]["chat_room"]
    assert channel["address"] == "/chat/{room}"
    assert set(channel["bindings"]["ws"]["query"]["properties"]) == {"user"}
    assert {"say", "members", "members.reply", "Said", "error"} == set(channel["messages"])
    operations = document["operations"]
    assert "reply" in operations["chat_room.receive.members"]
    assert "reply" not in operations["chat_room.receive.say"]
    assert operations["chat_room.send"]["action"] == "send"


async def test_example_session_through_the_test_kit() -> None:
    """The README's session, in process: each typed line gets the answer shown."""
    from examples.typed_chat import app

    url, typed, answers = _session()
    target = url.split("8000", 1)[1]
    async with TestClient(app) as client, client.websocket(target) as ws:
        for line, answer in zip(typed, answers, strict=True):
            await ws.send(line)
            assert json.loads(await ws.receive()) == json.loads(answer)


async def test_example_refuses_a_bad_handshake_with_400_json() -> None:
    """A bad room name and a missing user: 400 naming both, before the upgrade."""
    from examples.typed_chat import app

    async with TestClient(app) as client:
        with pytest.raises(HandshakeRejected) as refused:
            async with client.websocket("/chat/Not%20a%20room"):
                pass
    assert refused.value.response.status == 400
    errors = json.loads(refused.value.body)["errors"]
    assert {(e["in"], e["loc"][0]) for e in errors} == {("params", "room"), ("query", "user")}


def _interactive_client(url: str, typed: list[str], answers: int) -> list[str]:
    """Run ``python -m websockets URL`` as the README does, type ``typed``,
    and return the server's lines once ``answers`` of them arrived."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "websockets", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            for line in _ESCAPES.sub("", raw).split("\n"):
                if line.startswith("< "):
                    seen.append(line[2:])
            if len(seen) >= answers:
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.stdin.write("".join(line + "\n" for line in typed))
        proc.stdin.flush()
        assert done.wait(30), f"the client printed {seen}"
    finally:
        proc.stdin.close()  # end of input: the client closes the socket and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
        proc.stdout.close()
    return seen


def _get(url: str, deadline: float = 20.0) -> bytes:
    """GET ``url`` (the acceptor answers HTTP routes); bounded retries while it starts."""
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.headers["content-type"] == "application/json"
                return response.read()  # type: ignore[no-any-return]
        except urllib.error.URLError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


@pytest.mark.timeout(90)
async def test_example_as_the_readme_shows_with_two_workers() -> None:
    """`axeom run examples/typed_chat.py:app --workers 2`: the README's session with
    its client gives the README's answers; a second user hears the first; the
    document is served over HTTP with the address the client used."""
    url, typed, answers = _session()
    with running_axeom(EXAMPLE, "--workers", "2", "--port", "0", ready_timeout=60) as server:
        base = f"127.0.0.1:{server.port}"
        url = url.replace("127.0.0.1:8000", base)
        seen = await trio.to_thread.run_sync(_interactive_client, url, typed, len(answers))
        assert [json.loads(line) for line in seen] == [json.loads(a) for a in answers]
        with trio.fail_after(30):
            async with (
                open_client(f"ws://{base}/chat/dev?user=bob") as bob,
                open_client(f"ws://{base}/chat/dev?user=cy") as cy,
            ):
                # cy's first reply comes after its open handler, which awaits the
                # subscription until publishes from every worker reach it.
                await cy.send('{"type": "members", "id": 1}')
                assert json.loads(await cy.receive())["id"] == 1
                await bob.send('{"type": "say", "text": "hi"}')
                said = {"type": "said", "user": "bob", "text": "hi"}
                assert json.loads(await cy.receive()) == said
                assert json.loads(await bob.receive()) == said
        document = json.loads(await trio.to_thread.run_sync(_get, f"http://{base}/asyncapi.json"))
        assert_valid(document)
        assert document["servers"]["default"]["host"] == base
        assert document["info"]["title"] == "Typed chat"
        assert stop(server.proc) in (0, -15)
