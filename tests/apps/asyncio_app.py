"""App for the asyncio runtime's tests: handlers that await asyncio
libraries, a slow one, failing ones, timers, compression, backpressure."""

import asyncio
import os

import trio

from axeom import Axeom
from axeom.ws import ws_plugin

RECORD = os.environ.get("AXEOM_TEST_RECORD")

app = Axeom().use(ws_plugin())
_echo_server: list[int] = []  # port of the local asyncio server, once started


async def _serve_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(line.upper())
    await writer.drain()
    writer.close()


async def net(ws, msg):
    """Round trip through asyncio.sleep and an asyncio TCP client and server."""
    await asyncio.sleep(0.01)
    if not _echo_server:
        server = await asyncio.start_server(_serve_upper, "127.0.0.1", 0)
        _echo_server.append(server.sockets[0].getsockname()[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", _echo_server[0])
    writer.write(f"{msg}\n".encode())
    await writer.drain()
    reply = await reader.readline()
    writer.close()
    await ws.send(f"{reply.decode().strip()} from {type(asyncio.current_task()).__name__}")


async def slow(ws, msg):
    if msg == "slow":
        await asyncio.sleep(0.5)
    await ws.send(f"Slow: {msg}")


def boom(ws, msg):
    if msg == "boom":
        raise ValueError("handler failed on purpose")
    ws.send(f"Echo: {msg}")


async def trio_sleep(ws, msg):
    await trio.sleep(0.01)  # the wrong loop's primitive


def flood(ws, msg):
    """Send until the outbox is over the limit; report the statuses seen."""
    statuses = []
    for _ in range(100):
        status = ws.send(b"x" * 1000)
        statuses.append(status.name)
        if status.name == "DROPPED":
            break
    ws.data["statuses"] = ",".join(sorted(set(statuses)))


def drained(ws):
    ws.send(f"drained: {ws.data.get('statuses')}")


async def awaited_flood(ws, msg):
    """Awaited sends never drop: flow control waits for the slow reader."""
    for _ in range(int(msg)):
        status = await ws.send(b"y" * 1000)
        assert status.name in ("QUEUED", "BACKPRESSURE"), status
    await ws.drained()
    ws.send("done")


def record_close(ws, code, reason):
    if RECORD:
        with open(RECORD, "a") as record:
            record.write(f"{code}\n")


async def slow_close(ws, code, reason):
    await asyncio.sleep(0.2)
    record_close(ws, code, reason)


app.ws("/chat", message=lambda ws, msg: ws.send(f"Echo: {msg}"), close=slow_close)
app.ws("/raw", message=lambda ws, msg: ws.send(msg))
app.ws("/net", message=net)
app.ws("/slow", message=slow)
app.ws("/boom", message=boom)
app.ws("/trio", message=trio_sleep)
app.ws("/flood", message=flood, drain=drained, backpressure_limit=8192)
app.ws("/awaited", message=awaited_flood, backpressure_limit=8192)
app.ws("/max", message=lambda ws, msg: ws.send(msg), max_message_size=1024)
app.ws("/idle", message=lambda ws, msg: ws.send(msg), idle_timeout=0.5)
app.ws("/ping", message=lambda ws, msg: ws.send(msg), ping_interval=0.2, ping_timeout=0.3)
app.ws("/z", message=lambda ws, msg: ws.send(msg * 2), compression=True)
