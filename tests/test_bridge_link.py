"""The hub's link to the Redis bridge while the bridge process is still starting."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pynng
import trio

from axeom import wire
from axeom_supervisor._bridge_link import BridgeLink

# Longer than the link's nng send timeout (500 ms in the supervisor): a send to a
# bridge that is not listening yet would have timed out and been counted a drop.
STARTING_FOR = 1.2


async def test_nothing_is_dropped_before_the_bridge_is_ready() -> None:
    """Operations queued before the bridge reports ready wait for it: on every start
    the first batch used to time out, count as `dropped_bridge` and log "Redis bridge
    not keeping up" on a healthy node."""
    with tempfile.TemporaryDirectory() as run_dir:
        address = f"ipc://{Path(run_dir) / 'bridge'}"
        link = BridgeLink()
        with pynng.Push0(dial=address, block_on_dial=False, send_timeout=500) as push:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.send_loop, push)
                link.counts({"t": 1})
                link.topics_changed({"t"}, set())
                await trio.sleep(STARTING_FOR)  # the bridge process is starting
                with pynng.Pull0(listen=address, recv_timeout=5000) as pull:
                    link.started.set()  # what the supervisor does on its "ready"
                    batch = wire.decode_operations(await pull.arecv())
                nursery.cancel_scope.cancel()
    assert link.dropped == 0
    assert batch == ((wire.COUNTS, {"t": 1}, None), (wire.TOPICS, ("t",), ()))
