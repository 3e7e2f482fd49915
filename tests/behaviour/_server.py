"""A row's real server, shared by the row's cases and started again once it died.

One server per row keeps the suite fast, but then a case that kills it
would fail every case after it on that row, with nothing pointing at the
culprit. So after each case the row checks that its server still serves: if
not, that case fails with the reason, and the next case gets a new server.
A server may die a little after the case that killed it ended: the next
case then finds it dead, starts a new one and runs, and the row's end fails
with the death and the case before it. A known killer case
(``limitation(server_exits=True)``) runs on a server of its own instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import ExitStack
from pathlib import Path

import trio

from tests.behaviour._client import TIMEOUT, TcpTarget
from tests.behaviour._runtimes import Runtime, ServerProcess

# Any answer to a plain request shows the server still serves; its status does not matter.
PROBE_PATH = "/"
# How long a server that stopped answering gets to exit on its own (it is
# stopped after that): a dying server's main process exits within moments.
EXIT_WAIT = 5.0
# How often the check looks whether the process exited.
EXIT_POLL = 0.05
# How many of its last lines of output a dead server's report shows.
OUTPUT_TAIL = 40


class ServerDied(AssertionError):
    """The row's server exited (or stopped answering)."""


class RowServer:
    """The server of one row: started by ``running``, checked by ``check``
    after each case, started again by ``running`` once it died."""

    def __init__(self, runtime: Runtime, record: Path) -> None:
        self.runtime = runtime
        self.record = record
        self.starts = 0  # how many servers the row started (more than 1: one died)
        self._stack = ExitStack()
        self._server: ServerProcess | None = None
        self._case = "the row's start"  # the case that used the server last
        self._unblamed: list[str] = []  # deaths found between cases

    @property
    def port(self) -> int:
        assert self._server is not None, "no server: call running() first"
        return self._server.port

    @property
    def process(self) -> subprocess.Popen[str]:
        """The server's (main) process."""
        assert self._server is not None, "no server: call running() first"
        return self._server.proc

    def running(self, case: str | None = None) -> int:
        """The port of a running server for ``case``: the current one, or a
        new one if the current one has exited since the last case."""
        server = self._server
        if server is not None and server.proc.poll() is not None:
            self._unblamed.append(
                _report(self.runtime, server, f"after {self._case} ended, before the next case")
            )
            self._discard()
        if self._server is None:
            self._server = self._stack.enter_context(self.runtime.running(self.record))
            self.starts += 1
        if case is not None:
            self._case = case
        return self._server.port

    async def check(self, nursery: trio.Nursery) -> None:
        """Raise ``ServerDied`` (and stop what is left of the server) unless it
        still answers a request."""
        server = self._server
        if server is None or (server.proc.poll() is None and await _answers(server.port, nursery)):
            return
        await _wait_exit(server)
        report = _report(self.runtime, server, "during this case")
        self._discard()
        raise ServerDied(report)

    def raise_unblamed_deaths(self) -> None:
        """Fail (once the row is over) for each death found between two cases."""
        if self._unblamed:
            raise ServerDied("\n\n".join(self._unblamed))

    def stop(self) -> None:
        """Stop and reap the server."""
        self._server = None
        self._stack.close()

    def _discard(self) -> None:
        """Reap a dead server, and kill whatever its process group left behind."""
        server = self._server
        self.stop()
        if server is not None:
            _kill_group(server.proc.pid)


def _report(runtime: Runtime, server: ServerProcess, when: str) -> str:
    """What happened to a dead server, with the end of its output."""
    status = server.proc.poll()
    if status is None:
        what = "stopped answering (its process, still running, was stopped)"
    else:
        what = f"exited with status {status}"
    tail = "".join(server.text().splitlines(keepends=True)[-OUTPUT_TAIL:])
    return (
        f"the {runtime.name} server {what} {when}; the next case starts a new one. "
        f"Its last output:\n{tail}"
    )


async def _answers(port: int, nursery: trio.Nursery) -> bool:
    """Whether the server answers a plain HTTP request (within ``TIMEOUT``)."""
    try:
        await TcpTarget(port, nursery, TIMEOUT).request("GET", PROBE_PATH, {})
    except (OSError, EOFError, trio.BrokenResourceError, trio.TooSlowError):
        return False
    return True


async def _wait_exit(server: ServerProcess) -> None:
    """Give a server that stopped answering ``EXIT_WAIT`` to exit on its own."""
    with trio.move_on_after(EXIT_WAIT):
        while server.proc.poll() is None:
            await trio.sleep(EXIT_POLL)


def _kill_group(pid: int) -> None:
    """SIGKILL what is left in the server's process group (it was started
    in a session of its own), if anything."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
