"""The readiness loop that serves every upgraded socket of a process, over real
sockets on 127.0.0.1: coroutine handlers in a task of their socket's own,
edge-triggered reads that lose nothing, fairness, bounded work per wake."""

from __future__ import annotations

import functools
import itertools
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from axeom import Axeom, serve
from axeom.pubsub import FLOW_LIMIT, PubSub
from axeom.ws import WebSocket, ws_plugin
from axeom.ws._frames import FrameConnection
from tests._wsraw import RawClient, client_frame, upgrade_request

# A generous bound on one round trip, for a machine shared with other test runs:
# a starved socket waits for seconds, a fairly served one for milliseconds.
ROUND_TRIP_LIMIT = 1.0


async def start(nursery: trio.Nursery, app: Axeom) -> int:
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0))
    return int(port)


Connect = Callable[[str], Awaitable[RawClient]]


@asynccontextmanager
async def server(nursery: trio.Nursery, app: Axeom) -> AsyncIterator[tuple[int, Connect]]:
    """The app served on 127.0.0.1: its port, and a ``connect(path)`` whose raw
    clients are closed on the way out."""
    port = await start(nursery, app)
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


async def echo_once(client: RawClient, text: str) -> float:
    """One round trip; how long it took."""
    began = trio.current_time()
    await client.send(client_frame(0x1, text.encode()))
    assert await client.read_frame() == (0x1, text.encode())
    return trio.current_time() - began


def count_tasks() -> int:
    """Every task of this trio run, through the nurseries they opened."""
    stack = [trio.lowlevel.current_root_task()]
    count = 0
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def test_a_suspended_coroutine_handler_leaves_other_sockets_echoing(
    nursery: trio.Nursery,
) -> None:
    """While one socket's coroutine handler waits mid-message, other sockets on the
    same loop keep echoing; then the waiting handler finishes and answers."""
    app = Axeom().use(ws_plugin())
    entered = trio.Event()
    release = trio.Event()

    async def hold(ws: WebSocket, msg: str) -> None:
        ws.send(f"started {msg}")  # leaves when the handler suspends
        entered.set()
        await release.wait()
        ws.send(f"finished {msg}")

    app.ws("/hold", message=hold)
    app.ws("/echo", message=lambda ws, msg: ws.send(msg))
    async with server(nursery, app) as (_, connect):
        waiting = await connect("/hold")
        await waiting.send(client_frame(0x1, b"a"))
        await entered.wait()
        assert await waiting.read_frame() == (0x1, b"started a")
        with trio.move_on_after(20 * ROUND_TRIP_LIMIT) as stuck:
            others = [await connect("/echo") for _ in range(3)]
            for i in range(20):
                for other in others:
                    await echo_once(other, f"m{i}")
        assert not stuck.cancelled_caught, "no echo while a handler waited"
        release.set()
        assert await waiting.read_frame() == (0x1, b"finished a")


async def test_bytes_arriving_while_a_handler_waits_are_all_handled_in_order(
    nursery: trio.Nursery,
) -> None:
    """A socket is not read while its handler waits; the messages that arrived
    meanwhile (their edge came while the handler ran) are all handled afterwards,
    in order, without any further byte from the client."""
    app = Axeom().use(ws_plugin())
    entered = trio.Event()
    release = trio.Event()
    handled: list[str] = []

    async def on_message(ws: WebSocket, msg: str) -> None:
        handled.append(msg)
        if msg == "hold":
            entered.set()
            await release.wait()
        ws.send(msg)

    app.ws("/hold", message=on_message)
    async with server(nursery, app) as (_, connect):
        client = await connect("/hold")
        await client.send(client_frame(0x1, b"hold"))
        await entered.wait()
        later = [f"m{i}" for i in range(50)]
        await client.send(b"".join(client_frame(0x1, m.encode()) for m in later))
        # Let the loop take the readiness edge of those bytes while the handler waits.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert handled == ["hold"]
        release.set()
        echoed = []
        with trio.move_on_after(20 * ROUND_TRIP_LIMIT):
            while len(echoed) < 1 + len(later):
                echoed.append((await client.read_frame())[1].decode())
        assert echoed == ["hold", *later]  # nothing lost, nothing out of order
        assert handled == ["hold", *later]


def send_then_hang_up(
    port: int, ready: threading.Event, go: threading.Event, sent: threading.Event
) -> bytes:
    """A client in a thread: upgrade, then (on ``go``) one message and its FIN in
    one go; every byte the server sends back until it closes (or 5 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(upgrade_request("/echo"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        ready.set()
        assert go.wait(10)
        sock.sendall(client_frame(0x1, b"last"))
        sock.shutdown(socket.SHUT_WR)
        sent.set()
        answer = head.partition(b"\r\n\r\n")[2]
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except TimeoutError:
            answer += b" (still open after 5 s)"
        return answer


async def test_a_fin_arriving_with_the_last_bytes_ends_the_socket(nursery: trio.Nursery) -> None:
    """A client's last message and its FIN are both waiting when the loop reads
    (one edge for both): the message is answered and the socket closed at once,
    not left open until the idle timeout."""
    app = Axeom().use(ws_plugin())
    ready, entered, sent = threading.Event(), threading.Event(), threading.Event()

    def on_message(ws: WebSocket, msg: str) -> None:
        if msg == "hold":  # holds the loop while the other client sends and hangs up
            entered.set()
            sent.wait(10)
        ws.send(msg)

    app.ws("/echo", message=on_message)
    async with server(nursery, app) as (port, connect), trio.open_nursery() as clients:
        answer: list[bytes] = []

        async def other() -> None:
            run = functools.partial(send_then_hang_up, port, ready, entered, sent)
            answer.append(await trio.to_thread.run_sync(run))

        clients.start_soon(other)
        assert await trio.to_thread.run_sync(ready.wait, 10)
        holder = await connect("/echo")
        await holder.send(client_frame(0x1, b"hold"))
        assert await holder.read_frame() == (0x1, b"hold")
    assert answer == [b"\x81\x04last"]  # the echo, then the end of the connection


def flood(port: int, stop: threading.Event, sent: list[int]) -> None:
    """Pipeline small messages on one socket as fast as the kernel takes them,
    until ``stop`` (a thread: the server must never see this socket run dry)."""
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


async def test_a_flooding_socket_does_not_starve_its_neighbours(nursery: trio.Nursery) -> None:
    """One client pipelines messages without pause (its socket never runs dry); the
    round trips of another socket on the same loop stay short (round robin, bounded
    bytes per turn), and the flood itself goes on being served."""
    app = Axeom().use(ws_plugin())
    flooded = [0]

    def count(ws: WebSocket, msg: str) -> None:
        flooded[0] += 1

    app.ws("/flood", message=count)
    app.ws("/echo", message=lambda ws, msg: ws.send(msg))
    stop = threading.Event()
    sent = [0]
    async with server(nursery, app) as (port, connect), trio.open_nursery() as clients:
        probe = await connect("/echo")
        clients.start_soon(trio.to_thread.run_sync, flood, port, stop, sent)
        try:
            with trio.fail_after(10):
                while flooded[0] < 100_000:  # the flood is under way
                    await trio.sleep(0.01)
            with trio.move_on_after(20 * ROUND_TRIP_LIMIT) as starved:
                slowest = max([await echo_once(probe, f"p{i}") for i in range(20)])
            assert not starved.cancelled_caught, "the probe got no answer beside the flood"
            assert slowest < ROUND_TRIP_LIMIT
            assert flooded[0] < sent[0]  # the flood had not run dry meanwhile
        finally:
            stop.set()


async def test_a_blocking_plain_handler_does_not_stop_timers(nursery: trio.Nursery) -> None:
    """A plain handler that blocks (the user's bug) on a long pipelined burst still
    lets the process run between messages: a timer task keeps ticking and another
    socket is answered, long before the burst is done."""
    app = Axeom().use(ws_plugin())
    burst = 150  # messages of 10 ms each: 1.5 s of blocked handlers

    def slow(ws: WebSocket, msg: str) -> None:
        time.sleep(0.01)
        ws.send(msg)

    app.ws("/slow", message=slow)
    app.ws("/echo", message=lambda ws, msg: ws.send(msg))
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(trio.current_time())
            await trio.sleep(0.01)

    async with server(nursery, app) as (_, connect), trio.open_nursery() as timers:
        other = await connect("/echo")
        busy = await connect("/slow")
        timers.start_soon(ticker)
        began = trio.current_time()
        await busy.send(b"".join(client_frame(0x1, b"%d" % i) for i in range(burst)))
        assert await echo_once(other, "still here") < ROUND_TRIP_LIMIT
        assert await busy.read_frame() == (0x1, b"0")  # answers leave as they are made
        assert trio.current_time() - began < ROUND_TRIP_LIMIT
        for i in range(1, burst):
            assert await busy.read_frame() == (0x1, b"%d" % i)
        ended = trio.current_time()
        timers.cancel_scope.cancel()
    during = [began, *(t for t in ticks if began < t < ended), ended]
    assert max(b - a for a, b in itertools.pairwise(during)) < ROUND_TRIP_LIMIT / 2


async def test_an_idle_socket_of_a_plain_route_holds_no_task(nursery: trio.Nursery) -> None:
    """Sockets on a plain-function route cost no task each; on a coroutine route,
    each socket has a task of its own once a handler awaited."""
    app = Axeom().use(ws_plugin())

    async def coroutine_echo(ws: WebSocket, msg: str) -> None:
        ws.send(msg)

    app.ws("/plain", message=lambda ws, msg: ws.send(msg))
    app.ws("/coro", message=coroutine_echo)
    async with server(nursery, app) as (_, connect):
        await echo_once(await connect("/plain"), "hi")
        await trio.testing.wait_all_tasks_blocked()
        before = count_tasks()
        for _ in range(20):
            await echo_once(await connect("/plain"), "hi")
        await trio.testing.wait_all_tasks_blocked()
        assert count_tasks() == before
        for _ in range(5):
            await echo_once(await connect("/coro"), "hi")
        await trio.testing.wait_all_tasks_blocked()
        assert count_tasks() == before + 5


async def test_drain_runs_over_a_real_socket_for_either_kind_of_handler(
    nursery: trio.Nursery,
) -> None:
    """A send past backpressure_limit drops and asks for `drain`; once the slow
    client reads, `drain` runs (plain or coroutine) and its sends arrive last."""
    app = Axeom().use(ws_plugin(backpressure_limit=256 * 1024))
    chunk = b"x" * 64 * 1024

    def flood_until_full(ws: WebSocket, msg: str) -> None:
        while ws.send(chunk):
            pass

    async def drained_later(ws: WebSocket) -> None:
        await trio.sleep(0)
        ws.send("drained")

    app.ws("/plain", message=flood_until_full, drain=lambda ws: ws.send("drained"))
    app.ws("/coro", message=flood_until_full, drain=drained_later)
    async with server(nursery, app) as (_, connect):
        for path in ("/plain", "/coro"):
            client = await connect(path)
            await client.send(client_frame(0x1, b"go"))
            frames = []
            while not frames or frames[-1][0] != 0x1:
                frames.append(await client.read_frame())
            assert frames[-1] == (0x1, b"drained")
            assert all(frame == (0x2, chunk) for frame in frames[:-1]) and len(frames) > 4


class HeldLink:
    """A pub/sub link to other processes that sends only when told to."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self.lot = trio.lowlevel.ParkingLot()

    def wakeup(self) -> None:
        pass

    async def wait_flowing(self) -> None:
        while self.pubsub.congested:
            await self.lot.park()

    async def wait_subscribed(self) -> None:
        pass

    def send_all(self) -> None:
        self.pubsub.take_outgoing(len(self.pubsub.outgoing))
        self.lot.unpark_all()


async def test_a_publisher_is_not_read_while_the_link_is_congested(nursery: trio.Nursery) -> None:
    """Backpressure at the source on a real socket: once the link to the other
    processes is congested, the loop reads nothing more (the rest waits in the
    kernel); as the link drains, reading resumes, and nothing is lost."""
    app = Axeom().use(ws_plugin())
    handled = [0]

    def on_message(ws: WebSocket, msg: str) -> None:
        handled[0] += 1
        ws.publish("t", msg)

    app.ws("/pub", message=on_message)
    link = HeldLink(app.pubsub)
    app.pubsub.link = link
    total = FLOW_LIMIT + 40_000  # far more than a few reads of the loop take
    async with server(nursery, app) as (_, connect), trio.open_nursery() as sending:
        client = await connect("/pub")
        sending.start_soon(client.send, client_frame(0x1, b"m") * total)
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        assert FLOW_LIMIT <= handled[0] < total
        with trio.fail_after(20):
            while handled[0] < total:
                link.send_all()
                await trio.testing.wait_all_tasks_blocked(cushion=0.02)
    assert handled[0] == total


async def test_an_internal_error_costs_one_socket_only(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in Axeom while serving one socket (simulated in the frame layer) is
    logged and drops that socket; the loop and the other sockets go on."""
    app = Axeom().use(ws_plugin())
    app.ws("/echo", message=lambda ws, msg: ws.send(msg))
    receive = FrameConnection.receive

    def failing(self: FrameConnection, data: bytes) -> list[str | bytes]:
        if b"boom" in bytes(data):  # unmasked by the client's all-zero key below
            raise RuntimeError("a bug")
        return receive(self, data)

    monkeypatch.setattr(FrameConnection, "receive", failing)
    async with server(nursery, app) as (_, connect):
        good = await connect("/echo")
        bad = await connect("/echo")
        await bad.send(bytes([0x81, 0x84, 0, 0, 0, 0]) + b"boom")
        assert await bad.read_frame() == (-1, b"")  # dropped
        assert await echo_once(good, "still here") < ROUND_TRIP_LIMIT
    assert "internal error running socket" in caplog.text
