"""Machine description, result tables and the JSON file.

Ratios are server / peer for the test's own unit, against each of the two peers (websockets
and aiohttp) side by side: for throughput tests a ratio above 1 means faster than that peer,
and for memory a ratio below 1 means leaner.
"""

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import goals
from bench.scenarios import FOREIGN_BUSY, LOADGEN_BUSY, TESTS, Result
from bench.targets import PEERS, TYPED_PREFIX

DISPLAY_ORDER = (
    "echo",
    "pipelined",
    "handshake",
    "large",
    "memory",
    "json-echo",
    "json-pipelined",
)
# Tests run only when asked for (--tests json-echo,json-pipelined): typed routes against
# the untyped echo, which the default run's servers do not need.
TYPED_TESTS = ("json-echo", "json-pipelined")
DEFAULT_TESTS = tuple(t for t in DISPLAY_ORDER if t not in TYPED_TESTS)
UNTYPED = "axeom"  # the untyped echo the typed servers are compared with
_PACKAGES = ("websockets", "aiohttp", "trio", "trio-websocket", "uvloop", "msgpack", "axeom")


def machine_info() -> dict[str, Any]:
    """Describe what the figures were measured on (they mean little without it)."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "packages": versions,
    }


def format_machine(info: dict[str, Any]) -> str:
    """Return the machine description as a few human lines."""
    packages = ", ".join(f"{k} {v or '(not installed)'}" for k, v in info["packages"].items())
    return (
        f"machine: {info['nproc']} CPUs ({info['cpu_model']}), Linux {info['kernel']}\n"
        f"python:  {info['python_impl']} {info['python']}\n"
        f"packages: {packages}"
    )


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "failed"
    if unit in ("MiB/s", "KiB/conn"):
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def _ratio(result: Result, baseline: Result | None) -> str:
    if baseline is None or not baseline.value or result.value is None:
        return "n/a"
    return f"{result.value / baseline.value:.2f}x"


def _table(rows: list[list[str]], left: int = 2) -> str:
    """Align ``rows`` (the first is the header): ``left`` text columns, then numbers."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(results: dict[str, dict[str, Result]], servers: list[str], tests: list[str]) -> str:
    """One line per test and server: the figure, then its ratio to each peer side by side."""
    rows = [["test", "server", "figure", *(f"vs {peer}" for peer in PEERS)]]
    for test in [t for t in DISPLAY_ORDER if t in tests]:
        spec = TESTS[test]
        peers = [results.get(peer, {}).get(test) for peer in PEERS]
        label = f"{spec.label}, {spec.unit}" + ("" if spec.higher_is_better else " (lower=better)")
        first = True
        for server in servers:
            result = results.get(server, {}).get(test)
            if result is None:
                continue
            flag = (" !" if result.loadgen_bound else "") + (" ~" if result.noisy else "")
            figure = _figure(result.value, spec.unit) + flag
            ratios = [_ratio(result, peer) for peer in peers]
            rows.append([label if first else "", server, figure, *ratios])
            first = False
    return _table(rows)


def targets(
    results: dict[str, dict[str, Result]], reference: goals.Reference, tests: list[str]
) -> str:
    """The targets table, one line per target and server with its verdict, then fan-out."""
    rows = [["target", "server", "figure", "ratio", "needed", "verdict"]]
    previous = None
    for found in goals.checks(results, reference, tests):
        label = found.target.label if found.target is not previous else ""
        previous = found.target
        result, unit = found.result, TESTS[found.target.test].unit
        figure = "-" if result is None else f"{_figure(result.value, unit)} {unit}"
        ratio = "" if found.ratio is None else f"{found.ratio:.2f}x {found.versus}"
        verdict = found.verdict
        if result is not None and found.ratio is not None:
            verdict += (" !" if result.loadgen_bound else "") + (" ~" if result.noisy else "")
        rows.append([label, found.server, figure, ratio, found.needed, verdict])
    return _table(rows, left=2) + "\n" + goals.FANOUT_NOTE


def typed_ratios(results: dict[str, dict[str, Result]], tests: list[str]) -> str:
    """Each typed server's figure as a ratio to the untyped echo of the same run, and
    the same for messages per CPU-second of the server (the cost per message, which
    holds up better than the rate when other processes share the core). Empty when
    the run had no typed test."""
    head = ["test", "server", "figure", f"vs {UNTYPED}", "msg/CPU-s", f"vs {UNTYPED}"]
    rows = [head]
    for test in [t for t in TYPED_TESTS if t in tests]:
        untyped = results.get(UNTYPED, {}).get(test)
        for server, measured in results.items():
            result = measured.get(test)
            if result is None or not (server.startswith(TYPED_PREFIX) or server == UNTYPED):
                continue
            flag = (" !" if result.loadgen_bound else "") + (" ~" if result.noisy else "")
            figure = _figure(result.value, result.unit) + flag
            per_cpu = per_cpu_second(result)
            base = None if untyped is None else per_cpu_second(untyped)
            cost = "n/a" if per_cpu is None or not base else f"{per_cpu / base:.2f}x"
            rows.append(
                [
                    test,
                    server,
                    figure,
                    _ratio(result, untyped),
                    "-" if per_cpu is None else f"{per_cpu:,.0f}",
                    cost,
                ]
            )
    return "" if len(rows) == 1 else "typed echo / untyped echo:\n" + _table(rows)


def per_cpu_second(result: Result) -> float | None:
    """Messages per second of server CPU (whole process tree) over the window."""
    if result.value is None or not result.server_cpu:
        return None
    return result.value / result.server_cpu


def details(results: dict[str, dict[str, Result]], servers: list[str], tests: list[str]) -> str:
    """One row per test and server: the CPU figures that tell whether a figure is sound."""
    head = ["test", "server", "value", "loadgen CPU", "server CPU", "softirq", "other load"]
    rows = [[*head, "errors"]]
    for test in [t for t in DISPLAY_ORDER if t in tests]:
        for server in servers:
            result = results.get(server, {}).get(test)
            if result is None:
                continue
            lg = "-" if result.loadgen_cpu is None else f"{result.loadgen_cpu:.0%}"
            if result.loadgen_bound:
                lg += " !"
            srv = "-" if result.server_cpu is None else f"{result.server_cpu:.0%}"
            other = "-" if result.foreign_cpu is None else f"{result.foreign_cpu:.0%}"
            if result.noisy:
                other += " ~"
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items())) or "0"
            irq = "-" if result.softirq_cpu is None else f"{result.softirq_cpu:.0%}"
            value = _figure(result.value, result.unit)
            rows.append([test, server, value, lg, srv, irq, other, errors])
    return _table(rows)


def footnote() -> str:
    """Explain the marks used in the tables."""
    return (
        f"ratio = server / {' or '.join(PEERS)} (same unit, same run). "
        f"'!' = load generator above {LOADGEN_BUSY:.0%} of a core: "
        "the figure may be limited by the client, not the server.\n"
        f"'~' = other processes used more than {FOREIGN_BUSY:.0%} of a benchmark core during "
        "the window: the figure is likely low; rerun on a quiet machine.\n"
        "softirq = kernel packet work on the server's core, charged to no process."
    )


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` (creating its folder), pretty-printed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
