"""trio as a guest on the asyncio (or uvloop) loop of a tree process.

With ``--loop asyncio|uvloop --workers N`` the acceptor and the workers run
application code on asyncio, but their plumbing (the nng links to the
supervisor and the hub, heartbeats, signals, the hand-off channels, the
acceptor's reading of request heads) is the same trio code as with
``--loop trio``. trio's guest mode (``trio.lowlevel.start_guest_run``) runs
that code on the asyncio loop's thread, in callbacks of the loop: one thread,
one process, and nothing of the plumbing written twice.

What crosses between the two:

* trio code calls plain asyncio functions directly (``loop.create_task``,
  ``AsyncioRuntime.start_socket``, ``asyncio.Event.set``): during a guest tick
  the asyncio loop is the running loop of the thread.
* asyncio code may call plain trio functions that only reschedule a trio task
  (``trio.Event.set``): trio's runner stays the thread's for the whole guest
  run, and waking a parked task forces a guest tick.
* trio code awaits an asyncio coroutine function through ``call_in_asyncio``
  (the acceptor's ``app.handle``, the worker's drain): it runs as an asyncio
  task, the trio task parks until it ends.

What guest mode costs: whenever trio has nothing to run it waits for I/O in a
thread of its own, which hands the next tick back to the loop's thread with
``call_soon_threadsafe`` (a wake-up write). Measured on a busy 2-core machine
(Python 3.11, trio 0.35; asyncio and uvloop alike): a pynng req/rep round
trip in the guest took 0.45-1.5 ms, as in plain ``trio.run`` under the same
load; ``call_in_asyncio`` 0.15-0.3 ms when trio is otherwise idle;
``trio.sleep(0)`` 11-30 us. Fine for per-connection or per-command work, not
for per-message work: a worker runs its sockets on asyncio natively.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio
from websockets.frames import CloseCode

from ._loops import new_event_loop

if TYPE_CHECKING:
    from .. import ws as _ws
    from ..trio_runtime import SocketTransport
    from ._runtime import AsyncioRuntime

__all__ = [
    "GuestSockets",
    "call_in_asyncio",
    "open_guest_sockets",
    "run_on_loop",
    "run_trio_guest",
]

T = TypeVar("T")


async def run_trio_guest(async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run the trio function ``async_fn(*args)`` as a guest of the running
    asyncio loop and return (or raise) what it does.

    Cancelling the caller cancels the trio run (its nurseries unwind as on
    any trio cancellation), and this returns only once it has ended.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[outcome.Outcome[T]] = loop.create_future()
    scope = trio.CancelScope()

    async def main() -> T:
        with scope:
            return await async_fn(*args)
        raise asyncio.CancelledError  # the host cancelled us (see below)

    def finished(result: outcome.Outcome[T]) -> None:
        if not done.done():
            done.set_result(result)

    trio.lowlevel.start_guest_run(
        main,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        done_callback=finished,
        # The trio code handles the process's signals. uvloop sets a wake-up
        # descriptor of its own while it runs (trio must leave it: replacing it
        # breaks uvloop's signal handling); asyncio's loop sets none.
        host_uses_signal_set_wakeup_fd=_host_uses_wakeup_fd(),
    )
    try:
        result = await asyncio.shield(done)
    except asyncio.CancelledError:
        token = _token_of(done)
        if token is not None:
            token.run_sync_soon(scope.cancel)
        result = await done
        with contextlib.suppress(asyncio.CancelledError):
            result.unwrap()
        raise
    return result.unwrap()


def _host_uses_wakeup_fd() -> bool:
    """True if the running loop set ``signal.set_wakeup_fd`` (uvloop does)."""
    if threading.current_thread() is not threading.main_thread():
        return True  # only the main thread gets signals; leave the descriptor alone
    current = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(current)
    return current != -1


def _token_of(done: asyncio.Future[Any]) -> trio.lowlevel.TrioToken | None:
    """The running guest's token (None once it ended): trio's runner is this
    thread's while the guest runs."""
    if done.done():
        return None
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


async def call_in_asyncio(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From trio guest code: run ``fn(*args)`` as an asyncio task and return
    (or raise) what it does.

    The coroutine runs in a task of its own, as asyncio code expects
    (``asyncio.timeout``, ``current_task()`` and cancellation need one). The
    trio task parks until it ends and is rescheduled from the task's done
    callback, directly: that callback runs on this thread between guest
    ticks, and ``reschedule`` itself makes trio tick again. Cancelling the
    trio side cancels the task and waits for it to end, so nothing the
    coroutine holds is left behind; it then raises trio's ``Cancelled``
    (or returns what the task returned, if it finished first).
    """
    task = asyncio.get_running_loop().create_task(fn(*args))
    waiter = trio.lowlevel.current_task()
    cancelled: list[Callable[[], Any]] = []

    def on_done(task: asyncio.Task[T]) -> None:
        if cancelled and task.cancelled():
            trio.lowlevel.reschedule(waiter, outcome.capture(cancelled[0]))
        else:
            trio.lowlevel.reschedule(waiter, outcome.capture(task.result))

    task.add_done_callback(on_done)

    def abort(raise_cancel: Callable[[], Any]) -> trio.lowlevel.Abort:
        cancelled.append(raise_cancel)
        task.cancel()
        return trio.lowlevel.Abort.FAILED  # rescheduled by on_done once it ended

    result: T = await trio.lowlevel.wait_task_rescheduled(abort)
    return result


class GuestSockets:
    """An ``AsyncioRuntime`` as the worker's trio code sees a socket runtime:
    the members of ``trio_runtime.SocketRuntime`` the worker uses, with the
    sockets themselves run natively on asyncio.

    ``nursery`` is a trio nursery for the worker's short tasks around a
    socket (writing its 101, refusing one of another wire version).
    """

    def __init__(self, runtime: AsyncioRuntime, nursery: trio.Nursery) -> None:
        self.runtime = runtime
        self.nursery = nursery

    @property
    def connections(self) -> set[Any]:
        return self.runtime.connections

    def start_socket(
        self,
        transport: SocketTransport,
        upgrade: _ws.Upgrade,
        trailing: bytes = b"",
        *,
        socket_id: str | None = None,
    ) -> None:
        """Run a socket whose 101 trio wrote: from here on asyncio owns it
        (trio never waited on it past the 101, or no longer does)."""
        sock: socket.socket = transport.sock
        self.runtime.start_socket(sock, upgrade, trailing, socket_id=socket_id)

    async def drain(self, timeout: float, code: int = CloseCode.GOING_AWAY) -> int:
        """``AsyncioRuntime.drain`` (on asyncio), awaited from trio."""
        return await call_in_asyncio(self.runtime.drain, timeout, code)


@contextlib.asynccontextmanager
async def open_guest_sockets(runtime: AsyncioRuntime) -> AsyncIterator[GuestSockets]:
    """A ``GuestSockets`` over ``runtime`` for the worker's trio code (the
    trio counterpart: ``trio_runtime.open_socket_runtime``)."""
    async with trio.open_nursery() as nursery:
        yield GuestSockets(runtime, nursery)


def run_on_loop(loop_name: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a new ``loop_name`` loop ("asyncio" or "uvloop") and
    close the loop: how a tree process whose app runs on asyncio runs (its
    trio code through ``run_trio_guest`` inside ``main``).

    Raises ``LoopUnavailable`` (one line) when that loop cannot run here.
    """
    loop = new_event_loop(loop_name)
    try:
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
