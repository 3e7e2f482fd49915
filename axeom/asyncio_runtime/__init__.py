"""The asyncio socket runtime: socket actors on asyncio or uvloop, and the
in-process server, beside the trio runtime (``axeom.trio_runtime``) with the
same shape and the same semantics.

Handlers running here can await asyncio libraries (database pools, HTTP
clients). The per-socket semantics (dispatch, ordering, timers, frames,
pub/sub) are shared with the trio runtime (``axeom.ws._driver`` and the
sans-IO modules); what is here is the asyncio glue: a ``Protocol`` per
socket (``AsyncioConnection``), the services of one process
(``AsyncioRuntime``), the handshake protocol and the accept loop.

For a worker process (sockets handed over by the acceptor)::

    runtime = AsyncioRuntime(app, loop_name="uvloop")   # inside the running loop
    runtime.start_socket(sock, upgrade, trailing, socket_id=socket_id)
        # sock: the connected stdlib socket, its 101 already written;
        # returns at once, the socket runs until it closes
    len(runtime.connections)                            # open sockets (heartbeats, status)
    left = await runtime.drain(graceful_timeout)        # close 1001, wait for close handlers
    runtime.close()                                     # stop the sweeper

``start_socket`` is a plain call (trio code running as a guest of the loop
makes it directly); ``drain`` is an asyncio coroutine (trio code awaits it
through ``call_in_asyncio``).

For the trio code of a tree process (acceptor, worker) on this loop:
``run_on_loop(loop_name, main)`` runs ``main()`` on a new loop, and inside it
``await run_trio_guest(trio_fn, *args)`` runs trio code as a guest of that loop;
``open_guest_sockets(runtime)`` is an ``AsyncioRuntime`` as the worker's
trio code sees a socket runtime (see ``_guest``).

For the single process: ``run(app, host, port, loop_name=..., ...)`` blocks
until SIGTERM/SIGINT and drains; ``serve_listener`` is the coroutine under it.
"""

from ._guest import (
    GuestSockets,
    call_in_asyncio,
    open_guest_sockets,
    run_on_loop,
    run_trio_guest,
)
from ._loops import LOOPS, LoopUnavailable, new_event_loop
from ._runtime import AsyncioRuntime
from ._serve import run, serve, serve_listener
from ._wrong_loop import wrong_loop_message

__all__ = [
    "LOOPS",
    "AsyncioRuntime",
    "GuestSockets",
    "LoopUnavailable",
    "call_in_asyncio",
    "new_event_loop",
    "open_guest_sockets",
    "run",
    "run_on_loop",
    "run_trio_guest",
    "serve",
    "serve_listener",
    "wrong_loop_message",
]
