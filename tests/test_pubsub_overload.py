"""A full-speed publisher to hundreds of subscribers over `axeom run --workers 2`:
overload degrades (slower publisher, counted drops), it never kills a worker."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
import trio

from axeom import control
from tests._processes import Server, run_axeom, running_axeom
from tests._wsraw import RawClient, client_frame, upgrade_request

APP = "tests/apps/pubsub_app.py:app"
SUBSCRIBERS = 200
# Handshakes in flight at once: half the default max_pending_handshakes_per_address.
CONNECTING = 32
FLOOD_SECONDS = 2.0
MARKER = b"after-the-flood"

pytestmark = pytest.mark.timeout(180)


class Subscriber:
    """A raw client that reads everything as fast as it comes and watches for MARKER."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.closed = False
        self.got_marker = trio.Event()

    async def read(self) -> None:
        tail = b""
        while True:
            data = await self.client.stream.receive_some(1 << 16)
            if not data:
                self.closed = True
                return
            tail = tail[-len(MARKER) :] + data
            if MARKER in tail:
                self.got_marker.set()
                tail = b""


async def subscribe(port: int, nursery: trio.Nursery) -> Subscriber:
    client = await RawClient.connect(port)
    await client.send(upgrade_request("/sub/flood"))
    code, _ = await client.read_head()
    if code != 101:
        await client.aclose()
    assert code == 101
    subscriber = Subscriber(client)
    nursery.start_soon(subscriber.read)
    return subscriber


async def flood(port: int, seconds: float) -> int:
    """Publish as fast as the server takes it for ``seconds``; returns how many."""
    publisher = await RawClient.connect(port)
    await publisher.send(upgrade_request("/pub/flood"))
    assert (await publisher.read_head())[0] == 101
    burst = client_frame(1, b"flood-message") * 1000
    sent = 0
    with trio.move_on_after(seconds):
        while True:
            await publisher.send(burst)
            sent += 1000
    # Reset rather than close: what sits unread in the server's receive buffer
    # is discarded, so the test does not wait for a backlog it does not check.
    publisher.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await publisher.aclose()
    return sent


async def wait_until(predicate: object, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not await trio.to_thread.run_sync(predicate):  # type: ignore[arg-type]
            await trio.sleep(0.2)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def status(port: int) -> dict[str, Any]:
    """The supervisor's status through the Python API (cheaper to poll than the CLI)."""
    return control.status(port=port, timeout=10)


def worker_pids(server: Server) -> dict[str, int]:
    return {p["name"]: p["pid"] for p in status(server.port)["processes"] if p["role"] == "worker"}


def test_full_speed_publisher_to_hundreds_of_subscribers_kills_nothing() -> None:
    """No restart, every subscriber stays connected and gets the next publish."""
    with running_axeom(APP, "--port", "0", "--workers", "2") as server:
        subscribers: list[Subscriber] = []

        async def main() -> None:
            try:
                await exercise()
            finally:
                for subscriber in subscribers:
                    subscriber.client.stream.socket.close()

        async def exercise() -> None:
            async with trio.open_nursery() as nursery:
                # Fewer handshakes in flight than the per-address cap on
                # unfinished heads: a loaded client is slow to send its heads.
                connecting_at_once = trio.CapacityLimiter(CONNECTING)

                async def connect() -> None:
                    async with connecting_at_once:
                        subscribers.append(await subscribe(server.port, nursery))

                async with trio.open_nursery() as connecting:
                    for _ in range(SUBSCRIBERS):
                        connecting.start_soon(connect)
                await wait_until(
                    lambda: status(server.port)["totals"]["sockets"] == SUBSCRIBERS,
                    30,
                    "every subscriber placed",
                )
                placed = await trio.to_thread.run_sync(status, server.port)
                assert all(p["sockets"] > 0 for p in placed["processes"] if p["role"] == "worker")
                pids = await trio.to_thread.run_sync(worker_pids, server)
                sent = await flood(server.port, FLOOD_SECONDS)
                assert sent > 0
                # The flood is over once the publisher's socket is gone (its worker
                # has read, and published, everything it sent).
                await wait_until(
                    lambda: status(server.port)["totals"]["sockets"] == SUBSCRIBERS,
                    90,
                    "the publisher's messages to be handled",
                )
                after = await trio.to_thread.run_sync(status, server.port)
                assert after["totals"]["restarts"] == 0, server.text()
                assert await trio.to_thread.run_sync(worker_pids, server) == pids
                assert not [s for s in subscribers if s.closed]
                for key in ("dropped_hub", "dropped_workers"):
                    assert key in after["pubsub"]
                cli = await trio.to_thread.run_sync(
                    lambda: run_axeom("status", "--port", str(server.port))
                )
                assert "dropped_hub:" in cli.stdout, cli.stdout
                await trio.to_thread.run_sync(
                    lambda: control.publish("flood", MARKER.decode(), port=server.port)
                )
                with trio.move_on_after(60):
                    for subscriber in subscribers:
                        await subscriber.got_marker.wait()
                missing = [s for s in subscribers if not s.got_marker.is_set()]
                assert not missing, f"{len(missing)} subscribers missed the next publish"
                assert not [s for s in subscribers if s.closed]
                nursery.cancel_scope.cancel()

        trio.run(main)
