"""`await ws.send(x)` and `await ws.close()`: the websockets/FastAPI habit is flow
control, not a crash; the plain call stays the non-blocking one returning a status."""

from __future__ import annotations

import functools
import socket
import struct
from pathlib import Path
from typing import Any

import trio
import websockets.sync.client as ws_sync
from websockets.exceptions import ConnectionClosedOK

from axeom import Axeom, serve
from axeom.testing import TestClient
from axeom.ws import SendResult, SendStatus, ws_plugin
from tests._processes import running_axeom
from tests._wsraw import RawClient, client_frame, close_code, upgrade_request

COUNT = 300
# Large enough for the outbox to go over a small limit (64 KiB) with every send, and
# for COUNT of them to fill the loopback buffers of a client that does not read.
CHUNK = 64 * 1024
LIMIT = 64 * 1024


def awaiting_app(**defaults: Any) -> tuple[Axeom, list[Any]]:
    """/loop sends COUNT numbered texts with `await ws.send`, then `await ws.close`;
    /bulk sends COUNT chunks with `await ws.send`. Returns the app and a record of
    (socket, statuses, progress) the test can watch."""
    app = Axeom().use(ws_plugin(**defaults))
    record: list[Any] = []

    async def loop(ws: Any, msg: Any) -> None:
        statuses = []
        for i in range(COUNT):
            statuses.append(await ws.send(f"{msg}-{i}"))
        record.append(statuses)
        await ws.close(1000, "done")
        record.append(ws.buffered_amount)  # the close frame is written when it returns

    async def bulk(ws: Any, msg: Any) -> None:
        progress = [0]
        statuses: list[SendStatus] = []
        record.append((ws, statuses, progress))
        for i in range(COUNT):
            statuses.append(await ws.send(i.to_bytes(4, "big") + bytes(CHUNK - 4)))
            progress[0] = i + 1

    app.ws("/loop", message=loop)
    app.ws("/bulk", message=bulk)
    return app, record


async def test_awaited_sends_in_the_test_kit() -> None:
    """A handler awaiting ws.send in a loop sends everything in order, no 1011; the
    awaited results are the statuses; `await ws.close()` closes with its code."""
    app, record = awaiting_app(backpressure_limit=1000)
    async with TestClient(app) as client, client.websocket("/loop") as ws:
        await ws.send("m")
        received = [await ws.receive() for _ in range(COUNT)]
        await ws.wait_closed()
    assert received == [f"m-{i}" for i in range(COUNT)]
    assert ws.close_code == 1000 and ws.close_reason == "done"
    assert record[1] == 0
    assert all(
        type(s) is SendStatus and s in (SendStatus.QUEUED, SendStatus.BACKPRESSURE)
        for s in record[0]
    )


def read_loop(port: int) -> tuple[list[object], int | None]:
    with ws_sync.connect(f"ws://127.0.0.1:{port}/loop", open_timeout=5) as client:
        client.send("m")
        received = []
        try:
            while True:
                received.append(client.recv(timeout=10))
        except ConnectionClosedOK as closed:
            return received, closed.rcvd.code if closed.rcvd else None


async def test_awaited_sends_over_a_real_server(nursery: trio.Nursery) -> None:
    """The same over TCP with a websockets client: every message in order, then 1000."""
    app, _ = awaiting_app(backpressure_limit=LIMIT)
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0))
    received, code = await trio.to_thread.run_sync(read_loop, port)
    assert received == [f"m-{i}" for i in range(COUNT)]
    assert code == 1000


async def wait_until_stalled(progress: list[int], deadline: float) -> int:
    """Poll until the handler's progress stops moving (same value 0.2 s apart)."""
    with trio.fail_after(deadline):
        last = -1
        while progress[0] != last:
            last = progress[0]
            await trio.sleep(0.2)
    return last


async def test_awaited_send_waits_for_a_slow_reader(nursery: trio.Nursery) -> None:
    """A client that does not read: the handler stops in `await ws.send` while the
    outbox is over backpressure_limit, drops nothing, and goes on as the client reads."""
    app, record = awaiting_app(backpressure_limit=LIMIT)
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0))
    client = await RawClient.connect(port)
    await client.send(upgrade_request("/bulk") + client_frame(0x1, b"go"))
    assert (await client.read_head())[0] == 101
    with trio.fail_after(10):
        while not record:
            await trio.sleep(0.01)
    ws, statuses, progress = record[0]
    stalled_at = await wait_until_stalled(progress, 20)
    assert 0 < stalled_at < COUNT, "the handler should wait for the reader"
    assert ws.buffered_amount >= LIMIT  # it waits because the outbox is over the limit
    with trio.fail_after(30):
        for i in range(COUNT):
            opcode, payload = await client.read_frame()
            assert opcode == 0x2, (opcode, close_code(payload))
            assert int.from_bytes(payload[:4], "big") == i and len(payload) == CHUNK
    assert progress[0] == COUNT
    assert SendStatus.DROPPED not in statuses and SendStatus.CLOSED not in statuses
    await client.aclose()


async def test_plain_send_is_still_the_status() -> None:
    """Without await, ws.send returns at once with a result that is its SendStatus:
    equal to the member, same truth value, name and value, usable as a dict key."""
    app = Axeom().use(ws_plugin(backpressure_limit=1000))
    results: list[Any] = []

    def flood(ws: Any, msg: Any) -> None:
        for _ in range(3):
            results.append(ws.send(b"x" * 600))
        ws.close()
        results.append(ws.send("late"))

    app.ws("/flood", message=flood)
    async with TestClient(app) as client, client.websocket("/flood") as ws:
        await ws.send("go")
        await ws.wait_closed()
    queued, pressure, dropped, closed = results
    assert type(queued) is SendResult
    assert (queued, pressure, dropped, closed) == (
        SendStatus.QUEUED,
        SendStatus.BACKPRESSURE,
        SendStatus.DROPPED,
        SendStatus.CLOSED,
    )
    assert SendStatus.QUEUED == queued and queued != SendStatus.DROPPED  # noqa: SIM300 (reflected ==)
    assert [bool(r) for r in results] == [True, True, False, False]
    assert [r.name for r in results] == ["QUEUED", "BACKPRESSURE", "DROPPED", "CLOSED"]
    assert queued.value == "queued" and queued.status is SendStatus.QUEUED
    assert {SendStatus.DROPPED: "d"}[dropped] == "d"
    assert repr(queued) == repr(SendStatus.QUEUED)


def test_plain_send_allocates_nothing_per_call() -> None:
    """Each socket keeps one result per status: repeated sends return the same object."""
    app = Axeom().use(ws_plugin())
    seen: list[Any] = []
    app.ws("/a", message=lambda ws, msg: seen.extend([ws.send("a"), ws.send("b")]))

    async def main() -> None:
        async with TestClient(app) as client, client.websocket("/a") as ws:
            await ws.send("go")
            await ws.receive()
            await ws.receive()

    trio.run(main)
    assert seen[0] is seen[1]


AWAITING_APP = """\
from axeom import Axeom
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin(backpressure_limit=4096))


async def loop(ws, msg):
    for i in range(300):
        await ws.send(f"{msg}-{i}")
    await ws.close(1000, "done")


app.ws("/loop", message=loop)
"""


def test_awaited_sends_in_a_worker_process(tmp_path: Path) -> None:
    """Through `axeom run --workers 1`: the worker's sockets await sends the same way."""
    app_file = tmp_path / "awaiting.py"
    app_file.write_text(AWAITING_APP)
    with running_axeom(f"{app_file}:app", "--port", "0", "--workers", "1") as server:
        received, code = read_loop(server.port)
    assert received == [f"m-{i}" for i in range(COUNT)]
    assert code == 1000
    assert "1011" not in server.text()


async def test_send_after_the_connection_is_lost_is_closed(nursery: trio.Nursery) -> None:
    """In the `close` handler of a socket whose connection was lost (1006) while its
    outbox was full, a send reports CLOSED, plain or awaited; it used to say DROPPED
    (or QUEUED), as if the frame could still leave once the outbox drained."""
    app = Axeom().use(ws_plugin(backpressure_limit=LIMIT))
    sockets: list[Any] = []
    record: list[Any] = []

    async def message(ws: Any, msg: Any) -> None:
        sockets.append(ws)
        while await ws.send(bytes(CHUNK)):  # the client never reads: fills up, waits
            pass

    async def close(ws: Any, code: int, reason: str) -> None:
        record.append((code, ws.send("late").status, await ws.send("later")))

    app.ws("/gone", message=message, close=close)
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0))
    client = await RawClient.connect(port)
    client.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await client.send(upgrade_request("/gone") + client_frame(1, b"go"))
    with trio.fail_after(10):
        while not sockets or sockets[0].buffered_amount < LIMIT:
            await trio.sleep(0.05)
    # No close frame, and a reset rather than a FIN: the connection is just gone.
    client.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.stream.aclose()
    with trio.fail_after(10):
        while not record:
            await trio.sleep(0.05)
    assert record == [(1006, SendStatus.CLOSED, SendStatus.CLOSED)]
