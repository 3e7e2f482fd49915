"""max_message_size under attack, through a real server process: oversized
fragmented messages and compression bombs are refused with 1009 without the
server's memory growing with them."""

from __future__ import annotations

import os
import zlib

import pytest
import trio

from tests._processes import Server, running_axeom
from tests._wsraw import RawClient, client_frame, close_code, upgrade_request

APP = "tests/apps/limits_app.py:app"
LIMIT = 256 * 1024  # the app's max_message_size
FRAGMENT = 16 * 1024
CONCURRENCY = 50
ATTACKS = 400
# The warm-up has the server hold what it legitimately may at once (each of
# the CONCURRENCY sockets a message just under LIMIT: 12.5 MiB) before the
# baseline, so the attack should add next to nothing: one more such working
# set plus allocator slack is the bound. (Measured: ~7 MiB; buffering each
# fragment whole and copying it, as before, grew 26-35 MiB for 300 attacks
# and ~60 MiB for 600, and never gave it back.)
RSS_GROWTH_BOUND = 16 * 2**20
# A bomb inflated whole would hold 16 MiB per socket (800 MiB for 50 at once);
# bounded, a socket holds at most LIMIT of output plus zlib's state (~0.4 MiB,
# 20 MiB for 50, not part of the warm-up's working set). Between the two:
BOMB_RSS_GROWTH_BOUND = 64 * 2**20

pytestmark = pytest.mark.timeout(120)


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def oversized_fragmented_message() -> list[bytes]:
    """Frames of one binary message twice the limit, in FRAGMENT-byte pieces."""
    payload = os.urandom(FRAGMENT)
    count = 2 * LIMIT // FRAGMENT
    middle = client_frame(0x0, payload, fin=False)
    return (
        [client_frame(0x2, payload, fin=False)]
        + [middle] * (count - 2)
        + [client_frame(0x0, payload, fin=True)]
    )


async def attack(port: int, path: str, frames: list[bytes], extra: str = "") -> int:
    """Send ``frames`` after the handshake while reading; the close code received."""
    client = await RawClient.connect(port)
    try:
        await client.send(upgrade_request(path, extra=extra))
        status, head = await client.read_head()
        assert status == 101, head

        async def send_all() -> None:
            try:
                for frame in frames:
                    await client.send(frame)
            except trio.BrokenResourceError:
                pass  # the server closed after 1009, as it should

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            while True:
                opcode, payload = await client.read_frame()
                if opcode in (0x8, -1):
                    nursery.cancel_scope.cancel()
                    return close_code(payload) if opcode == 0x8 else -1
    finally:
        await client.aclose()


async def many(port: int, count: int, path: str, frames: list[bytes], extra: str = "") -> list[int]:
    codes: list[int] = []
    limiter = trio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with limiter:
            codes.append(await attack(port, path, frames, extra))

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
    return codes


async def warm_up(port: int) -> None:
    """Messages just under the limit, as many at once as the attack: what the
    server may hold legitimately is allocated before the baseline is taken."""
    payload = os.urandom(LIMIT - 1024)
    wire = client_frame(0x2, payload[:FRAGMENT], fin=False)
    wire += client_frame(0x0, payload[FRAGMENT:], fin=True)

    async def one() -> None:
        client = await RawClient.connect(port)
        try:
            await client.send(upgrade_request("/echo"))
            assert (await client.read_head())[0] == 101
            await client.send(wire)
            assert await client.read_frame() == (0x2, payload)
        finally:
            await client.aclose()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENCY):
                nursery.start_soon(one)


def measure(server: Server, attack_run) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    trio.run(warm_up, server.port)
    before = rss(server.proc.pid)
    codes = trio.run(attack_run, server.port)
    return rss(server.proc.pid) - before, codes


def test_oversized_fragmented_messages_close_1009_without_memory_growth() -> None:
    """400 fragmented messages of twice the limit, 50 at a time: every one is
    closed with 1009 and the server's RSS grows by less than RSS_GROWTH_BOUND."""
    frames = oversized_fragmented_message()
    with running_axeom(APP, "--port", "0", "--workers", "0") as server:
        growth, codes = measure(server, lambda port: many(port, ATTACKS, "/echo", frames))
    assert codes == [1009] * ATTACKS
    assert growth < RSS_GROWTH_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB"


def compression_bombs() -> dict[str, list[bytes]]:
    """A compressed message of 16 MiB of zeros (64 times the limit, 16 KiB on
    the wire) as one frame, and the same split over four fragments."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = compressor.compress(bytes(16 * 2**20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]  # RFC 7692 7.2.1: the sender removes the empty block's tail
    quarter = len(data) // 4
    parts = [data[:quarter], data[quarter : 2 * quarter], data[2 * quarter : 3 * quarter]]
    parts.append(data[3 * quarter :])
    fragmented = [client_frame(0x2, parts[0], fin=False, rsv1=True)]
    fragmented += [client_frame(0x0, part, fin=False) for part in parts[1:3]]
    fragmented.append(client_frame(0x0, parts[3], fin=True))
    return {"one frame": [client_frame(0x2, data, rsv1=True)], "fragmented": fragmented}


def test_compression_bombs_close_1009_without_inflating() -> None:
    """A small compressed message that inflates far past the limit, as one frame
    or fragmented, is refused with 1009 while decompressing (the output is
    bounded by what the limit leaves), not after: 100 of each, 50 at a time,
    leave the server's RSS in bounds."""
    bombs = compression_bombs()
    extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n"

    async def run(port: int) -> list[int]:
        codes = await many(port, 100, "/z", bombs["one frame"], extra)
        return codes + await many(port, 100, "/z", bombs["fragmented"], extra)

    with running_axeom(APP, "--port", "0", "--workers", "0") as server:
        growth, codes = measure(server, run)
    assert codes == [1009] * 200
    assert growth < BOMB_RSS_GROWTH_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB"
