"""Processes of different wire versions refuse each other cleanly, never misread.

A real ``axeom run --workers 1`` tree gets messages of another version on
each of its inter-process sockets, sent by the test as a process of that
version would. The bytes are written out here rather than built with
``axeom.wire``: the parts another version relies on are frozen, and these
tests hold them to it.
"""

from __future__ import annotations

import array
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgpack
import pynng
import pytest
import trio
import websockets.sync.client as ws_sync

from axeom import Axeom, wire
from axeom import control as axeom_control
from axeom.ipc import RunPaths, control_address
from axeom.process import EXIT_CANNOT_START
from axeom.trio_runtime import accept_forever
from axeom.ws import ws_plugin
from axeom_acceptor._acceptor import Acceptor, AcceptorSettings
from tests._processes import Server, run_axeom, running_axeom, status, wait_for
from tests._wsraw import RawClient, close_code, upgrade_request

APP = "tests/apps/pubsub_app.py:app"
OTHER = 999  # a wire version no Axeom speaks yet
HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
CLOSE_1012 = b"\x88\x02\x03\xf4"  # a server's close frame, code 1012 (service restart)
OTHER_VERSION = 3  # the frozen outcome: "another version; I wrote the 101 and a 1012"
WAIT = 15.0

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def tree() -> Iterator[Server]:
    with running_axeom(APP, "--port", "0", "--workers", "1") as server:
        yield server


def worker_options(server: Server) -> dict[str, Any]:
    """The options the supervisor started the (one) worker with: its run
    directory, name and generation, whence every address of the tree."""
    worker = next(p for p in status(server.port)["processes"] if p["role"] == "worker")
    with open(f"/proc/{worker['pid']}/cmdline", "rb") as cmdline:
        arguments = [a for a in cmdline.read().split(b"\0") if a]
    options: dict[str, Any] = json.loads(arguments[-1])
    options["pid"] = worker["pid"]
    return options


def lines(server: Server, pattern: str) -> list[str]:
    return [line for line in server.text().splitlines() if re.search(pattern, line)]


def handoff_of_another_version(seq: int) -> bytes:
    """A hand-off datagram as an acceptor of version OTHER sends it: the
    frozen prefix and 101 head, then a body this install cannot read."""
    prefix = struct.pack("!4sHQ", b"AXho", OTHER, seq)
    return prefix + struct.pack("!I", len(HEAD)) + HEAD + b"\xc1 a body of version 999"


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_handoff_of_another_version_gets_101_then_close_1012(tree: Server) -> None:
    """The worker writes the 101 and a close 1012 (the client reconnects),
    answers "another version" so that the acceptor neither retries nor
    writes, logs it once, and keeps serving."""
    options = worker_options(tree)
    path = RunPaths(options["run_dir"]).handoff(options["worker_id"], options["generation"])
    with ExitStack() as stack:
        channel = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        channel.settimeout(WAIT)
        channel.connect(path)
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        for seq in (41, 42):
            client = stack.enter_context(socket.create_connection(listener.getsockname()))
            client.settimeout(WAIT)
            ours, _ = listener.accept()
            descriptor = array.array("i", [ours.fileno()]).tobytes()
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, descriptor)]
            channel.sendmsg([handoff_of_another_version(seq)], ancillary)
            answer = channel.recv(4096)
            magic, version = struct.unpack_from("!4sH", answer)
            assert magic == b"AXre" and version != OTHER
            assert struct.unpack_from("!QB", answer, 6) == (seq, OTHER_VERSION)
            ours.close()  # what the acceptor does with its copy on that answer
            assert read_to_end(client) == HEAD + CLOSE_1012
    pattern = rf"\[worker-1\].*hand-offs from the acceptor: wire version {OTHER}\b"
    wait_for(lambda: len(lines(tree, pattern)) >= 1, WAIT, "the worker's log line")
    with ws_sync.connect(f"{tree.url}/sub/t", open_timeout=WAIT) as ws:
        ws.send("pid")
        assert ws.recv(timeout=WAIT) == f"R:{options['pid']}"
    assert len(lines(tree, pattern)) == 1


def test_pubsub_messages_of_another_version_are_dropped_and_logged_once(tree: Server) -> None:
    """A batch for the hub and deliveries for a worker of another version are
    dropped, each sender logged once however many it sends; pub/sub goes on."""
    options = worker_options(tree)
    paths = RunPaths(options["run_dir"])
    key = f"{options['worker_id']}.{options['generation']}"
    with (
        pynng.Push0(dial=paths.hub, send_timeout=5000) as hub,
        pynng.Push0(
            dial=paths.worker_pubsub(options["worker_id"], options["generation"]),
            send_timeout=5000,
        ) as worker,
    ):
        for _ in range(3):
            hub.send(msgpack.packb([OTHER, key, [[1, "t", "from the future"]], {}]))
            worker.send(msgpack.packb([OTHER, [[1, "t", "from the future"]]]))
        # Markers, after the rest on the same pipe: once they are logged, so is the rest.
        hub.send(msgpack.packb([OTHER, "marker.1", [], {}]))
        worker.send(msgpack.packb([OTHER + 1, []]))
        hub_pattern = rf"\[supervisor\].*pub/sub batches from {{}}: wire version {OTHER}\b"
        worker_pattern = r"\[worker-1\].*pub/sub deliveries from the hub: wire version {}\b"
        wait_for(
            lambda: bool(
                lines(tree, hub_pattern.format("marker.1"))
                and lines(tree, worker_pattern.format(OTHER + 1))
            ),
            WAIT,
            "the markers' log lines",
        )
    assert len(lines(tree, hub_pattern.format(re.escape(key)))) == 1
    assert len(lines(tree, worker_pattern.format(OTHER))) == 1
    with ws_sync.connect(f"{tree.url}/sub/room", open_timeout=WAIT) as ws:
        wait_for(lambda: status(tree.port)["pubsub"]["topics"] >= 1, WAIT, "the subscription")
        axeom_control.publish("room", "hello", port=tree.port)  # through the hub
        assert ws.recv(timeout=WAIT) == "hello"  # "from the future" was never delivered


def control(port: int, request: dict[str, Any]) -> dict[str, Any]:
    with pynng.Req0(dial=control_address(port), recv_timeout=5000, send_timeout=5000) as req:
        req.send(msgpack.packb(request))
        reply: dict[str, Any] = msgpack.unpackb(req.recv())
    return reply


@pytest.mark.parametrize(
    ("request_", "version"),
    [({"v": OTHER, "cmd": "status"}, OTHER), ({"cmd": "status"}, 0)],
    ids=["another version", "before versioning"],
)
def test_a_control_request_of_another_version_gets_an_error(
    tree: Server, request_: dict[str, Any], version: int
) -> None:
    """The reply says which versions meet, in the envelope every version
    reads; the server logs it once, however often it is asked."""
    for _ in range(2):
        reply = control(tree.port, request_)
        assert reply["ok"] is False and reply["error"] == "wire_version"
        assert re.fullmatch(
            rf"this server speaks wire version \d+, the request came in version {version}: "
            "use the axeom of the install that runs the server",
            reply["message"],
        )
    pattern = rf"\[supervisor\].*control requests from a client: wire version {version}\b"
    wait_for(lambda: bool(lines(tree, pattern)), WAIT, "the supervisor's log line")
    assert len(lines(tree, pattern)) == 1


def test_axeom_status_against_a_server_of_another_version_prints_one_line() -> None:
    """No traceback: one line naming both versions, exit status 1."""
    with socket.create_server(("127.0.0.1", 0)) as reserved:  # keeps the port number ours
        port = reserved.getsockname()[1]
        address = control_address(port)
        try:
            with pynng.Rep0(listen=address, recv_timeout=20_000, send_timeout=5000) as rep:

                def answer() -> None:
                    try:
                        while True:
                            rep.recv()
                            rep.send(msgpack.packb({"v": OTHER, "ok": True, "result": {}}))
                    except pynng.exceptions.NNGException:
                        return  # closed (or nobody asked within the timeout)

                answering = threading.Thread(target=answer, daemon=True)
                answering.start()
                result = run_axeom("status", "--port", str(port), timeout=20)
            answering.join(10)
        finally:
            if os.path.exists(address.removeprefix("ipc://")):
                os.unlink(address.removeprefix("ipc://"))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"Error: the server on port {port} speaks wire version {OTHER}, this axeom speaks "
        r"\d+: use the axeom of the install that runs the server\n",
        result.stderr,
    ), result.stderr


def test_a_child_that_reports_another_version_is_replaced() -> None:
    """The supervisor logs the child once, naming both versions, and has it
    replaced by the restart policy rather than ignoring it."""
    with running_axeom(APP, "--port", "0", "--workers", "1") as server:
        options = worker_options(server)
        name, generation = options["worker_id"], options["generation"]
        report = {"v": OTHER, "t": "hb", "id": name, "gen": generation, "pid": 4242, "f": {}}
        with pynng.Push0(dial=RunPaths(options["run_dir"]).reports, send_timeout=5000) as push:
            for _ in range(3):
                push.send(msgpack.packb(report))
            push.send(msgpack.packb({**report, "id": "marker"}))  # after the rest, same pipe
            marker = rf"reports from marker\.{generation} \(pid 4242\): wire version {OTHER}\b"
            wait_for(lambda: bool(lines(server, marker)), WAIT, "the marker's log line")
        found = lines(server, rf"\[supervisor\].*reports from {name}\.{generation} \(pid 4242\)")
        assert len(found) == 1
        assert re.search(rf"wire version {OTHER}, this process speaks \d+ .*stopping it", found[0])

        def replaced() -> bool:
            worker = next(p for p in status(server.port)["processes"] if p["name"] == name)
            return worker["pid"] not in (None, options["pid"]) and worker["restarts"] == 1

        wait_for(replaced, 30, f"{name} to be replaced")


# -- the acceptor's side, against a worker of another version ---------------------------

CHAT = Axeom().use(ws_plugin())
CHAT.ws("/chat", message=lambda ws, msg: None)


async def worker_of_another_version(
    listener: trio.socket.SocketType, outcome: int, offered: list[int]
) -> None:
    """A worker end of the hand-off channel that speaks version OTHER: it
    reads the frozen prefix and 101, writes 101 + 1012 if it says so, and
    answers in its own version."""
    channel, _ = await listener.accept()
    with channel:
        while True:
            data, ancillary, _, _ = await channel.recvmsg(1 << 21, socket.CMSG_SPACE(4))
            if not data:
                return
            (fd,) = array.array("i", ancillary[0][2][:4])
            seq = struct.unpack_from("!4sHQ", data)[2]
            (length,) = struct.unpack_from("!I", data, 14)
            offered.append(outcome)
            with socket.socket(fileno=fd) as moved:
                if outcome == OTHER_VERSION:
                    moved.sendall(data[18 : 18 + length] + CLOSE_1012)
            answer = struct.pack("!4sH", b"AXre", OTHER) + struct.pack("!QB", seq, outcome)
            await channel.send(answer)


@pytest.mark.parametrize(
    ("outcome", "expected"), [(OTHER_VERSION, 101), (2, 503)], ids=["1012", "refused"]
)
async def test_an_answer_of_another_version_is_read_by_its_frozen_codes(
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    outcome: int,
    expected: int,
) -> None:
    """ "Another version" from a worker: the client has the worker's 101 +
    1012 and nothing more from the acceptor. A refusal: a 503, before any 101."""
    offered: list[int] = []
    with ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        listener.setblocking(False)
        settings = AcceptorSettings(run_dir=str(tmp_path), heartbeat_interval=1.0)
        acceptor = Acceptor(CHAT, listener, settings)
        acceptor._nursery = nursery
        channels = stack.enter_context(trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        await channels.bind(str(tmp_path / "w1.sock"))
        channels.listen(4)
        nursery.start_soon(worker_of_another_version, channels, outcome, offered)
        acceptor.update_workers([wire.WorkerEntry("w1", 1, str(tmp_path / "w1.sock"))])
        stack.callback(lambda: [slot.close() for slot in acceptor.slots.values()])
        nursery.start_soon(accept_forever, listener, acceptor._on_client)
        client = await RawClient.connect(listener.getsockname()[1])
        with caplog.at_level(logging.ERROR, "axeom.acceptor"), trio.fail_after(WAIT):
            await client.send(upgrade_request("/chat"))
            code, _ = await client.read_head()
            if code == 101:
                opcode, payload = await client.read_frame()
                assert (opcode, close_code(payload)) == (0x8, 1012)
                assert await client.read_frame() == (-1, b"")  # and nothing after it
        await client.aclose()
        nursery.cancel_scope.cancel()
    assert code == expected
    assert offered == [outcome]
    assert (acceptor.handed_total, acceptor.unplaced_total) == (0, 0 if code == 101 else 1)
    logged = [r.getMessage() for r in caplog.records if f"wire version {OTHER}" in r.getMessage()]
    assert len(logged) == 1 and "from w1" in logged[0]


@pytest.mark.parametrize(
    "module", ["axeom_acceptor", "axeom_workers", "axeom_supervisor.redis_bridge"]
)
@pytest.mark.parametrize(
    "arguments",
    [[], [json.dumps({"v": OTHER, "app": "x"})], ["not json"]],
    ids=["by-hand", "other-version", "garbage"],
)
def test_a_child_refuses_settings_it_cannot_read(module: str, arguments: list[str]) -> None:
    """Started by hand, or with settings of another version: one line, exit 4
    (the supervisor gives up rather than restart into the same failure)."""
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == EXIT_CANNOT_START, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the "), result.stderr
    assert "started by `axeom run --workers N`" in lines[0]
    if arguments and arguments[0].startswith("{"):
        assert f"wire version {OTHER}" in lines[0]
