"""Running out of file descriptors and slowloris attacks, through real process trees.

Each tree starts with a low *hard* descriptor limit, so that raising the
soft limit cannot help and the out-of-descriptors paths are really taken.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from axeom import Axeom, serve, wire
from axeom.config import ServerConfig
from axeom.trio_runtime import HandshakeLimits, PendingHeads, accept_forever
from axeom.trio_runtime import handoff as _handoff
from axeom.ws import ws_plugin
from axeom_acceptor import _acceptor
from axeom_acceptor._acceptor import Acceptor, AcceptorSettings
from tests._processes import Server, running_axeom, status, wait_for
from tests._redis import running_redis
from tests._wsraw import RawClient, client_frame, upgrade_request

APP = "tests/apps/runtime_app.py:app"
# Low enough that a worker (or a --workers 0 server) runs out well before
# the clients of a test do, high enough for the processes to start.
LOW_LIMIT = 256

pytestmark = pytest.mark.timeout(90)


# The default request timeout of the trees here (server.request_timeout).
REQUEST_TIMEOUT = ServerConfig().request_timeout


@contextmanager
def tree(workers: int, descriptors: tuple[int, int]) -> Iterator[Server]:
    with running_axeom(
        APP, "--port", "0", "--workers", str(workers), descriptors=descriptors
    ) as server:
        yield server


def soft_limit(pid: int) -> tuple[int, int]:
    """(soft, hard) 'Max open files' of a running process."""
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no descriptor limit for {pid}")


def test_every_process_raises_its_soft_descriptor_limit() -> None:
    """Soft 128, hard 512: supervisor, acceptor, worker and Redis bridge all run
    with 512, and say so."""
    with running_redis() as redis_server:
        args = ("--port", "0", "--workers", "1", "--pubsub", redis_server.url)
        with running_axeom(APP, *args, descriptors=(128, 512)) as server:
            wait_for(
                lambda: all(p["pid"] for p in status(server.port)["processes"]),
                20,
                "every process to report its pid",
            )
            processes = status(server.port)["processes"]
            assert {p["role"] for p in processes} >= {"acceptor", "worker", "bridge"}
            for pid in [server.proc.pid] + [p["pid"] for p in processes]:
                assert soft_limit(pid) == (512, 512)
            # The supervisor raises it; its children find it raised and say so too.
            lines = [r"\[supervisor\].*file descriptor limit raised to 512 \(soft limit was 128\)"]
            lines += [
                rf"\[{name}\].*file descriptor limit: 512"
                for name in ("acceptor", "worker-1", "redis-bridge")
            ]
            wait_for(
                lambda: all(re.search(line, server.text()) for line in lines),
                10,
                "the descriptor limit line of every process",
            )


def test_single_process_server_raises_its_soft_descriptor_limit() -> None:
    with tree(0, (128, 512)) as server:
        assert soft_limit(server.proc.pid) == (512, 512)
        wait_for(
            lambda: "file descriptor limit raised to 512 (soft limit was 128)" in server.text(),
            10,
            "the descriptor limit line (it follows the ready line)",
        )


async def upgrade_and_echo(port: int, text: str) -> tuple[int, RawClient]:
    """Open a socket to /chat: (status, client), the echo checked when 101."""
    client = await RawClient.connect(port)
    await client.send(upgrade_request("/chat"))
    code, _ = await client.read_head()
    if code == 101:
        await client.send(client_frame(0x1, text.encode()))
        with trio.fail_after(10):  # a 101 that leads nowhere fails here
            opcode, payload = await client.read_frame()
        assert (opcode, payload) == (0x1, f"Echo: {text}".encode())
    return code, client


@pytest.mark.parametrize("workers", [1, 2])
async def test_worker_out_of_descriptors_answers_503_never_a_dead_101(workers: int) -> None:
    """More sockets than the workers can hold: each client gets 101 and echoes, or a
    503. With two workers, a socket the full one refuses goes to the other first."""
    total = (workers + 1) * LOW_LIMIT
    with tree(workers, (LOW_LIMIT, LOW_LIMIT)) as server:
        codes: list[int] = []
        clients: list[RawClient] = []
        try:
            # In waves, so that the acceptor never holds many sockets at once:
            # what runs out here is the worker.
            for wave in range(0, total, 16):
                async with trio.open_nursery() as nursery:
                    for index in range(wave, wave + 16):

                        async def one(index: int = index) -> None:
                            code, client = await upgrade_and_echo(server.port, f"m{index}")
                            codes.append(code)
                            clients.append(client)

                        nursery.start_soon(one)
            assert set(codes) == {101, 503}, sorted(set(codes))
            # More than one worker's share was taken: every worker was filled.
            assert codes.count(101) > (workers - 1) * LOW_LIMIT, codes.count(101)
            # The worker is at its limit and still serves what it holds.
            first = next(c for c, code in zip(clients, codes, strict=True) if code == 101)
            await first.send(client_frame(0x1, b"still"))
            assert await first.read_frame() == (0x1, b"Echo: still")
        finally:
            for client in clients:
                await client.aclose()
        assert all(p["restarts"] == 0 for p in status(server.port)["processes"])
        # The worker says why it refuses, the acceptor what it does about it.
        wait_for(
            lambda: "out of file descriptors" in server.text() and "answering 503" in server.text(),
            10,
            "the worker's and the acceptor's warnings",
        )


async def test_out_of_descriptors_a_prompt_client_is_never_evicted() -> None:
    """At the descriptor limit, clients that send their whole request at once,
    one after another: each gets 101 and an echo, or a 503; never the 408 of
    an eviction. (Linux's accept takes the descriptor before it looks at the
    backlog, so EMFILE comes even with nobody waiting: the client just
    accepted must not be evicted to relieve nobody.)"""
    with tree(0, (LOW_LIMIT, LOW_LIMIT)) as server:
        codes: list[int] = []
        clients: list[RawClient] = []
        try:
            for index in range(LOW_LIMIT + 32):
                with trio.fail_after(10):
                    code, client = await upgrade_and_echo(server.port, f"m{index}")
                codes.append(code)
                clients.append(client)
        finally:
            for client in clients:
                await client.aclose()
        assert set(codes) == {101, 503}, sorted(set(codes))
        wait_for(
            lambda: "answering new connections 503" in server.text(),
            10,
            "the server's warning",
        )


async def slow_heads(
    source: str, port: int, count: int, opened: list[trio.socket.SocketType]
) -> None:
    """``count`` connections from ``source`` that send part of a head, then nothing."""
    partial = upgrade_request("/chat")[:40]
    for _ in range(count):
        sock = trio.socket.socket()
        opened.append(sock)
        await sock.bind((source, 0))
        with trio.move_on_after(5):  # the backlog may be full: skip this one
            await sock.connect(("127.0.0.1", port))
            try:
                await sock.send(partial)
            except OSError:
                pass  # shed already


async def timed_echo(port: int) -> float:
    started = time.monotonic()
    code, client = await upgrade_and_echo(port, "hello")
    await client.aclose()
    assert code == 101
    return time.monotonic() - started


@pytest.mark.parametrize("workers", [0, 1, 2])
async def test_slowloris_does_not_hold_back_a_normal_handshake(workers: int) -> None:
    """Hundreds of slow heads from 127.0.0.2-9 (more than the descriptor limit):
    a client on 127.0.0.1 completes its handshake and an echo within a second."""
    opened: list[trio.socket.SocketType] = []
    with tree(workers, (LOW_LIMIT, LOW_LIMIT)) as server:
        try:
            async with trio.open_nursery() as nursery:
                for last in range(2, 10):
                    nursery.start_soon(slow_heads, f"127.0.0.{last}", server.port, 80, opened)
            took = [await timed_echo(server.port)]
            async with trio.open_nursery() as nursery:
                # The attack goes on while the client connects again.
                for last in range(10, 14):
                    nursery.start_soon(slow_heads, f"127.0.0.{last}", server.port, 80, opened)
                for _ in range(3):
                    took.append(await timed_echo(server.port))
                    await trio.sleep(0.1)
            # Served promptly, not after the request timeout (10 s by default)
            # that would free a slot held by the attack.
            assert max(took) < REQUEST_TIMEOUT / 2, took
        finally:
            for sock in opened:
                sock.close()
        wait_for(lambda: "slow handshakes shed" in server.text(), 10, "the shedding warning")


async def read_status(sock: trio.socket.SocketType) -> int | None:
    """The status code the server answered on a slow head, None if it closed without one."""
    data = b""
    with trio.fail_after(5):
        while b"\r\n" not in data:
            try:
                chunk = await sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


async def test_unfinished_heads_are_capped_per_address_and_per_node(
    nursery: trio.Nursery,
) -> None:
    """Over 4 from one address while the node holds half its cap: 429 at once.
    Over 8 in all: the oldest gets 408. A complete head is answered throughout."""
    app = Axeom().use(ws_plugin())
    app.ws("/chat", message=lambda ws, msg: ws.send(f"Echo: {msg}"))
    limits = HandshakeLimits(max_pending=8, max_pending_per_address=4)
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0, limits=limits))
    opened: list[trio.socket.SocketType] = []
    try:
        await slow_heads("127.0.0.2", port, 6, opened)
        # Shed at once, long before the 10 s head timeout.
        assert [await read_status(sock) for sock in opened[4:]] == [429, 429]
        code, client = await upgrade_and_echo(port, "meanwhile")
        await client.aclose()
        assert code == 101
        for last in (3, 4):
            await slow_heads(f"127.0.0.{last}", port, 4, opened)
        # 12 unfinished heads were let in, 8 at most stay: the four oldest were evicted.
        assert [await read_status(sock) for sock in opened[:4]] == [408] * 4
        code, client = await upgrade_and_echo(port, "still")
        assert code == 101
        await client.aclose()
    finally:
        for sock in opened:
            sock.close()


async def fake_worker(
    listener: trio.socket.SocketType, outcome: int, taken: list[socket.socket], offered: list[int]
) -> None:
    """A worker's end of the hand-off channel that answers every socket ``outcome``."""
    channel, _ = await listener.accept()
    raw = channel.detach()
    with socket.socket(fileno=raw) as sock:
        sock.setblocking(False)
        while (received := await _handoff.receive_socket(sock)) is not None:
            assert received.fd is not None
            offered.append(outcome)
            moved = socket.socket(fileno=received.fd)
            if outcome == wire.TAKEN:
                taken.append(moved)
                await _handoff.send_reply(sock, received.seq, outcome)
                handed = wire.decode_handoff(
                    _handoff.ws_routes(APP_IN_PROCESS), received.head, received.body
                )
                moved.sendall(handed.response_head)
            else:
                moved.close()
                await _handoff.send_reply(sock, received.seq, outcome)


APP_IN_PROCESS = Axeom().use(ws_plugin())
APP_IN_PROCESS.ws("/chat", message=lambda ws, msg: None)
# Its ws.data is too big to travel with a socket.
BIG_DATA_APP = Axeom().use(ws_plugin())
BIG_DATA_APP.ws("/chat", message=lambda ws, msg: None)
BIG_DATA_APP.derive(lambda ctx: {"blob": "x" * (wire.MAX_HANDOFF + 1)})


@pytest.mark.parametrize(
    ("path", "outcomes", "expected"),
    [
        ("/chat", (wire.NO_DESCRIPTOR, wire.TAKEN), 101),
        ("/chat", (wire.NO_DESCRIPTOR, wire.REFUSED), 503),
        ("/big", (wire.TAKEN, wire.TAKEN), 500),
    ],
)
async def test_acceptor_places_a_refused_socket_elsewhere_or_answers_503(
    nursery: trio.Nursery, tmp_path: Path, path: str, outcomes: tuple[int, int], expected: int
) -> None:
    """The first worker (fewest sockets) refuses: the second is tried; if it
    refuses too, the client gets a 503, and in no case a 101 it cannot use
    (nor when the socket cannot be handed off at all: ``ws.data`` too big)."""
    settings = AcceptorSettings(run_dir=str(tmp_path), heartbeat_interval=1.0)
    taken: list[socket.socket] = []
    offered: list[int] = []
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        app = BIG_DATA_APP if path == "/big" else APP_IN_PROCESS
        acceptor = Acceptor(app, listener, settings)
        acceptor._nursery = nursery
        table = []
        for number, outcome in enumerate(outcomes, 1):
            path = str(tmp_path / f"w{number}.sock")
            channels = stack.enter_context(
                trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            )
            await channels.bind(path)
            channels.listen(4)
            nursery.start_soon(fake_worker, channels, outcome, taken, offered)
            # worker-1 has fewer sockets: it is offered the socket first.
            table.append(wire.WorkerEntry(f"w{number}", 1, path, sockets=number, received=0))
        acceptor.update_workers(table)
        stack.callback(lambda: [slot.close() for slot in acceptor.slots.values()])
        nursery.start_soon(accept_forever, listener, acceptor._on_client)
        code, client = await upgrade_and_echo_status(listener.getsockname()[1])
        await client.aclose()
        with trio.fail_after(5):
            while code != 500 and acceptor.handed_total + acceptor.unplaced_total == 0:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    for sock in taken:
        sock.close()
    assert code == expected
    if code == 500:
        assert offered == []
        return
    assert offered == list(outcomes)  # the one with fewer sockets first, then the other
    assert (acceptor.handed_total, acceptor.unplaced_total) == ((1, 0) if code == 101 else (0, 1))


async def batching_worker(
    listener: trio.socket.SocketType, count: int, taken: list[socket.socket]
) -> None:
    """A worker's end that waits for ``count`` hand-offs, then takes them all
    and answers in ONE datagram before writing their 101s; ``count=0``:
    never answers (a stuck worker)."""
    channel, _ = await listener.accept()
    with socket.socket(fileno=channel.detach()) as sock:
        sock.setblocking(False)
        pending: list[_handoff.Received] = []
        while (batch := await _handoff.receive_sockets(sock)) is not None:
            pending += batch
            for received in batch:
                assert received.fd is not None
                taken.append(socket.socket(fileno=received.fd))
            if count and len(pending) >= count:
                await _handoff.send_replies(sock, [(r.seq, wire.TAKEN) for r in pending])
                routes = _handoff.ws_routes(APP_IN_PROCESS)
                for received, moved in zip(pending, taken[-len(pending) :], strict=True):
                    moved.sendall(
                        wire.decode_handoff(routes, received.head, received.body).response_head
                    )
                pending = []
        await trio.sleep_forever()


@asynccontextmanager
async def _acceptor_and_worker(
    nursery: trio.Nursery, tmp_path: Path, count: int, taken: list[socket.socket]
) -> AsyncIterator[tuple[Acceptor, int]]:
    """An in-process acceptor placing on one ``batching_worker``; yields it and its port."""
    settings = AcceptorSettings(run_dir=str(tmp_path), heartbeat_interval=1.0)
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        acceptor = Acceptor(APP_IN_PROCESS, listener, settings)
        acceptor._nursery = nursery
        path = str(tmp_path / "w1.sock")
        channels = stack.enter_context(trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        await channels.bind(path)
        channels.listen(4)
        nursery.start_soon(batching_worker, channels, count, taken)
        acceptor.update_workers([wire.WorkerEntry("w1", 1, path)])
        stack.callback(lambda: [sock.close() for sock in taken])
        stack.callback(lambda: [slot.close() for slot in acceptor.slots.values()])
        stack.callback(nursery.cancel_scope.cancel)
        nursery.start_soon(accept_forever, listener, acceptor._on_client)
        yield acceptor, listener.getsockname()[1]


async def _connect_all(port: int, count: int) -> list[RawClient]:
    """``count`` clients that have sent their upgrade request."""
    clients = []
    for _ in range(count):
        client = await RawClient.connect(port)
        await client.send(upgrade_request("/chat"))
        clients.append(client)
    return clients


async def _status_of(client: RawClient) -> int:
    with trio.fail_after(10):
        code, _ = await client.read_head()
    return code


async def test_acceptor_reads_several_answers_from_one_datagram(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A worker answers a burst of hand-offs in one datagram: every client of
    the burst gets its 101 (none waits for an answer that was already read)."""
    taken: list[socket.socket] = []
    async with _acceptor_and_worker(nursery, tmp_path, 3, taken) as (acceptor, port):
        clients = await _connect_all(port, 3)
        codes = [await _status_of(client) for client in clients]
        assert codes == [101, 101, 101]
        assert (acceptor.handed_total, acceptor.unplaced_total) == (3, 0)
        for client in clients:
            await client.aclose()


async def test_a_hand_off_left_unanswered_is_answered_503(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that never answers (stuck) costs its client a 503 after the
    reply timeout, not a 101 and not an endless wait."""
    monkeypatch.setattr(_acceptor, "HANDOFF_REPLY_TIMEOUT", 0.3)
    monkeypatch.setattr(_acceptor, "HANDOFF_SWEEP_INTERVAL", 0.05)
    taken: list[socket.socket] = []
    async with _acceptor_and_worker(nursery, tmp_path, 0, taken) as (acceptor, port):
        nursery.start_soon(acceptor._sweep_late_replies)
        (client,) = await _connect_all(port, 1)
        assert await _status_of(client) == 503
        assert (acceptor.handed_total, acceptor.unplaced_total) == (0, 1)
        assert not any(slot.replies for slot in acceptor.slots.values())
        await client.aclose()


async def upgrade_and_echo_status(port: int) -> tuple[int, RawClient]:
    client = await RawClient.connect(port)
    await client.send(upgrade_request("/chat"))
    with trio.fail_after(10):
        code, _ = await client.read_head()
    return code, client


@pytest.mark.parametrize("workers", [0, 1])
async def test_handshake_caps_come_from_the_config_file(workers: int, tmp_path: Path) -> None:
    """``server.max_pending_handshakes_per_address`` reaches whoever reads the heads."""
    config = tmp_path / "axeom.toml"
    # The per-address cap applies once the node holds half of max_pending.
    config.write_text(
        "[server]\nmax_pending_handshakes = 4\nmax_pending_handshakes_per_address = 2\n"
    )
    opened: list[trio.socket.SocketType] = []
    with running_axeom(
        APP, "--port", "0", "--workers", str(workers), "--config", str(config)
    ) as server:
        try:
            await slow_heads("127.0.0.2", server.port, 3, opened)
            assert await read_status(opened[2]) == 429
            # Counted where the operator looks: status, with the 4xx answers
            # (the acceptor reports with its next heartbeat).
            with trio.fail_after(10):
                totals = (await trio.to_thread.run_sync(status, server.port))["totals"]
                while totals["shed_heads"] == 0:
                    await trio.sleep(0.2)
                    totals = (await trio.to_thread.run_sync(status, server.port))["totals"]
            assert totals["shed_heads"] == 1
            assert totals["http_responses"]["4xx"] >= 1
        finally:
            for sock in opened:
                sock.close()


async def test_a_burst_of_handshakes_is_spread_while_answers_are_awaited() -> None:
    """Sockets awaiting a worker's answer count in its load: 60 at once over
    two workers land about evenly, not all on the one that was emptiest."""
    with tree(2, (4096, 4096)) as server:
        wait_for(
            lambda: sum(p["role"] == "worker" for p in status(server.port)["processes"]) == 2,
            20,
            "two workers",
        )
        pids: list[bytes] = []
        clients: list[RawClient] = []
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(60):

                    async def one() -> None:
                        client = await RawClient.connect(server.port)
                        clients.append(client)
                        await client.send(upgrade_request("/chat"))
                        assert (await client.read_head())[0] == 101
                        await client.send(client_frame(0x1, b"pid"))
                        with trio.fail_after(10):
                            pids.append((await client.read_frame())[1])

                    nursery.start_soon(one)
        finally:
            for client in clients:
                await client.aclose()
    counts = sorted(pids.count(pid) for pid in set(pids))
    assert len(counts) == 2 and counts[0] >= 20, counts


async def test_a_burst_of_complete_heads_from_one_address_is_not_shed() -> None:
    """Heads that arrived whole are not slow: 200 connections from one address,
    each sending its head at once, all get their 101, even past the cap of 64
    unfinished heads per address (they only wait for the acceptor to read them)."""
    with tree(1, (4096, 4096)) as server:
        acceptor = next(
            p["pid"] for p in status(server.port)["processes"] if p["role"] == "acceptor"
        )
        socks: list[socket.socket] = []
        opened: list[trio.socket.SocketType] = []
        try:
            # The acceptor stopped while every head is sent: when it goes on,
            # it accepts 200 connections whose complete head is already there.
            os.kill(acceptor, signal.SIGSTOP)
            try:
                for _ in range(200):
                    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                    sock.sendall(upgrade_request("/chat"))
                    socks.append(sock)
            finally:
                os.kill(acceptor, signal.SIGCONT)
            codes = [blocking_status(sock) for sock in socks]
            assert codes.count(101) == 200, sorted(set(codes))
            assert status(server.port)["totals"]["shed_heads"] == 0
        finally:
            for slow in opened:
                slow.close()
            for sock in socks:
                sock.close()


def blocking_status(sock: socket.socket) -> int | None:
    """The status of the answer to a head already sent, read without trio."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


def test_the_end_of_a_shedding_episode_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Sheds after the last warning are logged by the periodic ``report_if_due``
    once the interval is over, not only if another shed comes along later."""
    pending = PendingHeads(HandshakeLimits())
    pending.refused = 1
    pending._report()  # the first shed of the episode: logged at once
    pending.refused = 500  # the rest of the burst, within the interval
    pending.report_if_due()
    assert "499 answered 429" not in caplog.text
    pending._log_after = 0.0  # the interval is over
    pending.report_if_due()
    assert "499 answered 429" in caplog.text


async def test_a_burst_from_one_address_is_served_while_the_node_has_room(
    nursery: trio.Nursery,
) -> None:
    """200 clients behind one address (a proxy, a NAT, a reconnect storm) connect
    first and send their heads after: far past the per-address cap of 64, but
    the node is far from its own cap, so every one gets its 101."""
    app = Axeom().use(ws_plugin())
    app.ws("/chat", message=lambda ws, msg: ws.send(f"Echo: {msg}"))
    _, port = await nursery.start(functools.partial(serve, app, "127.0.0.1", 0))
    socks: list[trio.socket.SocketType] = []
    try:
        with trio.fail_after(20):
            for _ in range(200):
                sock = trio.socket.socket()
                socks.append(sock)
                await sock.connect(("127.0.0.1", port))
            await trio.testing.wait_all_tasks_blocked()  # all accepted, no head yet
            for sock in socks:
                await sock.send(upgrade_request("/chat"))
            codes = [await read_status(sock) for sock in socks]
        assert codes.count(101) == 200, sorted(set(codes))
    finally:
        for sock in socks:
            sock.close()
