"""The servers under test (one table) and the lifecycle of their processes.

Each server is a subprocess pinned to one core with ``taskset`` so that every framework gets
exactly the same CPU budget, announces its ephemeral port on stdout, and is always killed and
reaped at the end, whatever happens in the harness (errors, Ctrl-C, exit).
"""

import atexit
import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench import procstat

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HOST = "127.0.0.1"
PATH = "/echo"

_AXEOM_READY = re.compile(r"^Axeom listening on ws://127\.0\.0\.1:(\d+)\b")
_PEER_READY = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)\b")
_PLAIN_APP = "bench/apps/echo.py:app"  # plain-function handler, runs inline in the loop
_ASYNC_APP = "bench/apps/echo_async.py:app"  # coroutine handler
_TYPED_APP = "bench/apps/typed_echo.py:{}_app"  # body typed by one schema library
TYPED_LIBRARIES = ("msgspec", "pydantic", "dataclass", "jsonschema")
TYPED_PREFIX = "axeom-typed-"  # the typed servers: they echo JSON messages only


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server and recognise the line that says it is ready."""

    name: str
    argv: tuple[str, ...]  # "{python}" is replaced by the running interpreter
    ready: re.Pattern[str]  # group 1 is the bound port
    default: bool  # part of the run when --servers is not given
    about: str


def _axeom(
    name: str, app: str, workers: int, about: str, loop: str = "trio", default: bool = True
) -> ServerSpec:
    """An ``axeom run`` server of ``app``: one process, or ``workers`` behind the acceptor."""
    argv: tuple[str, ...] = ("axeom", "run", app, "--host", HOST, "--port", "0")
    argv += ("--workers", str(workers))
    if loop != "trio":
        argv += ("--loop", loop)
        about += f", --loop {loop}"
    if workers:
        plural = "es" if workers > 1 else ""
        about += f", --workers {workers} (supervisor + acceptor + {workers} worker process{plural})"
    else:
        about += ", single process"
    return ServerSpec(name, argv, _AXEOM_READY, default, about)


def _asgi(name: str, server: str, app: str, about: str) -> ServerSpec:
    """An ASGI app on a real ASGI server (``servers/asgi_launch.py``); not in the default run:
    ``--servers axeom-uvicorn,starlette-uvicorn,axeom-granian`` compares them."""
    argv = ("{python}", "bench/servers/asgi_launch.py", server, app)
    return ServerSpec(name, argv, _PEER_READY, False, about + ", one process")


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            "websockets",
            ("{python}", "bench/servers/websockets_echo.py"),
            _PEER_READY,
            True,
            "websockets asyncio server, default asyncio loop (baseline)",
        ),
        ServerSpec(
            "aiohttp",
            ("{python}", "bench/servers/aiohttp_echo.py"),
            _PEER_READY,
            True,
            "aiohttp web.Application + WebSocketResponse, default asyncio loop",
        ),
        ServerSpec(
            "trio-websocket",
            ("{python}", "bench/servers/trio_websocket_echo.py"),
            _PEER_READY,
            False,  # no target refers to it; kept for comparison with the other trio library
            "trio-websocket serve_websocket",
        ),
        _axeom("axeom", _PLAIN_APP, 0, "axeom run, plain-function handler"),
        _axeom("axeom-async", _ASYNC_APP, 0, "axeom run, coroutine handler"),
        _axeom("axeom-w1", _PLAIN_APP, 1, "axeom run, plain-function handler"),
        _axeom("axeom-async-w1", _ASYNC_APP, 1, "axeom run, coroutine handler"),
        # The tree on asyncio/uvloop: the acceptor's and the worker's trio code
        # as a guest of the loop (what guest mode costs shows in the handshake rate).
        _axeom("axeom-asyncio-w1", _PLAIN_APP, 1, "axeom run, plain", "asyncio", False),
        _axeom("axeom-uvloop-w1", _PLAIN_APP, 1, "axeom run, plain", "uvloop", False),
        _axeom(
            "axeom-asyncio", _PLAIN_APP, 0, "axeom run, plain-function handler", "asyncio", False
        ),
        _axeom(
            "axeom-asyncio-async", _ASYNC_APP, 0, "axeom run, coroutine handler", "asyncio", False
        ),
        _axeom("axeom-uvloop", _PLAIN_APP, 0, "axeom run, plain-function handler", "uvloop", False),
        _axeom(
            "axeom-uvloop-async", _ASYNC_APP, 0, "axeom run, coroutine handler", "uvloop", False
        ),
        # Typed echo, one server per schema library, compared with ``axeom`` (untyped) on
        # the json-echo tests: python -m bench.run --servers axeom,axeom-typed-msgspec,...
        *(
            _axeom(
                f"{TYPED_PREFIX}{library}",
                _TYPED_APP.format(library),
                0,
                f"axeom run, plain-function handler, body typed by {library}",
                default=False,
            )
            for library in TYPED_LIBRARIES
        ),
        _asgi("axeom-uvicorn", "uvicorn", "bench.apps.echo:app", "Axeom app on uvicorn"),
        _asgi("starlette-uvicorn", "uvicorn", "starlette_echo:app", "Starlette echo on uvicorn"),
        _asgi("axeom-granian", "granian", "bench.apps.echo:app", "Axeom app on granian"),
        _asgi("starlette-granian", "granian", "starlette_echo:app", "Starlette echo on granian"),
    )
}
BASELINE = "websockets"  # the first peer: every figure's ratio to it is reported
FAST_PEER = "aiohttp"  # the second peer: the fastest pure-asyncio server, reported side by side
PEERS = (BASELINE, FAST_PEER)  # run first, so their figures exist when the others are compared


class ServerStartError(RuntimeError):
    """The server could not be started; the run skips it and says why."""


_LIVE: set["ServerProcess"] = set()


class ServerProcess:
    """One running server: start it pinned, learn its port, measure it, stop and reap it."""

    def __init__(self, spec: ServerSpec, cpu: int, log_path: Path, ready_timeout: float = 30.0):
        self.spec = spec
        self.cpu = cpu
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=30)
        self._reader: threading.Thread | None = None
        self._stopped = False

    @property
    def pid(self) -> int:
        """Return the pid of the server's main process."""
        assert self._proc is not None
        return self._proc.pid

    def pids(self) -> list[int]:
        """Return the server's process and all its children (workers count too)."""
        return procstat.process_tree(self.pid)

    def rss_kb(self) -> int:
        """Return the RSS of the whole server process tree in KiB."""
        return procstat.rss_kb(self.pids())

    def cpu_seconds(self) -> float:
        """Return the CPU time used so far by the whole server process tree."""
        return procstat.cpu_seconds(self.pids())

    def fd_count(self) -> int:
        """Return the open file descriptors of the whole server process tree."""
        return procstat.fd_count(self.pids())

    def _argv(self) -> list[str]:
        argv = [sys.executable if arg == "{python}" else arg for arg in self.spec.argv]
        # Prefer the script installed next to this interpreter (no pyenv/venv shim in between).
        beside = Path(sys.executable).parent / argv[0]
        exe = str(beside) if beside.is_file() else shutil.which(argv[0])
        if exe is None:
            raise ServerStartError(
                f"command {argv[0]!r} not found on PATH (for axeom: pip install -e . first)"
            )
        return ["taskset", "-c", str(self.cpu), exe, *argv[1:]]

    def _drain(self) -> None:
        """Copy the server's output to its log and spot the ready line (runs in a thread).

        Draining for the whole run matters: a server writing to a full pipe would block.
        """
        assert self._proc is not None and self._proc.stdout is not None
        with self.log_path.open("w") as log:
            for line in self._proc.stdout:
                log.write(line)
                log.flush()
                self._tail.append(line.rstrip())
                if not self._ready.is_set() and (match := self.spec.ready.search(line)):
                    self.port = int(match.group(1))
                    self._ready.set()

    def start(self) -> None:
        """Start the server and wait for its ready line; raise ServerStartError otherwise."""
        argv = self._argv()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=REPO_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                # Own process group: Ctrl-C reaches only the harness, which then stops the
                # server (and its workers) through the group.
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerStartError(f"cannot execute {argv!r}: {exc}") from exc
        _LIVE.add(self)
        self._reader = threading.Thread(target=self._drain, name=f"drain-{self.spec.name}")
        self._reader.daemon = True
        self._reader.start()
        deadline_step = 0.1
        waited = 0.0
        while not self._ready.wait(deadline_step):
            waited += deadline_step
            if self._proc.poll() is not None or waited >= self.ready_timeout:
                code = self._proc.poll()
                self.stop()
                why = f"exited with code {code}" if code is not None else "never became ready"
                tail = "\n    ".join(self._tail) or "(no output)"
                raise ServerStartError(
                    f"{' '.join(argv)} {why} within {self.ready_timeout:.0f}s; "
                    f"last output:\n    {tail}"
                )

    def alive(self) -> bool:
        """Return True while the server's main process runs."""
        return self._proc is not None and self._proc.poll() is None

    def output_tail(self) -> list[str]:
        """Return the last lines the server printed (for error reports)."""
        return list(self._tail)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Terminate the whole process group (SIGTERM, then SIGKILL) and reap the main process."""
        proc = self._proc
        if proc is None or self._stopped:
            return None if proc is None else proc.returncode
        self._stopped = True
        members = self.pids()[1:] if proc.poll() is None else []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            # Safe while the leader is unreaped: its pid (the group id) cannot be reused yet.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in members:  # workers that outlived their supervisor
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == proc.pid:
                    os.kill(pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(2.0)
        _LIVE.discard(self)
        return proc.returncode

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    """Last line of defence: never leave a server running after the harness exits."""
    for server in list(_LIVE):
        server.stop(timeout=2.0)
