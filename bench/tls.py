"""Command line: ``python -m bench.tls [--rounds N] [--duration S]``: ``wss://``.

Handshakes per second and closed-loop echo over TLS, Axeom (``--workers 0``
and ``--workers 1``) against the ``websockets`` library's asyncio server
with the same TLS settings (TLS 1.2 at least, ALPN http/1.1, the same
certificate, made for the run by trustme). Same pinning, load generator and
tests as ``bench.run`` (its ``echo`` and ``handshake``); the load generator
opens its connections with TLS (``loadgen.TLS``). The servers are run in
turn, ``--rounds`` times (interleaved: the machine's noise spreads over all
of them), and the medians are reported with their ratio to websockets.

A TLS handshake costs the client about what it costs the server: watch the
loadgen CPU column (``!`` above 85%: the client may have set the figure).
"""

import argparse
import asyncio
import re
import ssl
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import trustme
import uvloop

from bench import loadgen, scenarios
from bench.run import LOADGEN_CPU, SERVER_CPU, exclusive, pin_loadgen, raise_nofile
from bench.scenarios import Result
from bench.targets import HOST, ServerProcess, ServerSpec, ServerStartError

_AXEOM_READY = re.compile(r"^Axeom listening on wss://127\.0\.0\.1:(\d+)\b")
_PEER_READY = re.compile(r"listening on wss://127\.0\.0\.1:(\d+)\b")
BASELINE = "websockets-tls"
TESTS = ("handshake", "echo")
# Connection cycles before measuring: a TLS handshake costs ~10x a plaintext
# one, and 2,000 (bench.run's) would take half a minute per server.
WARM_HANDSHAKES = 500


def servers(cert: Path, key: Path) -> dict[str, ServerSpec]:
    """The servers of a TLS run, with the certificate files of this run."""
    tls = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    axeom = ("axeom", "run", "bench/apps/echo.py:app", "--host", HOST, "--port", "0", *tls)
    return {
        BASELINE: ServerSpec(
            BASELINE,
            ("{python}", "bench/servers/websockets_echo.py", str(cert), str(key)),
            _PEER_READY,
            True,
            "websockets asyncio server over TLS, default asyncio loop (baseline)",
        ),
        "axeom-tls": ServerSpec(
            "axeom-tls", (*axeom, "--workers", "0"), _AXEOM_READY, True, "axeom run, one process"
        ),
        "axeom-tls-w1": ServerSpec(
            "axeom-tls-w1",
            (*axeom, "--workers", "1"),
            _AXEOM_READY,
            True,
            "axeom run --workers 1 (the worker runs TLS and the handshake)",
        ),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tls", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every server (default 3)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per test")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "axeom-tls")
    return parser.parse_args(argv)


async def bench_one(spec: ServerSpec, duration: float, log: Path) -> dict[str, Result]:
    """Start one server, warm it up, run the tests, stop it."""
    server = ServerProcess(spec, SERVER_CPU, log)
    server.start()
    try:
        await scenarios.warm_up(server, 1.0, handshakes=WARM_HANDSHAKES)
        results = {}
        for test in TESTS:
            results[test] = await getattr(scenarios, test)(server, duration)
            await asyncio.sleep(0.5)
        return results
    finally:
        server.stop()


async def bench_rounds(args: argparse.Namespace, specs: dict[str, ServerSpec]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Result]]] = {name: [] for name in specs}
    for round_number in range(1, args.rounds + 1):
        for name, spec in specs.items():
            try:
                results = await bench_one(spec, args.duration, args.logs / f"{name}.log")
            except ServerStartError as exc:
                print(f"  {name}: SKIPPED ({exc})", flush=True)
                continue
            runs[name].append(results)
            print(f"round {round_number} {name}: " + _line(results), flush=True)
    return runs


def _line(results: dict[str, Result]) -> str:
    parts = []
    for test, result in results.items():
        value = "failed" if result.value is None else f"{result.value:,.0f} {result.unit}"
        lg = "" if result.loadgen_cpu is None else f" (loadgen {result.loadgen_cpu:.0%}"
        srv = "" if result.server_cpu is None else f", server {result.server_cpu:.0%})"
        errors = f" errors {sum(result.errors.values())}" if result.errors else ""
        parts.append(f"{test} {value}{lg}{srv}{errors}")
    return "; ".join(parts)


def summary(runs: dict[str, list[dict[str, Result]]]) -> str:
    """Medians per server and test, with the ratio to the baseline's median."""
    medians: dict[str, dict[str, float]] = {}
    for name, results in runs.items():
        medians[name] = {}
        for test in TESTS:
            values = [r[test].value for r in results if r[test].value is not None]
            if values:
                medians[name][test] = statistics.median(values)
    lines = [f"{'server':<16}" + "".join(f"{test:>26}" for test in TESTS)]
    base = medians.get(BASELINE, {})
    for name, figures in medians.items():
        cells = []
        for test in TESTS:
            value = figures.get(test)
            if value is None:
                cells.append(f"{'-':>26}")
                continue
            ratio = f" ({value / base[test]:.2f}x)" if base.get(test) else ""
            cells.append(f"{value:>17,.0f}{ratio:>9}")
        lines.append(f"{name:<16}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_loadgen()
    lock = exclusive()
    raise_nofile()
    with tempfile.TemporaryDirectory() as folder:
        authority = trustme.CA()
        issued = authority.issue_cert(HOST)
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        client = ssl.create_default_context()
        authority.configure_trust(client)
        loadgen.TLS = client
        print(
            f"TLS: servers on CPU {SERVER_CPU}, load generator on CPU {LOADGEN_CPU}; "
            f"{args.rounds} rounds, {args.duration:g}s per test; units: handshake conn/s, "
            "echo msg/s (100 connections)",
            flush=True,
        )
        runs = uvloop.run(bench_rounds(args, servers(cert, key)))
    print("\nmedians (ratio to websockets over TLS):\n" + summary(runs))
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
