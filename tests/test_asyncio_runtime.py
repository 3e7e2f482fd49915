"""The asyncio runtime's single-process server, on asyncio and on uvloop, in a
real subprocess on 127.0.0.1, with real clients (the test kit's trio-websocket
client, websockets' client, raw sockets)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pynng
import pytest
import trio
import websockets.sync.client as ws_sync
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from axeom.asyncio_runtime import LoopUnavailable, new_event_loop
from axeom.asyncio_runtime._guest import call_in_asyncio, run_trio_guest
from axeom.testing import open_client
from tests._processes import (
    Server,
    axeom_command,
    limit_descriptors,
    run_axeom,
    running_command,
    wait_for,
)
from tests._wsraw import RawClient, client_frame, close_code, upgrade_request

APP = "tests/apps/asyncio_app.py:app"
LOOPS = ["asyncio", "uvloop"]


def server_command(loop: str, *extra: str) -> list[str]:
    """``axeom run APP --workers 0 --loop LOOP``: the asyncio runtime's single process."""
    return axeom_command("run", APP, "--port", "0", "--workers", "0", "--loop", loop, *extra)


@pytest.fixture(scope="module")
def short_deadline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config file with a 1 s request deadline, so that the 408 is quick."""
    config = tmp_path_factory.mktemp("config") / "axeom.toml"
    config.write_text("[server]\nrequest_timeout = 1\n")
    return config


@pytest.fixture(scope="module", params=LOOPS)
def server(request: pytest.FixtureRequest, short_deadline: Path) -> Iterator[Server]:
    """One server per loop for the tests that do not stop it."""
    with running_command(server_command(request.param, "--config", str(short_deadline))) as running:
        yield running


def url(server: Server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def echo(server: Server, path: str, messages: list[str | bytes]) -> list[str | bytes]:
    async with open_client(url(server, path)) as ws:
        replies = []
        for message in messages:
            await ws.send(message)
            replies.append(await ws.receive())
        return replies


async def raw_upgrade(server: Server, path: str, first: bytes = b"") -> RawClient:
    client = await RawClient.connect(server.port)
    await client.send(upgrade_request(path) + first)
    status, _ = await client.read_head()
    assert status == 101
    return client


async def read_close(client: RawClient) -> int:
    """The code of the server's close frame (pings and messages skipped)."""
    while True:
        opcode, payload = await client.read_frame()
        if opcode == 0x8:
            return close_code(payload)
        assert opcode != -1, "connection closed without a close frame"


async def test_echo_text_and_binary(server: Server) -> None:
    """Text comes back as text, bytes as bytes."""
    assert await echo(server, "/chat", ["hi", b"\x00\x01"]) == ["Echo: hi", "Echo: b'\\x00\\x01'"]
    assert await echo(server, "/raw", ["hi", b"\x00\x01"]) == ["hi", b"\x00\x01"]


async def test_coroutine_handler_awaits_asyncio_libraries(server: Server) -> None:
    """A handler awaits asyncio.sleep and an asyncio TCP round trip, in a task."""
    assert await echo(server, "/net", ["ping", "pong"]) == ["PING from Task", "PONG from Task"]


async def test_order_is_kept_under_a_slow_handler_and_neighbours_go_on(server: Server) -> None:
    """Messages after a slow one wait for it, in order; another socket is not held."""
    async with open_client(url(server, "/slow")) as slow, open_client(url(server, "/chat")) as ws:
        for message in ("slow", "1", "2"):
            await slow.send(message)
        await ws.send("meanwhile")
        assert await ws.receive() == "Echo: meanwhile"
        with trio.move_on_after(0.2):  # the slow handler still sleeps
            await slow.receive()
            raise AssertionError("a reply before the slow handler was done")
        assert [await slow.receive() for _ in range(3)] == ["Slow: slow", "Slow: 1", "Slow: 2"]


async def test_backpressure_statuses_and_drain(server: Server) -> None:
    """Over backpressure_limit sends say BACKPRESSURE then DROPPED; drain runs
    once the outbox is written."""
    async with open_client(url(server, "/flood")) as ws:
        await ws.send("go")
        queued = 0
        while isinstance(reply := await ws.receive(), bytes):
            queued += 1
        assert reply == "drained: BACKPRESSURE,DROPPED,QUEUED"
        assert 8 <= queued < 100  # the sends after the limit were dropped


async def test_awaited_sends_never_drop_for_a_slow_reader(server: Server) -> None:
    """`await ws.send` waits while a reader that does not read holds the outbox full."""
    client = await raw_upgrade(server, "/awaited", client_frame(0x1, b"300"))
    await trio.sleep(0.3)  # the handler fills the outbox and the socket, and waits
    received = 0
    while True:
        opcode, payload = await client.read_frame()
        if opcode == 0x1:
            assert payload == b"done"
            break
        assert opcode == 0x2
        received += 1
    assert received == 300
    await client.aclose()


@pytest.mark.parametrize(
    ("path", "frame", "code"),
    [
        ("/raw", client_frame(0x3, b""), 1002),  # a reserved opcode
        ("/raw", client_frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
        ("/max", client_frame(0x2, b"x" * 2000), 1009),  # over max_message_size
        ("/boom", client_frame(0x1, b"boom"), 1011),  # the handler raised
    ],
    ids=["1002", "1007", "1009", "1011"],
)
async def test_close_codes_with_a_healthy_neighbour(
    server: Server, path: str, frame: bytes, code: int
) -> None:
    """Broken input and failing handlers close that socket only, with the right code."""
    async with open_client(url(server, "/boom")) as neighbour:
        client = await raw_upgrade(server, path)
        await client.send(frame)
        assert await read_close(client) == code
        await client.aclose()
        await neighbour.send("still here")
        assert await neighbour.receive() == "Echo: still here"


async def test_a_trio_primitive_in_a_handler_names_the_loop(server: Server) -> None:
    """Awaiting trio on asyncio closes 1011 and logs which loop and which option."""
    client = await raw_upgrade(server, "/trio", client_frame(0x1, b"x"))
    assert await read_close(client) == 1011
    await client.aclose()
    wait_for(lambda: "--loop trio" in server.text(), 10, "the wrong-loop line", output=server.text)
    assert "event loop (--loop " in server.text()


async def test_first_frame_in_the_handshake_write_is_not_lost(server: Server) -> None:
    """Bytes read with the request head are the socket's first frames."""
    first = client_frame(0x1, b"early") + client_frame(0x1, b"second")
    client = await raw_upgrade(server, "/chat", first)
    assert await client.read_frame() == (0x1, b"Echo: early")
    assert await client.read_frame() == (0x1, b"Echo: second")
    await client.aclose()


async def test_idle_timeout_closes_1001(server: Server) -> None:
    """A socket that sends nothing for idle_timeout is closed with 1001."""
    client = await raw_upgrade(server, "/idle")
    with trio.fail_after(5):
        assert await read_close(client) == 1001
    await client.aclose()


async def test_unanswered_keepalive_pings_close_1011(server: Server) -> None:
    """A client that never answers pings is closed after ping_timeout."""
    client = await raw_upgrade(server, "/ping")
    pinged = False
    with trio.fail_after(5):
        while True:
            opcode, payload = await client.read_frame()
            if opcode == 0x9:
                pinged = True
            elif opcode == 0x8:
                assert close_code(payload) == 1011
                break
    assert pinged
    await client.aclose()


def deflate_echo(port: int) -> tuple[object, list[str]]:
    factory = ClientPerMessageDeflateFactory()
    with ws_sync.connect(f"ws://127.0.0.1:{port}/z", extensions=[factory]) as client:
        client.send("ab" * 1000)
        reply = client.recv(timeout=5)
        return reply, [str(e) for e in client.protocol.extensions]


async def test_permessage_deflate(server: Server) -> None:
    """A client offering permessage-deflate gets it, and compressed messages echo."""
    reply, extensions = await trio.to_thread.run_sync(deflate_echo, server.port)
    assert reply == "ab" * 2000
    assert extensions and "PerMessageDeflate" in extensions[0]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (upgrade_request("/nowhere"), 404),
        (b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n", 426),
        (b"GET /chat HTTP/1.1\nHost: x\n\n", 400),
        (b"GET /chat HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /chat HTTP/1.1\r\nHost: x\r\n", 408),  # unfinished: the 1 s deadline
    ],
    ids=["404", "426", "400", "431", "408"],
)
async def test_rejections_have_their_status(
    server: Server, request_bytes: bytes, status: int
) -> None:
    """Every refused request gets a complete HTTP answer with its status."""
    client = await RawClient.connect(server.port)
    await client.send(request_bytes)
    with trio.fail_after(5):
        got, _ = await client.read_head()
    assert got == status
    await client.aclose()


def test_status_over_the_control_socket(server: Server) -> None:
    """`axeom status` reaches the asyncio server (its control socket runs on pynng)."""
    result = run_axeom("status", "--port", str(server.port), "--json", timeout=20)
    assert result.returncode == 0, result.stderr
    assert '"role": "server"' in result.stdout or '"server"' in result.stdout


@pytest.mark.parametrize("loop", LOOPS)
async def test_sigterm_drains_with_1001_and_runs_close_handlers(loop: str, tmp_path: Path) -> None:
    """SIGTERM: every socket gets 1001, close handlers (even async ones) run, exit 0."""
    record = tmp_path / "closed"
    with running_command(
        server_command(loop, "--graceful-timeout", "5"), env={"AXEOM_TEST_RECORD": str(record)}
    ) as running:
        clients = [await raw_upgrade(running, "/chat") for _ in range(3)]
        os.kill(running.proc.pid, signal.SIGTERM)
        for client in clients:
            assert await read_close(client) == 1001
            await client.send(client_frame(0x8, b"\x03\xe9"))  # the closing handshake
            await client.aclose()
        assert await trio.to_thread.run_sync(running.proc.wait, 10) == 0
    assert record.read_text().split() == ["1001"] * 3


@pytest.mark.parametrize("loop", LOOPS)
async def test_out_of_descriptors_answers_503_never_a_dead_101(loop: str) -> None:
    """More sockets than the process can hold: 101 and an echo, or a 503."""
    command = server_command(loop)
    with running_command(command, preexec_fn=lambda: limit_descriptors(64, 64)) as running:
        clients: list[RawClient] = []
        codes = set()
        try:
            for _ in range(80):
                client = await RawClient.connect(running.port)
                clients.append(client)
                await client.send(upgrade_request("/raw"))
                with trio.fail_after(5):
                    status, _ = await client.read_head()
                codes.add(status)
                if status == 101:
                    await client.send(client_frame(0x1, b"alive"))
                    assert await client.read_frame() == (0x1, b"alive")
        finally:
            for client in clients:
                await client.aclose()
        assert codes == {101, 503}
        assert "answering new connections 503" in running.text()


def test_uvloop_missing_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for uvloop without it installed names the extra to install."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(LoopUnavailable, match=r"pip install 'axeom\[uvloop\]'"):
        new_event_loop("uvloop")


async def test_client_gone_mid_handler_costs_nothing_else(server: Server) -> None:
    """A client gone while its coroutine handler sleeps: the next socket is served."""
    client = await raw_upgrade(server, "/slow", client_frame(0x1, b"slow"))
    await client.aclose()
    assert await echo(server, "/slow", ["after"]) == ["Slow: after"]


@pytest.mark.parametrize("loop", LOOPS)
def test_trio_code_runs_as_a_guest_and_awaits_asyncio(loop: str) -> None:
    """trio code (pynng included) runs unchanged as a guest of the asyncio
    loop and awaits asyncio coroutines; cancelling the host side ends it."""

    async def asyncio_side(value: int) -> str:
        await asyncio.sleep(0)
        return f"asyncio {value} in {type(asyncio.current_task()).__name__}"

    async def trio_side() -> list[str]:
        address = f"inproc://guest-{loop}"
        with pynng.Rep0(listen=address) as rep, pynng.Req0(dial=address) as req:
            await req.asend(b"ping")
            await rep.asend(await rep.arecv())
            assert await req.arecv() == b"ping"
        await trio.sleep(0.01)
        return [await call_in_asyncio(asyncio_side, n) for n in range(2)]

    async def host() -> list[str]:
        result = await run_trio_guest(trio_side)
        # One trio run per thread: a process's trio code shares one guest run.
        forever = asyncio.ensure_future(run_trio_guest(trio.sleep_forever))
        await asyncio.sleep(0.05)
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        return result

    event_loop = new_event_loop(loop)
    try:
        assert event_loop.run_until_complete(host()) == ["asyncio 0 in Task", "asyncio 1 in Task"]
    finally:
        event_loop.close()
