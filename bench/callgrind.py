"""Instructions per message under callgrind: an exact cost, whatever the machine's load.

``python -m bench.callgrind [--servers axeom,axeom-typed-msgspec] [--messages 20000]``

Wall-clock rates swing by tens of percent on a shared machine; the number of CPU
instructions a server executes per echoed message does not. Each server of the table in
``targets.py`` (single-process ``axeom run`` ones) runs under ``valgrind --tool=callgrind``;
the harness opens ``--connections`` sockets, echoes a warm-up on each, zeroes the counters
(``callgrind_control -z``), echoes exactly ``--messages`` JSON messages pipelined
``--depth`` deep (the ``json-pipelined`` load, scaled down: the server runs about 50 times
slower under valgrind), dumps the counters (``callgrind_control -d``) and divides. The
figure is the whole server (loop, frames, handler, encoders) per message; what a change
saves shows as the difference between two runs, repeatable to a few instructions. Open a
dump with ``callgrind_annotate`` (``--keep`` keeps them) for the functions.
"""

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

from bench import frames
from bench.loadgen import EchoClient, Load, open_many
from bench.run import exclusive
from bench.scenarios import JSON_MESSAGE
from bench.targets import _AXEOM_READY, HOST, PATH, SERVERS, TYPED_LIBRARIES, TYPED_PREFIX

DEFAULT_SERVERS = ("axeom", *(TYPED_PREFIX + library for library in TYPED_LIBRARIES))
WARMUP = 200  # messages per connection before counting: caches filled, code paths taken
READY_TIMEOUT = 180.0  # python + the schema libraries start slowly under valgrind
ECHO_TIMEOUT = 600.0  # generous: callgrind runs a server about 50 times slower
_TOTALS = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


class QuotaClient(EchoClient):
    """Echoes ``quota`` messages in batches of ``depth`` written at once, each batch once
    the last one is back: every read of the server finds one whole batch, so the count
    does not depend on how fast the client happens to be (the machine's load)."""

    def __init__(self, request: bytes, load: Load, frame: bytes, depth: int, **expect: int):
        super().__init__(request, load, frame, depth, **expect)
        self.quota = 0
        self.sent = 0
        self.received = 0
        self.done: asyncio.Future[None] | None = None

    def start(self, quota: int) -> asyncio.Future[None]:
        """Echo ``quota`` more messages."""
        self.quota, self.sent, self.received = quota, 0, 0
        self.done = asyncio.get_running_loop().create_future()
        self._batch()
        return self.done

    def on_open(self) -> None:  # nothing until ``start``
        pass

    def on_messages(self, count: int) -> None:
        self.received += count
        if self.received < self.sent:
            return
        if self.received >= self.quota:
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
            return
        self._batch()

    def _batch(self) -> None:
        count = min(self.depth, self.quota - self.sent)
        if count > 0 and self.transport is not None:
            self.transport.write(self.frame * count)
            self.sent += count


def _argv(name: str) -> list[str]:
    spec = SERVERS[name]
    if spec.argv[0] != "axeom" or "--workers" not in spec.argv:
        raise SystemExit(f"{name}: only single-process axeom servers run under callgrind")
    if spec.argv[spec.argv.index("--workers") + 1] != "0":
        raise SystemExit(f"{name}: only --workers 0 servers run under callgrind")
    return [sys.executable, "-m", "axeom", *spec.argv[1:]]


def _wait_ready(proc: subprocess.Popen[str]) -> int:
    """The port from the server's ready line (its output is read until then)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    for line in proc.stdout:
        match = _AXEOM_READY.match(line)
        if match:
            return int(match.group(1))
        if time.monotonic() > deadline:
            break
    raise SystemExit(f"the server did not start (exit {proc.poll()})")


def _control(option: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=60
    )


def _dumped(out: Path, pid: int, timeout: float = 60.0) -> int:
    """Instructions in the first dump of process ``pid`` (written a moment after the request)."""
    dump = out.parent / f"{out.name}.{pid}.1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dump.is_file():
            match = _TOTALS.search(dump.read_text(errors="replace"))
            if match:
                return int(match.group(1))
        time.sleep(0.2)
    raise SystemExit(f"no callgrind dump at {dump}")


async def _echo(port: int, args: argparse.Namespace, pid: int) -> None:
    """Warm up, zero the counters, echo exactly ``--messages``, dump them."""
    load = Load()
    request = frames.upgrade_request(HOST, port, PATH)
    frame = frames.client_frame(frames.OP_TEXT, JSON_MESSAGE)

    def factory() -> QuotaClient:
        return QuotaClient(
            request, load, frame, args.depth, expect_opcode=1, expect_size=len(JSON_MESSAGE)
        )

    clients = await open_many(args.connections, factory, HOST, port, load, timeout=60.0)
    if len(clients) != args.connections:
        raise SystemExit(f"only {len(clients)} connections opened: {dict(load.errors)}")
    echoing = cast(list[QuotaClient], clients)
    quotas = [client.start(WARMUP) for client in echoing]
    await asyncio.wait_for(asyncio.gather(*quotas), ECHO_TIMEOUT)
    _control("-z", pid)
    each, extra = divmod(args.messages, len(echoing))
    quotas = [client.start(each + (i < extra)) for i, client in enumerate(echoing)]
    await asyncio.wait_for(asyncio.gather(*quotas), ECHO_TIMEOUT)
    _control("-d", pid)
    if load.errors:
        raise SystemExit(f"errors during the echo: {dict(load.errors)}")
    for client in clients:
        client.abort()


def measure(name: str, args: argparse.Namespace, workdir: Path) -> float:
    """Instructions per echoed message of server ``name``."""
    out = workdir / f"callgrind.{name}"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts every run
    proc = subprocess.Popen(
        [*valgrind, *_argv(name)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        port = _wait_ready(proc)
        asyncio.run(_echo(port, args, proc.pid))
        return _dumped(out, proc.pid) / args.messages
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--messages", type=int, default=20_000, help="messages counted")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--depth", type=int, default=16, help="messages per batch (one write)")
    parser.add_argument("--rounds", type=int, default=1, help="measure each server this often")
    parser.add_argument("--keep", type=Path, help="keep the callgrind dumps in this directory")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind (with callgrind_control) is not installed")
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        sys.exit(f"unknown servers: {', '.join(unknown)}")
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = args.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        figures: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                lock = exclusive()  # a core busy for a minute: don't skew a timed run
                try:
                    figures[name].append(measure(name, args, workdir))
                finally:
                    lock.close()
                print(f"{name}: {figures[name][-1]:,.0f} instructions per message", flush=True)
    print(summary(figures))


def summary(figures: dict[str, list[float]]) -> str:
    """One line per server: instructions per message (each round) and the ratio to ``axeom``."""
    base = min(figures["axeom"]) if figures.get("axeom") else None
    lines = [f"{'server':<28} {'instructions/message':>22} {'untyped/this':>13}"]
    for name, values in figures.items():
        best = min(values)
        ratio = f"{base / best:.2f}x" if base else ""
        rounds = " ".join(f"{v:,.0f}" for v in values)
        lines.append(f"{name:<28} {rounds:>22} {ratio:>13}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
