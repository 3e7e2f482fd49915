"""Fan-out benchmark: one publisher, 1,000 subscribers, deliveries counted at the clients.

    python -m bench.fanout [--subscribers 1000] [--duration 5] [--workers 2]
                           [--json FILE] [--reference FILE]

Runs the websockets library's ``broadcast()`` (one process), aiohttp sending
to every subscriber in turn (one process) and ``axeom run --workers N`` with
pub/sub (subscribers spread over the workers) in the same run, each server
pinned to CPU 0 and this load generator to CPU 1. Axeom's target is "no worse
than the last release": ``--reference`` takes the results file of a run of the
earlier code and compares Axeom's ratio to websockets with the one in it.

throughput: the publisher sends rounds of ``ROUND`` messages and waits until
    (nearly) every subscriber got them, so no queue grows without bound;
    deliveries/s = messages x subscribers received / time.
latency: the publisher sends at a fixed moderate rate; each message carries
    its send time, and every delivery's age is recorded: p50 / p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import struct
import time
from pathlib import Path

import uvloop

from bench import frames
from bench.run import exclusive
from bench.targets import HOST, ServerProcess, ServerSpec, ServerStartError

ROUND = 20
RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ("websockets", "aiohttp")  # ratios are reported against each
# "No worse than before": the ratio to websockets swings a few percent between runs of the
# same code, so a drop within 5% of the reference's is not called a regression.
REFERENCE_SLACK = 0.05


def specs(workers: int) -> list[ServerSpec]:
    ready = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)\b")
    return [
        ServerSpec(
            "websockets",
            ("{python}", "bench/servers/websockets_fanout.py"),
            ready,
            True,
            "websockets broadcast(), one process",
        ),
        ServerSpec(
            "aiohttp",
            ("{python}", "bench/servers/aiohttp_fanout.py"),
            ready,
            True,
            "aiohttp, send to each subscriber in turn, one process",
        ),
        ServerSpec(
            "axeom",
            (
                "axeom",
                "run",
                "bench/apps/fanout.py:app",
                "--host",
                HOST,
                "--port",
                "0",
                "--workers",
                str(workers),
            ),
            ready,
            True,
            f"axeom run --workers {workers}, pub/sub",
        ),
    ]


class Subscriber(asyncio.Protocol):
    """Parses server frames (small, unmasked) and records each delivery's age."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.opened = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(bytes(buf[:40])))
                return
            del buf[: end + 4]
            self.upgraded = True
            self.opened.set_result(None)
        pos, size = 0, len(buf)
        stats = self.stats
        now = time.perf_counter_ns()
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            if size - pos < head + length:
                break
            if buf[pos] & 0x0F in (1, 2):
                stats.delivered += 1
                if stats.recording and length >= 8:
                    sent = struct.unpack_from("!q", buf, pos + head)[0]
                    stats.ages.append(now - sent)
            pos += head + length
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lost += 1


class Stats:
    def __init__(self) -> None:
        self.delivered = 0
        self.lost = 0
        self.recording = False
        self.ages: list[int] = []


async def open_socket(port: int, path: str, stats: Stats) -> Subscriber:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: Subscriber(stats), HOST, port)
    assert proto.transport is not None
    proto.transport.write(frames.upgrade_request(HOST, port, path))
    await asyncio.wait_for(proto.opened, 10)
    return proto


def message(payload_size: int) -> bytes:
    body = struct.pack("!q", time.perf_counter_ns()) + b"x" * (payload_size - 8)
    return frames.client_frame(frames.OP_BINARY, body)


async def measure(server: ServerProcess, subscribers: int, duration: float, rate: int) -> dict:
    stats = Stats()
    subs = []
    for start in range(0, subscribers, 100):
        subs += await asyncio.gather(
            *(
                open_socket(server.port, "/sub", stats)
                for _ in range(start, min(start + 100, subscribers))
            )
        )
    publisher = await open_socket(server.port, "/pub", Stats())
    assert publisher.transport is not None
    await asyncio.sleep(1.0)  # subscriptions reach the hub
    # Throughput: rounds of ROUND messages, each awaited (98%) before the next.
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    base = stats.delivered
    sent = 0
    while time.perf_counter() - t0 < duration:
        for _ in range(ROUND):
            publisher.transport.write(message(32))
        sent += ROUND
        target = base + int(sent * subscribers * 0.98)
        deadline = time.perf_counter() + 10
        while stats.delivered < target and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)
    await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - t0
    delivered = stats.delivered - base
    server_cpu = (server.cpu_seconds() - cpu0) / elapsed
    # Latency at a moderate rate.
    stats.recording = True
    interval = 1.0 / rate
    t1 = time.perf_counter()
    n = 0
    while time.perf_counter() - t1 < duration:
        publisher.transport.write(message(32))
        n += 1
        await asyncio.sleep(max(0.0, t1 + n * interval - time.perf_counter()))
    await asyncio.sleep(1.0)
    stats.recording = False
    ages = sorted(stats.ages)
    for proto in [*subs, publisher]:
        if proto.transport is not None:
            proto.transport.abort()
    return {
        "deliveries_per_s": delivered / elapsed,
        "messages_sent": sent,
        "expected": sent * subscribers,
        "delivered": delivered,
        "server_cpu": server_cpu,
        "latency_rate_msgs_per_s": rate,
        "latency_samples": len(ages),
        "latency_expected": n * subscribers,
        "p50_ms": ages[len(ages) // 2] / 1e6 if ages else None,
        "p99_ms": ages[int(len(ages) * 0.99)] / 1e6 if ages else None,
        "lost_connections": stats.lost,
    }


async def run(args: argparse.Namespace) -> dict[str, dict]:
    results: dict[str, dict] = {}
    RESULTS.mkdir(exist_ok=True)
    for spec in specs(args.workers):
        server = ServerProcess(spec, 0, RESULTS / f"fanout-{spec.name}.log")
        try:
            try:
                server.start()
            except ServerStartError as exc:  # e.g. a peer not installed: run the others
                print(f"== {spec.name}: SKIPPED: {exc}", flush=True)
                continue
            print(f"== {spec.name}: {spec.about}", flush=True)
            results[spec.name] = await measure(server, args.subscribers, args.duration, args.rate)
            r = results[spec.name]
            print(
                f"  {r['deliveries_per_s']:,.0f} deliveries/s (server CPU {r['server_cpu']:.0%}); "
                f"latency at {args.rate} msg/s x {args.subscribers}: p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms ({r['latency_samples']}/{r['latency_expected']})",
                flush=True,
            )
        finally:
            server.stop()
    return results


def summary(results: dict[str, dict]) -> str:
    """One line per server: deliveries/s, its ratio to each peer, latency."""
    head = f"{'server':<12} {'deliveries/s':>14}" + "".join(f" {'vs ' + p:>14}" for p in PEERS)
    lines = [head + f" {'p50 ms':>8} {'p99 ms':>8}"]
    for name, r in results.items():
        line = f"{name:<12} {r['deliveries_per_s']:>14,.0f}"
        for peer in PEERS:
            base = results.get(peer, {}).get("deliveries_per_s")
            line += f" {r['deliveries_per_s'] / base:>13.2f}x" if base else f" {'n/a':>14}"
        p50, p99 = r["p50_ms"], r["p99_ms"]
        lines.append(line + (f" {p50:>8.2f} {p99:>8.2f}" if p50 is not None else ""))
    return "\n".join(lines)


def axeom_ratio(results: dict[str, dict]) -> float | None:
    """Return Axeom's deliveries/s over websockets', or None if either is missing."""
    mine = results.get("axeom", {}).get("deliveries_per_s")
    base = results.get("websockets", {}).get("deliveries_per_s")
    return mine / base if mine and base else None


def reference_ratio(reference: Path | None) -> float | None:
    """Return Axeom's ratio to websockets in ``reference`` (read before the run: fail fast)."""
    if reference is None:
        return None
    try:
        before = axeom_ratio(json.loads(reference.read_text()).get("results", {}))
    except (OSError, ValueError, AttributeError) as exc:
        why = f"--reference {reference}: not a results file of bench.fanout ({exc})"
        raise SystemExit(why) from None
    if before is None:
        raise SystemExit(f"--reference {reference}: no axeom/websockets ratio in it")
    return before


def verdict(results: dict[str, dict], before: float | None) -> str:
    """Compare Axeom's ratio to websockets with ``before``, the reference run's."""
    now = axeom_ratio(results)
    if before is None:
        return "target (no worse than the last release): give --reference FILE of an earlier run"
    if now is None:
        return "target: no axeom/websockets ratio in this run"
    needed = before * (1 - REFERENCE_SLACK)
    return (
        f"target: axeom {now:.2f}x websockets, reference {before:.2f}x, needed >= "
        f"{needed:.2f}x: {'pass' if now >= needed else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=50, help="messages/s for the latency run")
    parser.add_argument("--json", type=Path, default=RESULTS / "fanout.json")
    parser.add_argument("--reference", type=Path, help="results file of an earlier run")
    args = parser.parse_args()
    before = reference_ratio(args.reference)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    lock = exclusive()  # never share the cores with a bench.run (or another fan-out) run
    results = uvloop.run(run(args))
    print("\n" + summary(results))
    print(f"({os.cpu_count()} cores; every server process on CPU 0, this load generator on CPU 1)")
    print(verdict(results, before))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"config": {k: str(v) for k, v in vars(args).items()}, "results": results}
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {args.json}")
    lock.close()


if __name__ == "__main__":
    main()
