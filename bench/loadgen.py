"""Raw-asyncio WebSocket clients for uvloop: the cheapest client we can write in Python.

The websockets client library would spend about as much CPU per message as the server under
test, making the load generator the bottleneck. These protocols write pre-built bytes (see
``bench.frames``) and only read the server's frame headers: payloads are skipped, never
copied or decoded. Each connection counts complete messages into a shared ``Load``.
"""

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import cast

from bench import frames

_ACCEPT = frames.accept_token()
_MAX_HTTP_HEAD = 16384


class Load:
    """Monotonic totals shared by every connection of one test, plus the stop switch.

    Tests read the totals at the start and end of the measurement window and take the
    difference, so connections never need to know about the window.
    """

    __slots__ = ("cycles", "errors", "messages", "payload_bytes", "sending")

    def __init__(self) -> None:
        self.messages = 0
        self.payload_bytes = 0
        self.cycles = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.sending = True

    def snapshot(self) -> tuple[int, int, int]:
        """Return (messages, payload bytes, cycles) so far."""
        return self.messages, self.payload_bytes, self.cycles


class WsClient(asyncio.Protocol):
    """Client side of one connection: upgrade, then count the server's complete messages.

    Subclasses react through ``on_open``, ``on_messages`` and ``on_close_frame``. Pings are
    answered (a default websockets server pings every 20 s and drops silent peers).
    """

    def __init__(
        self,
        request: bytes,
        load: Load,
        expect_opcode: int | None = None,
        expect_size: int | None = None,
    ) -> None:
        self.request = request
        self.load = load
        self.expect_opcode = expect_opcode
        self.expect_size = expect_size
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_sent = False
        self.close_received = False
        self._upgraded = False
        self._buf = bytearray()  # HTTP response, then partial frame headers / control frames
        self._skip = 0  # payload bytes of the current data frame not received yet
        self._skip_fin = False
        self._msg_bytes = 0  # payload bytes so far of the message being received

    # -- hooks --------------------------------------------------------------------------

    def on_open(self) -> None:
        """Called once the server accepted the upgrade."""

    def on_messages(self, count: int) -> None:
        """Called after ``count`` complete messages arrived in one read."""

    def on_close_frame(self) -> None:
        """Called when the server's close frame arrives; by default close the socket."""
        self.close()

    # -- helpers --------------------------------------------------------------------------

    def send_close(self) -> None:
        """Start the closing handshake (code 1000) unless already started or gone."""
        if not self.close_sent and self.transport is not None and not self.closed.done():
            self.close_sent = True
            self.transport.write(frames.close_frame(1000))

    def close(self) -> None:
        """Close the socket (FIN) if it is still open."""
        if self.transport is not None and not self.closed.done():
            self.transport.close()

    def abort(self) -> None:
        """Drop the socket (RST) if it is still open."""
        if self.transport is not None and not self.closed.done():
            self.transport.abort()

    def _error(self, kind: str) -> None:
        self.load.errors[kind] += 1

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.close_received:
            self._error(f"connection lost: {type(exc).__name__}")
        elif not self.close_sent and not self.close_received:
            self._error("closed by server without close frame")
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the upgrade completed"))
            self.opened.exception()  # mark retrieved: the opener may have given up already
        if not self.closed.done():
            self.closed.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # let the transport close

    def data_received(self, data: bytes) -> None:
        if self._upgraded:
            self._frames(data)
            return
        buf = self._buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HTTP_HEAD:
                self._fail_upgrade("oversized HTTP response")
            return
        head = bytes(buf[:end])
        rest = bytes(buf[end + 4 :])
        buf.clear()
        if not head.startswith(b"HTTP/1.1 101") or _ACCEPT not in head:
            status = head.split(b"\r\n", 1)[0].decode("latin-1")
            self._fail_upgrade(f"upgrade refused: {status}")
            return
        self._upgraded = True
        self.opened.set_result(None)
        self.on_open()
        if rest:
            self._frames(rest)

    def _fail_upgrade(self, why: str) -> None:
        self._error(why)
        self.close_sent = True  # not a protocol error of the closing kind: don't double count
        self.abort()

    def _frames(self, data: bytes) -> None:
        """Size the server's frames; count every complete data message (FIN set)."""
        done = 0
        done_bytes = 0
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                if self._skip == 0 and self._skip_fin:
                    self._message_done(1, self._check(self._msg_bytes))
                return
            data = data[self._skip :]
            self._skip = 0
            if self._skip_fin:
                done += 1
                done_bytes += self._check(self._msg_bytes)
        buf = self._buf
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        pos = 0
        end = len(data)
        while end - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            if data[pos + 1] & 0x80:  # servers must not mask; skip the key and complain
                self._error("masked server frame")
                start += 4
            opcode = b0 & 0x0F
            if opcode >= 0x8:  # control frame: needs its payload (ping data, close code)
                if end - start < length:
                    break
                self._control(opcode, data[start : start + length])
                pos = start + length
                continue
            if opcode:  # first frame of a message
                if self.expect_opcode is not None and opcode != self.expect_opcode:
                    self._error(f"echo changed the type: opcode {opcode}")
                self._msg_bytes = 0
            self._msg_bytes += length
            if end - start >= length:
                pos = start + length
                if b0 & 0x80:
                    done += 1
                    done_bytes += self._check(self._msg_bytes)
            else:
                self._skip = length - (end - start)
                self._skip_fin = bool(b0 & 0x80)
                pos = end
                break
        if pos < end:
            buf += data[pos:]
        if done:
            self._message_done(done, done_bytes)

    def _check(self, size: int) -> int:
        if self.expect_size is not None and size != self.expect_size:
            self._error("echo changed the size")
        return size

    def _message_done(self, count: int, nbytes: int) -> None:
        load = self.load
        load.messages += count
        load.payload_bytes += nbytes
        self.on_messages(count)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == frames.OP_PING:
            if self.transport is not None and not self.close_sent:
                self.transport.write(frames.client_frame(frames.OP_PONG, payload))
        elif opcode == frames.OP_CLOSE:
            if self.close_received:
                return
            self.close_received = True
            if not self.close_sent:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._error(f"server closed (code {code})")
                self.send_close()
            self.on_close_frame()


class EchoClient(WsClient):
    """Keeps ``depth`` messages in flight: each echo that comes back triggers a new send."""

    def __init__(self, request: bytes, load: Load, frame: bytes, depth: int, **expect: int):
        super().__init__(request, load, **expect)
        self.frame = frame
        self.depth = depth

    def on_open(self) -> None:
        assert self.transport is not None
        self.transport.write(self.frame * self.depth)

    def on_messages(self, count: int) -> None:
        if self.load.sending and not self.close_sent and self.transport is not None:
            self.transport.write(self.frame * count if count > 1 else self.frame)


class CycleClient(WsClient):
    """One handshake cycle: upgrade, one message, its echo, close handshake, socket closed."""

    def __init__(self, request: bytes, load: Load, frame: bytes, **expect: int):
        super().__init__(request, load, **expect)
        self.frame = frame
        self.echoed = False

    def on_open(self) -> None:
        assert self.transport is not None
        self.transport.write(self.frame)

    def on_messages(self, count: int) -> None:
        self.echoed = True
        self.send_close()

    def connection_lost(self, exc: Exception | None) -> None:
        # Complete once the socket is gone after our close: the server's close frame made us
        # close it, or the server closed first (EOF); either way the cycle is done.
        if exc is None and self.echoed and self.close_sent:
            self.load.cycles += 1
        super().connection_lost(exc)


ClientFactory = Callable[[], WsClient]


# The client context of a TLS run (``bench.tls``); None: plaintext, as always.
TLS: ssl.SSLContext | None = None


async def connect(factory: ClientFactory, host: str, port: int, timeout: float) -> WsClient:
    """Open one connection and wait for the upgrade; raise (after cleanup) if it fails."""
    loop = asyncio.get_running_loop()
    opening = loop.create_connection(factory, host, port, ssl=TLS)
    _, client = await asyncio.wait_for(opening, timeout)
    try:
        await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    except BaseException:
        client.abort()
        raise
    return client


async def open_many(
    count: int,
    factory: ClientFactory,
    host: str,
    port: int,
    load: Load,
    concurrency: int = 50,
    timeout: float = 10.0,
) -> list[WsClient]:
    """Open ``count`` upgraded connections, at most ``concurrency`` handshakes at a time.

    Bounded concurrency keeps the server's listen backlog (100 for asyncio) from
    overflowing, which would turn into 1 s SYN retransmits and a misleading result.
    Failures are counted in ``load.errors`` and the survivors returned.
    """
    gate = asyncio.Semaphore(concurrency)
    clients: list[WsClient] = []

    async def one() -> None:
        async with gate:
            try:
                clients.append(await connect(factory, host, port, timeout))
            except (OSError, TimeoutError) as exc:
                load.errors[f"connect: {type(exc).__name__}"] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return clients


async def close_all(clients: list[WsClient], timeout: float = 5.0) -> None:
    """Close handshake on every connection, then drop whatever is still open after ``timeout``."""
    for client in clients:
        client.send_close()
    pending = [client.closed for client in clients if not client.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for client in clients:
        client.abort()
    await asyncio.sleep(0)
