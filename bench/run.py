"""Command line: ``python -m bench.run [--servers ...] [--tests ...] [--duration S]``.

Pins itself (the load generator) to one core and each server to another, warms each server
up, runs the selected tests against one server at a time, prints the tables (figures with
their ratios to both peers, then the targets with a verdict each) and writes JSON.
"""

import argparse
import asyncio
import fcntl
import functools
import json
import os
import resource
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import uvloop

from bench import goals, procstat, report, scenarios
from bench.scenarios import TESTS, Result
from bench.targets import (
    BASELINE,
    BENCH_DIR,
    PEERS,
    SERVERS,
    TYPED_PREFIX,
    ServerProcess,
    ServerStartError,
)

SERVER_CPU = 0
LOADGEN_CPU = 1
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
NOFILE_WANTED = 20000  # 5000 idle clients + 5000 server sockets + slack, within the hard cap


def _names(value: str, known: dict[str, Any], what: str) -> list[str]:
    if value.strip() == "all":
        return list(known)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(known)})"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    default_servers = ",".join(n for n, s in SERVERS.items() if s.default)
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--servers",
        default=default_servers,
        type=lambda v: _names(v, SERVERS, "server"),
        help=f"comma-separated, from: {', '.join(SERVERS)}, or all (default: {default_servers})",
    )
    parser.add_argument(
        "--tests",
        default=",".join(report.DEFAULT_TESTS),
        type=lambda v: _names(v, TESTS, "test"),
        help=f"comma-separated, from: {', '.join(report.DISPLAY_ORDER)} "
        f"(default: {', '.join(report.DEFAULT_TESTS)})",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per test")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of echo after the handshake burst"
    )
    parser.add_argument(
        "--idle-connections", type=int, default=5000, help="connections in the memory test"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--reference",
        type=Path,
        help="results file of an earlier run (e.g. the previous code): targets of the form "
        "'no worse than before' (idle memory) are checked against it",
    )
    return parser.parse_args(argv)


def load_reference(path: Path | None, args: argparse.Namespace) -> goals.Reference:
    """Read the ``--reference`` results file (before the run, so a bad path fails fast)."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text())
        reference = goals.load_reference(document)
        earlier = document.get("config", {}).get("idle_connections")
    except (OSError, ValueError, AttributeError) as exc:
        sys.exit(f"--reference {path}: not a results file of bench.run ({exc})")
    if earlier != args.idle_connections:  # RSS per connection depends on how many
        print(f"WARNING: --reference measured memory with {earlier} idle connections")
    return reference


def pin_loadgen() -> None:
    """Keep the load generator off the server's core so they never compete for CPU."""
    available = os.sched_getaffinity(0)
    if not {SERVER_CPU, LOADGEN_CPU} <= available:
        sys.exit(f"need CPUs {SERVER_CPU} and {LOADGEN_CPU}; this process may use {available}")
    os.sched_setaffinity(0, {LOADGEN_CPU})


def exclusive(timeout: float = 600.0) -> TextIO:
    """Hold a machine-wide lock so two benchmark runs never share (and skew) the cores."""
    lock = (Path(tempfile.gettempdir()) / "axeom-bench.lock").open("w")
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                sys.exit("another benchmark run still holds the lock; giving up")
            if not waiting:
                print("another benchmark run is in progress; waiting for it", flush=True)
                waiting = True
            time.sleep(1.0)


def busy_cores(seconds: float = 1.0) -> dict[int, float]:
    """Return how busy each benchmark core is before we start (it should be idle)."""
    cores = (SERVER_CPU, LOADGEN_CPU)
    before = {cpu: procstat.core_seconds(cpu)[0] for cpu in cores}
    time.sleep(seconds)
    return {cpu: (procstat.core_seconds(cpu)[0] - before[cpu]) / seconds for cpu in cores}


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """Raise the soft fd limit (inherited by the servers) toward ``wanted``; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


async def bench_server(
    server: ServerProcess,
    tests: list[str],
    args: argparse.Namespace,
    out: dict[str, Result],
) -> dict[str, Any]:
    """Warm ``server`` up and run ``tests`` on it in execution order, filling ``out``."""
    t0 = time.perf_counter()
    typed = server.spec.name.startswith(TYPED_PREFIX)
    warm = await scenarios.warm_up(server, args.warmup, typed=typed)
    print(
        f"  warm-up: {warm['cycles']} handshakes, echo {warm.get('echo_msg_per_s') or 0:,.0f} "
        f"msg/s, {time.perf_counter() - t0:.1f}s, errors {warm['errors'] or 0}",
        flush=True,
    )
    for name in [t for t in TESTS if t in tests]:  # TESTS order is the execution order
        spec = TESTS[name]
        run = spec.run
        if name == "memory":
            run = functools.partial(scenarios.memory, connections=args.idle_connections)
        try:
            result = await run(server, args.duration)
        except Exception as exc:  # a broken test must not lose the other results
            result = Result(name, None, spec.unit, errors={f"harness: {exc!r}": 1})
        out[name] = result
        lg = "" if result.loadgen_cpu is None else f", loadgen {result.loadgen_cpu:.0%}"
        srv = "" if result.server_cpu is None else f", server {result.server_cpu:.0%}"
        if result.foreign_cpu is not None:
            srv += f", other load {result.foreign_cpu:.0%}"
        value = "failed" if result.value is None else f"{result.value:,.1f}"
        errs = f", errors {sum(result.errors.values())}" if result.errors else ""
        print(f"  {spec.label}: {value} {spec.unit}{lg}{srv}{errs}", flush=True)
        if not server.alive():
            print(f"  server died; last output: {server.output_tail()[-5:]}", flush=True)
            break
        await asyncio.sleep(0.5)  # let the server finish closing before the next test
    return warm


async def bench_all(
    args: argparse.Namespace, results: dict[str, dict[str, Result]], meta: dict[str, Any]
) -> None:
    """Run every selected server in turn (baseline first); record skips in ``meta``."""
    # SIGTERM (e.g. from `timeout`) must stop the servers too: treat it like Ctrl-C.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    for name in args.servers:
        spec = SERVERS[name]
        print(f"\n== {name}: {spec.about} (pinned to CPU {SERVER_CPU})", flush=True)
        log = args.json.parent / "logs" / f"{name}.log"
        server = ServerProcess(spec, SERVER_CPU, log)
        try:
            server.start()
        except ServerStartError as exc:
            print(f"  SKIPPED: {exc}", flush=True)
            meta["skipped"][name] = str(exc)
            continue
        try:
            print(f"  listening on port {server.port}, pid {server.pid}", flush=True)
            results[name] = {}
            meta["warmup"][name] = await bench_server(server, args.tests, args, results[name])
        except Exception as exc:  # report and go on with the next server
            print(f"  ABORTED: {exc!r}", flush=True)
            meta["aborted"][name] = repr(exc)
        finally:
            code = server.stop()
            meta["exit_codes"][name] = code


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    reference = load_reference(args.reference, args)
    # Peers first so that their figures exist when the others are compared to them.
    args.servers = sorted(
        dict.fromkeys(args.servers), key=lambda n: PEERS.index(n) if n in PEERS else len(PEERS)
    )
    pin_loadgen()
    lock = exclusive()  # released when the process exits
    nofile = raise_nofile()
    machine = report.machine_info()
    print(report.format_machine(machine))
    print(
        f"pinning: servers on CPU {SERVER_CPU} (taskset), load generator on CPU {LOADGEN_CPU}; "
        f"RLIMIT_NOFILE {nofile}; {args.duration:g}s per test"
    )
    busy = busy_cores()
    if any(share > scenarios.FOREIGN_BUSY for share in busy.values()):
        shares = ", ".join(f"CPU {cpu} {share:.0%}" for cpu, share in busy.items())
        print(f"WARNING: benchmark cores already busy ({shares}): figures will be low/noisy")
    results: dict[str, dict[str, Result]] = {}
    meta: dict[str, Any] = {"skipped": {}, "aborted": {}, "warmup": {}, "exit_codes": {}}
    code = 0
    try:
        uvloop.run(bench_all(args, results, meta))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: reporting what was measured", file=sys.stderr)
        code = 130
    ran = [s for s in args.servers if s in results]
    if ran:
        print("\n" + report.summary(results, ran, args.tests))
        print("\n" + report.details(results, ran, args.tests))
        print("\n" + report.footnote())
        print("\n" + report.targets(results, reference, args.tests))
        typed = report.typed_ratios(results, args.tests)
        if typed:
            print("\n" + typed)
    for name, why in meta["skipped"].items():
        print(f"skipped {name}: {why.splitlines()[0]}")
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "busy_before_start": {str(cpu): share for cpu, share in busy.items()},
        "config": {
            "servers": args.servers,
            "tests": args.tests,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "idle_connections": args.idle_connections,
            "server_cpu": SERVER_CPU,
            "loadgen_cpu": LOADGEN_CPU,
            "baseline": BASELINE,
            "peers": list(PEERS),
            "reference": None if args.reference is None else str(args.reference),
        },
        "results": {
            server: {test: r.to_json() for test, r in tests.items()}
            for server, tests in results.items()
        },
        **meta,
    }
    report.write_json(args.json, document)
    print(f"results written to {args.json}")
    lock.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
