"""The benchmark tests: each drives one server with ``bench.loadgen`` and returns a Result.

Every loop is bounded (by time or count) and connection failures are counted, not raised,
so a misbehaving server yields a result with errors instead of a crashed run. The load
generator's own CPU use is measured over each measurement window: if it nears one full core
the figure measures the client, not the server, and the report flags it.
"""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import frames, procstat
from bench.loadgen import CycleClient, EchoClient, Load, WsClient, close_all, connect, open_many
from bench.targets import HOST, PATH, ServerProcess

RAMP = 1.0  # seconds of load before the window opens: connections reach steady state
CONNECT_TIMEOUT = 10.0
CYCLE_TIMEOUT = 5.0
SMALL = b"x" * 32  # ASCII, so valid UTF-8 for text frames
LARGE = bytes(range(256)) * 4096  # 1 MiB
# What the typed-echo tests send: a small chat-like message as compact JSON in the field
# order of bench/apps/typed_echo.py's types, so a typed echo is the same bytes.
JSON_MESSAGE = b'{"room":"lobby","text":"hello, typed world","seq":42}'
LOADGEN_BUSY = 0.85  # above this fraction of a core, the client may be the bottleneck
FOREIGN_BUSY = 0.05  # other processes using more than this of a benchmark core: noisy


@dataclass
class Result:
    """One test against one server, as reported and written to JSON."""

    test: str
    value: float | None
    unit: str
    wall_s: float = 0.0
    loadgen_cpu: float | None = None  # fraction of one core over the window
    server_cpu: float | None = None  # fraction of one core over the window, whole tree
    foreign_cpu: float | None = None  # other load on the two benchmark cores (worst of both)
    softirq_cpu: float | None = None  # kernel interrupt work on the server's core
    errors: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def noisy(self) -> bool:
        """True if other processes took a noticeable share of the benchmark cores."""
        return self.foreign_cpu is not None and self.foreign_cpu > FOREIGN_BUSY

    @property
    def loadgen_bound(self) -> bool:
        """True if the load generator was busy enough to have limited the figure."""
        return self.loadgen_cpu is not None and self.loadgen_cpu > LOADGEN_BUSY

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict, including the loadgen-bound flag."""
        return {**asdict(self), "loadgen_bound": self.loadgen_bound, "noisy": self.noisy}


class Window:
    """The measurement window: counters and CPU clocks at its start, deltas at its end."""

    def __init__(self, load: Load, server: ServerProcess) -> None:
        self.load = load
        self.server = server
        self.start = load.snapshot()
        self.server_cpu0 = server.cpu_seconds()
        self.server_core0 = procstat.core_seconds(server.cpu)
        self.loadgen_core = next(iter(os.sched_getaffinity(0)))
        self.loadgen_core0 = procstat.core_seconds(self.loadgen_core)
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()

    def close(self, test: str, unit: str) -> Result:
        """Return a Result with wall time and both CPU figures; ``value`` left to the test."""
        wall = time.perf_counter() - self.t0
        cpu = time.process_time() - self.cpu0
        server_cpu = self.server.cpu_seconds() - self.server_cpu0
        server_task, server_irq = procstat.core_seconds(self.server.cpu)
        loadgen_task, _ = procstat.core_seconds(self.loadgen_core)
        server_core = server_task - self.server_core0[0]
        loadgen_core = loadgen_task - self.loadgen_core0[0]
        end = self.load.snapshot()
        messages, nbytes, cycles = (b - a for a, b in zip(self.start, end, strict=True))
        # A few percent is tick-sampling noise; tens of percent is another process running.
        foreign = max(server_core - server_cpu, loadgen_core - cpu, 0.0) / wall
        return Result(
            test,
            None,
            unit,
            wall_s=wall,
            loadgen_cpu=cpu / wall,
            server_cpu=server_cpu / wall,
            foreign_cpu=foreign,
            softirq_cpu=(server_irq - self.server_core0[1]) / wall,
            details={"messages": messages, "payload_bytes": nbytes, "cycles": cycles},
        )


async def _drain(load: Load, timeout: float = 3.0) -> None:
    """After sends stop, wait until echoes stop arriving (bounded), so the closing
    handshake does not race messages still queued in the server."""
    deadline = time.monotonic() + timeout
    last = -1
    while load.messages != last and time.monotonic() < deadline:
        last = load.messages
        await asyncio.sleep(0.1)


def _request(server: ServerProcess) -> bytes:
    return frames.upgrade_request(HOST, server.port, PATH)


async def _echo(
    server: ServerProcess,
    duration: float,
    *,
    test: str,
    connections: int,
    depth: int,
    payload: bytes,
    opcode: int,
    unit: str,
) -> Result:
    """Closed-loop echo: ``depth`` messages in flight on each of ``connections``."""
    load = Load()
    request = _request(server)
    frame = frames.client_frame(opcode, payload)

    def factory() -> WsClient:
        return EchoClient(
            request, load, frame, depth, expect_opcode=opcode, expect_size=len(payload)
        )

    clients = await open_many(connections, factory, HOST, server.port, load)
    try:
        if not clients:
            return Result(test, None, unit, errors=dict(load.errors))
        await asyncio.sleep(RAMP)
        window = Window(load, server)
        await asyncio.sleep(duration)
        result = window.close(test, unit)
    finally:
        load.sending = False
        await _drain(load)
        await close_all(clients)
    result.details["connections"] = len(clients)
    if unit == "MiB/s":
        result.value = result.details["payload_bytes"] / 2**20 / result.wall_s
    else:
        result.value = result.details["messages"] / result.wall_s
    result.errors = dict(load.errors)
    return result


async def echo(server: ServerProcess, duration: float) -> Result:
    """100 connections, one 32-byte text message in flight each: latency-bound throughput."""
    return await _echo(
        server,
        duration,
        test="echo",
        connections=100,
        depth=1,
        payload=SMALL,
        opcode=frames.OP_TEXT,
        unit="msg/s",
    )


async def pipelined(server: ServerProcess, duration: float) -> Result:
    """100 connections, 16 messages in flight each: how well the server batches I/O."""
    return await _echo(
        server,
        duration,
        test="pipelined",
        connections=100,
        depth=16,
        payload=SMALL,
        opcode=frames.OP_TEXT,
        unit="msg/s",
    )


async def large(server: ServerProcess, duration: float) -> Result:
    """4 connections echoing 1 MiB binary messages: copy and masking cost per byte."""
    return await _echo(
        server,
        duration,
        test="large",
        connections=4,
        depth=1,
        payload=LARGE,
        opcode=frames.OP_BINARY,
        unit="MiB/s",
    )


async def json_echo(server: ServerProcess, duration: float) -> Result:
    """``echo`` with a JSON message: what a typed route (decode, validate, encode) costs."""
    return await _echo(
        server,
        duration,
        test="json-echo",
        connections=100,
        depth=1,
        payload=JSON_MESSAGE,
        opcode=frames.OP_TEXT,
        unit="msg/s",
    )


async def json_pipelined(server: ServerProcess, duration: float) -> Result:
    """``pipelined`` with a JSON message: the typed path's cost with less I/O per message."""
    return await _echo(
        server,
        duration,
        test="json-pipelined",
        connections=100,
        depth=16,
        payload=JSON_MESSAGE,
        opcode=frames.OP_TEXT,
        unit="msg/s",
    )


async def _cycles(
    server: ServerProcess, load: Load, workers: int, max_cycles: int | None = None
) -> list[asyncio.Task[None]]:
    """Start ``workers`` loops of full connection cycles until ``load.sending`` goes False."""
    request = _request(server)
    frame = frames.client_frame(frames.OP_TEXT, SMALL)
    started = 0

    async def worker() -> None:
        nonlocal started
        while load.sending and (max_cycles is None or started < max_cycles):
            started += 1
            client = CycleClient(request, load, frame, expect_opcode=frames.OP_TEXT)
            try:
                await connect(lambda c=client: c, HOST, server.port, CYCLE_TIMEOUT)
                await asyncio.wait_for(asyncio.shield(client.closed), CYCLE_TIMEOUT)
            except TimeoutError:
                load.errors["cycle timeout"] += 1
                client.abort()
            except OSError as exc:
                load.errors[f"connect: {type(exc).__name__}"] += 1
                client.abort()
                await asyncio.sleep(0.01)  # don't spin on a refusing or dead server

    return [asyncio.create_task(worker()) for _ in range(workers)]


async def _join(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Wait for ``tasks`` at most ``timeout`` seconds, then cancel the stragglers."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


async def handshake(server: ServerProcess, duration: float) -> Result:
    """50 workers each looping connect, upgrade, echo one message, close: cycles/s."""
    load = Load()
    tasks = await _cycles(server, load, workers=50)
    try:
        await asyncio.sleep(RAMP)
        window = Window(load, server)
        await asyncio.sleep(duration)
        result = window.close("handshake", "conn/s")
    finally:
        load.sending = False
        await _join(tasks, 2 * CYCLE_TIMEOUT + 1)
    result.value = result.details["cycles"] / result.wall_s
    result.details["workers"] = 50
    result.errors = dict(load.errors)
    return result


async def _stable_rss(server: ServerProcess, timeout: float = 15.0) -> tuple[int, bool]:
    """Poll RSS until 4 samples 0.5 s apart agree within 1 % (or 512 KiB); bounded."""
    samples = [server.rss_kb()]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        samples.append(server.rss_kb())
        recent = samples[-4:]
        if len(recent) == 4 and max(recent) - min(recent) <= max(512, recent[-1] // 100):
            return recent[-1], True
    return samples[-1], False


async def _settle(server: ServerProcess, fds: int, timeout: float = 30.0) -> bool:
    """Wait until the server has closed the sockets it gained (fd count back near ``fds``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.fd_count() <= fds + 5:
            return True
        await asyncio.sleep(0.25)
    return False


async def memory(server: ServerProcess, duration: float, connections: int = 5000) -> Result:
    """RSS growth of the server tree per idle upgraded connection, in KiB."""
    load = Load()
    request = _request(server)
    before, stable_before = await _stable_rss(server)
    fds = server.fd_count()
    t0 = time.perf_counter()
    clients = await open_many(connections, lambda: WsClient(request, load), HOST, server.port, load)
    opened_s = time.perf_counter() - t0
    try:
        after, stable_after = await _stable_rss(server)
    finally:
        await close_all(clients, timeout=15.0)
    settled = await _settle(server, fds)
    rest, _ = await _stable_rss(server, timeout=5.0)
    opened = len(clients)
    return Result(
        "memory",
        (after - before) / opened if opened else None,
        "KiB/conn",
        wall_s=opened_s,
        errors=dict(load.errors),
        details={
            "requested": connections,
            "opened": opened,
            "rss_before_kb": before,
            "rss_after_kb": after,
            "rss_after_close_kb": rest,
            "rss_stable": stable_before and stable_after,
            "settled_after_close": settled,
        },
    )


async def warm_up(
    server: ServerProcess, seconds: float, handshakes: int = 2000, *, typed: bool = False
) -> dict[str, Any]:
    """Run ~``handshakes`` connection cycles, then ``seconds`` of echo, unmeasured
    (``typed``: of the JSON message, the one a typed server echoes unchanged).

    A fresh server is markedly slower (a cold websockets server runs ~2x slower) until
    code paths, allocator pools and caches have warmed up.
    """
    load = Load()
    tasks = await _cycles(server, load, workers=50, max_cycles=handshakes)
    _, pending = await asyncio.wait(tasks, timeout=60.0)
    load.sending = False
    await _join(list(pending), 2 * CYCLE_TIMEOUT + 1)
    info: dict[str, Any] = {"cycles": load.cycles, "errors": dict(load.errors)}
    if seconds > 0:
        echoed = await (json_echo if typed else echo)(server, seconds)
        info["echo_msg_per_s"] = echoed.value
        info["errors"].update(echoed.errors)
    return info


Test = Callable[[ServerProcess, float], Awaitable[Result]]


@dataclass(frozen=True)
class TestSpec:
    """A test as the CLI and the report know it."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    run: Test


# Order of execution: memory first, while the warmed-up server has not yet grown buffers
# and pools under heavy load, so its baseline RSS is the idle server's.
TESTS: dict[str, TestSpec] = {
    spec.name: spec
    for spec in (
        TestSpec("memory", "memory / idle conn (5000)", "KiB/conn", False, memory),
        TestSpec("echo", "echo closed-loop (100x1)", "msg/s", True, echo),
        TestSpec("pipelined", "echo pipelined (100x16)", "msg/s", True, pipelined),
        TestSpec("handshake", "handshakes (50 workers)", "conn/s", True, handshake),
        TestSpec("large", "1 MiB echo (4 conns)", "MiB/s", True, large),
        TestSpec("json-echo", "JSON echo closed-loop (100x1)", "msg/s", True, json_echo),
        TestSpec("json-pipelined", "JSON echo pipelined (100x16)", "msg/s", True, json_pipelined),
    )
}
