"""Lifespan and the event loop on every runtime: `on_start` runs once per
process that runs app code, on that process's loop, before it serves, and what
it `decorate`s reaches handlers and hooks; `on_stop` runs once in each at the
end; a handler awaiting an asyncio client works where the loop is asyncio and
fails with 1011 (that socket only) on trio."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from axeom.testing import HandshakeRejected
from tests.apps.behaviour_app import make_app
from tests.behaviour._client import Target, TcpTarget, memory_target
from tests.behaviour._runtimes import Runtime, limitation

INTERNAL_ERROR = 1011
NO_LIFESPAN = "no lifespan: on_start runs at the first connection, on_stop never runs"
NO_DENIAL = "no denial response: the hook's 409 with its body arrives as an empty 403"


def loop_family(runtime: Runtime) -> str:
    """What `asyncio.get_running_loop()` says in the runtime's app code."""
    return "trio" if runtime.loop == "trio" else "asyncio"


def app_processes(runtime: Runtime) -> int:
    """Processes that run app code: the server alone, or the acceptor and each worker."""
    return 1 if runtime.workers == 0 else runtime.workers + 1


@limitation("daphne", NO_DENIAL)
async def test_on_start_decoration_reaches_handlers_and_hooks(
    target: Target, runtime: Runtime
) -> None:
    """`app.decorate` in `on_start`, on the runtime's loop: `ws.resource` in a
    handler, `ctx.resource` in a hook (on --workers N, the acceptor's own)."""
    expected = rf"resource of \d+ on {loop_family(runtime)}"
    async with target.connect("/echo") as ws:
        assert re.fullmatch(expected, await ws.ask("resource"))
    with pytest.raises(HandshakeRejected) as answered:
        async with target.connect("/echo", {"x-hook": "resource"}):
            raise AssertionError("the socket opened")
    assert answered.value.status == 409
    assert re.fullmatch(expected, answered.value.body.decode())


@limitation("daphne", NO_LIFESPAN)
async def test_on_start_and_on_stop_run_once_per_app_process(
    runtime: Runtime, tmp_path: Path, nursery
) -> None:
    """A server started and stopped (SIGTERM for a real one): every process
    that ran app code recorded one start, then one stop."""
    if runtime.in_memory:
        async with memory_target(make_app(tmp_path), runtime) as target:
            async with target.connect("/echo") as ws:
                assert await ws.ask("lifespan") == "lifespan"
    else:
        with runtime.serving(tmp_path) as port:
            async with TcpTarget(port, nursery).connect("/echo") as ws:
                assert await ws.ask("lifespan") == "lifespan"
    records = sorted(tmp_path.glob("lifespan-*"))
    assert len(records) == app_processes(runtime), records
    assert [path.read_text() for path in records] == ["start\nstop\n"] * len(records)


async def test_handler_awaiting_an_asyncio_client(target: Target, runtime: Runtime) -> None:
    """/aio round-trips through `asyncio.open_connection`: answered on an
    asyncio runtime; on trio the socket closes with 1011 and a neighbour
    keeps echoing."""
    async with target.connect("/echo") as neighbour:
        async with target.connect("/aio") as ws:
            await ws.send("ping")
            if loop_family(runtime) == "asyncio":
                assert await ws.receive() == "via asyncio: ping"
            else:
                code, _ = await ws.closed()
                assert code == INTERNAL_ERROR
        assert await neighbour.ask("still here") == "still here"
