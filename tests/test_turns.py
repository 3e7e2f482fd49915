"""Turns of the readiness loop and of a coroutine socket's task on real sockets:
how long one goes on before the rest of the process runs, and what that costs.
``await ws.send`` under the backpressure limit has no reschedule within a turn,
yet a loop of awaited sends never holds up the process, and every awaited send
stays a cancellation point; a burst of publishes is not cut into many writes."""

from __future__ import annotations

import functools
import itertools
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from axeom import Axeom, serve
from axeom.trio_runtime import _transport
from axeom.ws import WebSocket, ws_plugin
from tests._wsraw import RawClient, client_frame, upgrade_request

# A generous bound for a machine shared with other test runs: a starved task
# waits for seconds (until the spinning handler gives up), a served one for
# milliseconds.
ROUND_TRIP_LIMIT = 1.0
# How long a spinning handler goes on at most if nothing stops it: long next to
# ROUND_TRIP_LIMIT, so that a starved process shows, short enough for a test.
SPIN_LIMIT = 5.0
# A limit the spinning handlers never reach: their sends never really wait.
HUGE_LIMIT = 1 << 30

Connect = Callable[[str], Awaitable[RawClient]]


@asynccontextmanager
async def server(nursery: trio.Nursery, app: Axeom) -> AsyncIterator[Connect]:
    """The app served on 127.0.0.1, and a ``connect(path)`` whose raw clients are
    closed on the way out."""
    async with served(nursery, app) as (_, connect):
        yield connect


@asynccontextmanager
async def served(nursery: trio.Nursery, app: Axeom) -> AsyncIterator[tuple[int, Connect]]:
    """The same, and the port."""
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0))
    clients: list[RawClient] = []

    async def connect(path: str) -> RawClient:
        client = await RawClient.connect(port)
        clients.append(client)
        await client.send(upgrade_request(path))
        assert (await client.read_head())[0] == 101
        return client

    try:
        yield port, connect
    finally:
        for client in clients:
            await client.aclose()


async def spin(ws: WebSocket, stop: trio.Event, progress: list[int]) -> None:
    """Awaited sends in a loop, never over the limit, until ``stop`` (or SPIN_LIMIT)."""
    ends = time.monotonic() + SPIN_LIMIT
    while not stop.is_set() and time.monotonic() < ends:
        await ws.send("x")
        progress[0] += 1


async def test_a_loop_of_awaited_sends_lets_the_process_run(nursery: trio.Nursery) -> None:
    """While one coroutine handler loops on awaited sends (under the limit, so they
    never wait), a timer task keeps ticking and another socket is answered."""
    app = Axeom().use(ws_plugin(backpressure_limit=HUGE_LIMIT))
    stop = trio.Event()
    progress = [0]

    async def on_message(ws: WebSocket, msg: str) -> None:
        await spin(ws, stop, progress)

    app.ws("/spin", message=on_message)
    app.ws("/echo", message=lambda ws, msg: ws.send(msg))
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(trio.current_time())
            await trio.sleep(0.01)

    async with server(nursery, app) as connect, trio.open_nursery() as timers:
        other = await connect("/echo")
        spinning = await connect("/spin")
        timers.start_soon(ticker)
        await spinning.send(client_frame(0x1, b"go"))
        with trio.fail_after(SPIN_LIMIT):
            while progress[0] == 0:
                await trio.sleep(0.01)
        began = trio.current_time()
        for i in range(10):
            sent = trio.current_time()
            await other.send(client_frame(0x1, b"%d" % i))
            assert await other.read_frame() == (0x1, b"%d" % i)
            assert trio.current_time() - sent < ROUND_TRIP_LIMIT, "no answer beside the loop"
        ended = trio.current_time()
        spun, stopped = progress[0], not stop.is_set()
        stop.set()
        timers.cancel_scope.cancel()
    assert stopped and spun > 1, "the loop of sends was running all along"
    during = [began, *(t for t in ticks if began < t < ended), ended]
    assert max(b - a for a, b in itertools.pairwise(during)) < ROUND_TRIP_LIMIT / 2


async def test_an_awaited_send_is_a_cancellation_point(nursery: trio.Nursery) -> None:
    """An awaited send under the limit raises Cancelled in a cancelled scope, at
    once; a deadline interrupts a loop of them."""
    app = Axeom().use(ws_plugin(backpressure_limit=HUGE_LIMIT))
    record: list[object] = []

    async def on_message(ws: WebSocket, msg: str) -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.send("x")
            record.append("not interrupted")
        record.append(scope.cancelled_caught)
        with trio.move_on_after(0.2) as scope:
            await spin(ws, trio.Event(), [0])
        record.append(scope.cancelled_caught)
        ws.send("done")

    app.ws("/cancel", message=on_message)
    async with server(nursery, app) as connect:
        client = await connect("/cancel")
        await client.send(client_frame(0x1, b"go"))
        with trio.fail_after(2 * SPIN_LIMIT):
            while len(record) < 2:
                await trio.sleep(0.01)
    assert record == [True, True]


def flood(port: int, stop: threading.Event, sent: list[int]) -> None:
    """Pipeline small messages on one socket as fast as the kernel takes them,
    until ``stop``, reading nothing (a thread: the server must never see this
    socket run dry)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(upgrade_request("/flood"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        batch = client_frame(0x1, b"x") * 20_000
        deadline = time.monotonic() + 30  # never longer than this, whatever happens
        while not stop.is_set() and time.monotonic() < deadline:
            sock.sendall(batch)
            sent[0] += 20_000


async def count_only(ws: WebSocket, msg: str, flooded: list[int]) -> None:
    flooded[0] += 1


async def count_and_answer(ws: WebSocket, msg: str, flooded: list[int]) -> None:
    flooded[0] += 1
    await ws.send("")  # never over the huge limit: never a wait


@pytest.mark.parametrize("handler", [count_only, count_and_answer])
async def test_a_flooding_socket_on_a_coroutine_route_does_not_starve_its_neighbours(
    nursery: trio.Nursery, handler: Any
) -> None:
    """One client pipelines messages without pause to a coroutine handler that
    never waits; the round trips of another socket stay short (the socket's task
    lets the process run once per turn, however many messages it has), and the
    flood itself goes on being served."""
    app = Axeom().use(ws_plugin(backpressure_limit=HUGE_LIMIT))
    flooded = [0]
    app.ws("/flood", message=functools.partial(handler, flooded=flooded))
    app.ws("/echo", message=lambda ws, msg: ws.send(msg))
    stop = threading.Event()
    sent = [0]
    async with served(nursery, app) as (port, connect), trio.open_nursery() as clients:
        probe = await connect("/echo")
        clients.start_soon(trio.to_thread.run_sync, flood, port, stop, sent)
        try:
            with trio.fail_after(10):
                while flooded[0] < 100_000:  # the flood is under way
                    await trio.sleep(0.01)
            with trio.move_on_after(SPIN_LIMIT) as starved:
                for i in range(10):
                    sent_at = trio.current_time()
                    await probe.send(client_frame(0x1, b"%d" % i))
                    assert await probe.read_frame() == (0x1, b"%d" % i)
                    assert trio.current_time() - sent_at < ROUND_TRIP_LIMIT
            assert not starved.cancelled_caught, "the probe got no answer beside the flood"
            assert flooded[0] < sent[0]  # the flood had not run dry meanwhile
        finally:
            stop.set()


# Handler time per message in the burst below, and the messages in it: 80 ms
# of handlers in all, longer than a turn of 20 ms (which cut it into four
# writes per subscriber) and inside a turn of 100 ms.
SLOW_PUBLISH, BURST = 0.004, 20


async def test_a_burst_of_publishes_leaves_in_one_write_per_subscriber(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publisher's burst (one read) whose handlers take 80 ms is handled in one
    turn of the loop and reaches each subscriber in one write, not cut into a
    write per 20 ms. The runtime's clock is the handlers' time only (each adds
    SLOW_PUBLISH), so that a machine busy with other work cannot move the cuts."""
    now = [0.0]
    for module in list(sys.modules.values()):  # wherever the runtime keeps its clock
        name = getattr(module, "__name__", "")
        if name.startswith("axeom.") and getattr(module, "clock", None) is time.perf_counter:
            monkeypatch.setattr(module, "clock", lambda: now[0])
    writes: dict[object, int] = {}
    try_send = _transport.SocketTransport.try_send

    def counting(self: _transport.SocketTransport, chunks: list[bytes]) -> int | None:
        writes[self] = writes.get(self, 0) + 1
        return try_send(self, chunks)

    monkeypatch.setattr(_transport.SocketTransport, "try_send", counting)
    app = Axeom().use(ws_plugin())

    def publish(ws: WebSocket, msg: str) -> None:
        ws.publish("t", msg)
        now[0] += SLOW_PUBLISH  # a slow handler: the turn's time runs out

    app.ws("/sub", open=lambda ws: ws.subscribe("t"))
    app.ws("/pub", message=publish)
    async with server(nursery, app) as connect:
        subscribers = [await connect("/sub") for _ in range(5)]
        publisher = await connect("/pub")
        await trio.testing.wait_all_tasks_blocked()
        writes.clear()
        await publisher.send(b"".join(client_frame(0x1, b"%d" % i) for i in range(BURST)))
        with trio.fail_after(10):
            for subscriber in subscribers:
                for i in range(BURST):
                    assert await subscriber.read_frame() == (0x1, b"%d" % i)
    assert len(writes) == len(subscribers)  # the publisher itself wrote nothing
    assert set(writes.values()) == {1}, writes
