"""``python -m bench.wire_micro``: what the inter-process formats cost, per call.

The hand-off is on the per-connection path (encoded once by the acceptor,
decoded once by the worker); pub/sub batches are on the per-message path
(built by a worker, read by the hub, packed again per worker, read there).
Each figure is the best of several runs, so that a busy machine inflates it
as little as possible; compare figures taken on the same machine.
"""

import timeit
from collections.abc import Callable
from typing import Any

import trio

from axeom import Axeom, Headers, Request, wire
from axeom.trio_runtime import handoff, serialize_response
from axeom.ws import Upgrade, ws_plugin

OPERATIONS = 1000  # per batch: what the worker's link sends at most in one message
LINE = "hello world, a short chat line"


def accepted() -> tuple[Axeom, Upgrade, bytes]:
    """An app, an accepted upgrade as a browser sends it, and its 101."""
    app = Axeom().use(ws_plugin(compression=True))
    app.derive(lambda ctx: {"user": "ann", "tags": [1, 2]})
    app.ws("/room/:id", message=lambda ws, m: None)
    headers = Headers(
        {
            "host": "h",
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
            "sec-websocket-extensions": "permessage-deflate; client_max_window_bits",
            "user-agent": "bench/1.0",
            "origin": "http://h",
        }
    )
    request = Request("GET", "/room/7?x=1", headers, ("127.0.0.1", 5555))
    response = trio.run(app.handle, request)
    assert response.upgrade is not None
    return app, response.upgrade, serialize_response(response, close=False)


def best(function: Callable[[], Any], number: int) -> float:
    """Microseconds per call, best of 7 runs."""
    return min(timeit.repeat(function, number=number, repeat=7)) / number * 1e6


def main() -> None:
    app, upgrade, head = accepted()
    routes = handoff.ws_routes(app)
    datagram = bytearray(wire.handoff_prefix(7) + wire.encode_handoff(upgrade, b"", "", head))

    def encode_handoff() -> bytes:
        return wire.handoff_prefix(7) + wire.encode_handoff(upgrade, b"", "", head)

    def decode_handoff() -> wire.HandedOff:
        frame = wire.read_handoff(datagram, len(datagram))
        assert frame is not None
        return wire.decode_handoff(routes, frame[2], frame[3])

    topics = [f"room:{i % 50}" for i in range(OPERATIONS)]
    operations = [(wire.PUB, topic, LINE) for topic in topics]
    batch = wire.encode_batch("worker-1.1", operations, {"room:1": 3})
    deliveries = wire.encode_operations(operations)

    def read(operations: Any) -> int:
        published = 0
        for code, _topic, _data in operations:
            if code == wire.PUB:
                published += 1
        return published

    figures = [
        ("hand-off: encode (acceptor)", best(encode_handoff, 20_000), ""),
        ("hand-off: decode (worker)", best(decode_handoff, 20_000), ""),
        (
            f"pub/sub: encode a batch of {OPERATIONS} (worker)",
            best(lambda: wire.encode_batch("worker-1.1", operations, {}), 300),
            f"{len(batch)} bytes",
        ),
        (
            "pub/sub: decode and read it (hub)",
            best(lambda: read(wire.decode_batch(batch).operations), 300),
            "",
        ),
        (
            f"pub/sub: encode {OPERATIONS} deliveries (hub)",
            best(lambda: wire.encode_operations(operations), 300),
            f"{len(deliveries)} bytes",
        ),
        (
            "pub/sub: decode and read them (worker)",
            best(lambda: read(wire.decode_operations(deliveries)), 300),
            "",
        ),
    ]
    for name, microseconds, note in figures:
        print(f"{name:42} {microseconds:9.2f} us  {note}")


if __name__ == "__main__":
    main()
