"""Hand-off of a socket between processes, and the IPC envelopes, without processes."""

from __future__ import annotations

import os
import socket
import struct

import pytest
import trio
import trio.testing

from axeom import Axeom, Headers, Request, wire
from axeom import ipc as _ipc
from axeom.trio_runtime import handoff as _handoff
from axeom.ws import ws_plugin
from axeom_supervisor import _control


def upgrade_headers(extensions: str | None) -> Headers:
    headers = Headers(
        {
            "host": "h",
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
            "x-user": "ann",
        }
    )
    if extensions is not None:
        headers.add("sec-websocket-extensions", extensions)
    return headers


async def accepted_upgrade(app: Axeom, target: str = "/room/7?x=1"):  # type: ignore[no-untyped-def]
    headers = upgrade_headers("permessage-deflate; client_max_window_bits")
    response = await app.handle(Request("GET", target, headers, ("10.0.0.1", 5555)))
    assert response.status == 101 and response.upgrade is not None
    return response.upgrade


def make_app() -> Axeom:
    app = Axeom().use(ws_plugin(compression=True))

    @app.derive
    def who(ctx):  # type: ignore[no-untyped-def]
        return {"user": ctx.headers["x-user"], "tags": [1, 2]}

    app.ws("/room/:id", message=lambda ws, m: None)
    return app


def framed(head: bytes, body: bytes) -> bytes:
    """What follows the prefix of a hand-off datagram: the 101 head, length
    first, then the body."""
    return struct.pack("!I", len(head)) + head + body


def decode(app: Axeom, blob: bytes) -> wire.HandedOff:
    """``blob`` (from ``wire.encode_handoff``) as a worker reads it."""
    datagram = wire.handoff_prefix(0) + blob
    frame = wire.read_handoff(datagram, len(datagram))
    assert frame is not None
    _, _, head, body = frame
    return wire.decode_handoff(_handoff.ws_routes(app), head, body)


async def test_blob_round_trip_keeps_everything_the_worker_needs() -> None:
    """Route, params, query, headers, ws.data, deflate offer, trailing bytes and id survive."""
    app = make_app()
    upgrade = await accepted_upgrade(app)
    blob = wire.encode_handoff(upgrade, b"\x81\x85early", "abc-1", b"HTTP/1.1 101 ...")
    handed = decode(app, blob)
    assert handed.upgrade.route is upgrade.route
    assert handed.upgrade.params == {"id": "7"}
    assert handed.upgrade.query == {"x": "1"}
    assert handed.upgrade.data == {"user": "ann", "tags": [1, 2]}
    assert handed.upgrade.headers["x-user"] == "ann"
    assert handed.upgrade.deflate_offer == upgrade.deflate_offer
    assert handed.upgrade.remote_address == ("10.0.0.1", 5555)
    assert handed.trailing == b"\x81\x85early"
    assert handed.socket_id == "abc-1"
    assert handed.response_head == b"HTTP/1.1 101 ..."


@pytest.mark.parametrize(
    ("extensions", "offer"),
    [("permessage-deflate", []), (None, None)],
)
async def test_bare_deflate_offer_is_not_lost_in_the_blob(
    extensions: str | None, offer: list[tuple[str, str | None]] | None
) -> None:
    """A bare offer (no parameters, ``[]``) stays an offer in the worker; no offer stays None."""
    app = make_app()
    response = await app.handle(Request("GET", "/room/1", upgrade_headers(extensions), None))
    assert response.upgrade is not None and response.upgrade.deflate_offer == offer
    handed = decode(app, wire.encode_handoff(response.upgrade, b"", "id", b""))
    assert handed.upgrade.deflate_offer == offer


async def test_unknown_route_is_refused() -> None:
    """A worker whose app lacks the route (a reload changed it) refuses the socket."""
    upgrade = await accepted_upgrade(make_app())
    blob = wire.encode_handoff(upgrade, b"", "id", b"")
    other = Axeom().use(ws_plugin())
    other.ws("/elsewhere", message=lambda ws, m: None)
    with pytest.raises(wire.WireError, match="no WebSocket route '/room/:id'"):
        decode(other, blob)
    with pytest.raises(wire.WireError, match="malformed"):
        decode(other, framed(b"", b"\xc1garbage"))


async def test_descriptor_and_blob_travel_together() -> None:
    """A TCP socket sent over SOCK_SEQPACKET with SCM_RIGHTS is usable on the other side."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tcp_a, tcp_b = socket.socketpair()
    with left, right, tcp_a, tcp_b:
        left.setblocking(False)
        right.setblocking(False)
        await _handoff.send_socket(left, tcp_a.fileno(), 7, framed(b"101", b"meta"))
        received = await _handoff.receive_socket(right)
        assert received is not None and received.fd is not None
        assert (received.seq, received.head, received.body) == (7, b"101", b"meta")
        with socket.socket(fileno=received.fd) as moved:
            moved.sendall(b"through the copy")
            assert tcp_b.recv(100) == b"through the copy"
        left.close()
        assert await _handoff.receive_socket(right) is None


async def test_queued_hand_offs_are_taken_and_answered_together() -> None:
    """A worker takes every hand-off queued in one wake and answers them all
    in one datagram, which the acceptor reads whole (no answer lost)."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pairs = [socket.socketpair() for _ in range(3)]
    with left, right:
        left.setblocking(False)
        right.setblocking(False)
        for seq, (tcp_a, _) in enumerate(pairs, 10):
            await _handoff.send_socket(left, tcp_a.fileno(), seq, framed(b"", b"blob%d" % seq))
        batch = await _handoff.receive_sockets(right)
        assert batch is not None
        assert [(r.seq, r.body) for r in batch] == [
            (10, b"blob10"),
            (11, b"blob11"),
            (12, b"blob12"),
        ]
        for received, (_, tcp_b) in zip(batch, pairs, strict=True):
            assert received.fd is not None
            with socket.socket(fileno=received.fd) as moved:
                moved.sendall(b"seq %d" % received.seq)
                assert tcp_b.recv(100) == b"seq %d" % received.seq
        answers = [(10, wire.TAKEN), (11, wire.NO_DESCRIPTOR), (12, wire.REFUSED)]
        await _handoff.send_replies(right, answers)
        await _handoff.send_reply(right, 13, wire.TAKEN)
        assert await _handoff.receive_replies(left) == (wire.WIRE_VERSION, answers)
        assert await _handoff.receive_replies(left) == (wire.WIRE_VERSION, [(13, wire.TAKEN)])
        right.close()
        assert await _handoff.receive_replies(left) is None
    for tcp_a, tcp_b in pairs:
        tcp_a.close()
        tcp_b.close()


async def test_hand_offs_queued_before_the_end_are_still_answered() -> None:
    """The batch read up to the channel's end is returned; the end comes next."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left, right, socket.socket() as tcp:
        left.setblocking(False)
        right.setblocking(False)
        await _handoff.send_socket(left, tcp.fileno(), 1, framed(b"", b"x"))
        left.close()
        batch = await _handoff.receive_sockets(right)
        assert batch is not None and [r.seq for r in batch] == [1]
        assert batch[0].fd is not None
        socket.close(batch[0].fd)
        assert await _handoff.receive_sockets(right) is None


def test_a_reply_datagram_is_read_as_whole_pairs() -> None:
    """Several (seq, outcome) pairs per datagram; a partial pair is ignored."""
    data = wire.encode_replies([(1, 0), (2**40, 2)])
    assert wire.decode_replies(data).pairs == [(1, 0), (2**40, 2)]
    assert wire.decode_replies(data + b"\x00\x01").pairs == [(1, 0), (2**40, 2)]
    assert wire.decode_replies(wire.encode_replies([])).pairs == []


async def test_send_to_a_closed_worker_raises_handoff_error() -> None:
    """The acceptor learns at once that a worker's channel is gone."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    right.close()
    with left, socket.socket() as tcp:
        left.setblocking(False)
        with pytest.raises(_handoff.HandoffError):
            await _handoff.send_socket(left, tcp.fileno(), 1, framed(b"", b"x"))


async def test_control_replies_have_one_envelope() -> None:
    """Unknown or malformed commands get an error envelope, not an exception."""

    async def ask(data: bytes) -> wire.ControlReply:
        return wire.decode_reply(await _control.handle_request(None, data))  # type: ignore[arg-type]

    unknown = await ask(wire.encode_request({"cmd": "x"}))
    assert unknown.ok is False and unknown.error == wire.ERROR_UNKNOWN_COMMAND
    malformed = await ask(b"\xc1")
    assert malformed.ok is False and malformed.error == wire.ERROR_BAD_REQUEST
    pong = await ask(wire.encode_request({"cmd": "ping"}))
    assert pong == wire.ControlReply(True, "pong")


def test_handoff_paths_differ_per_generation() -> None:
    """A replacement worker listens on a new path, so the old one can still drain."""
    paths = _ipc.RunPaths("/run")
    assert os.path.basename(paths.handoff("worker-1", 2)) == "worker-1.2.sock"
    assert paths.handoff("worker-1", 1) != paths.handoff("worker-1", 2)


async def test_closing_a_worker_slot_wakes_a_parked_hand_off() -> None:
    """A hand-off waiting on a full channel fails over when the slot is closed."""
    from axeom_acceptor._acceptor import WorkerSlot

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    left.setblocking(False)
    slot = WorkerSlot("worker-1", 1, "unused", channel=left)
    with right, socket.socket() as tcp:
        while True:  # fill the channel until a send would block
            try:
                left.sendmsg([b"x" * 4096])
            except BlockingIOError:
                break
        outcome: list[BaseException] = []

        async def hand_off() -> None:
            try:
                await _handoff.send_socket(left, tcp.fileno(), 1, framed(b"", b"blob"))
            except _handoff.HandoffError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hand_off)
            await trio.testing.wait_all_tasks_blocked()
            slot.close()
        assert len(outcome) == 1
        assert not slot.alive


async def test_hub_survives_a_malformed_batch() -> None:
    """A batch the hub cannot apply is dropped; the next one still works."""
    import pynng

    from axeom_supervisor._hub import Hub

    address = "inproc://hub-test"
    async with trio.open_nursery() as nursery:
        hub = Hub(nursery)
        with pynng.Pull0(listen=address) as pull, pynng.Push0(dial=address) as push:
            nursery.start_soon(hub.receive_loop, pull)
            hub.add_worker("w.1", "inproc://nowhere", "abc")
            await push.asend(b"\xc1not msgpack")
            await push.asend(wire.encode_batch("w.1", [(wire.SEND, 42, "x")], {}))
            await push.asend(wire.encode_batch("w.1", [(wire.SUB, "t", None)], {}))
            with trio.fail_after(5):
                while "t" not in hub.topics:
                    await trio.sleep(0.01)
            assert hub.topics["t"] == {"w.1"}
            nursery.cancel_scope.cancel()


async def test_hub_queue_for_a_stuck_worker_is_bounded_in_bytes() -> None:
    """Deliveries to a worker that takes nothing are dropped past the byte bound."""
    from axeom_supervisor import _hub

    async with trio.open_nursery() as nursery:
        hub = _hub.Hub(nursery)
        hub.add_worker("w.1", "inproc://nobody-listens", "abc")
        hub.topics["t"] = {"w.1"}
        big = "x" * (30 << 20)
        for _ in range(4):
            hub.deliver_remote((wire.PUB, "t", big))
            await trio.testing.wait_all_tasks_blocked()
        worker = hub.workers["w.1"]
        assert worker.dropping
        assert hub.forwarded == 3
        assert worker.queued_bytes <= _hub.QUEUE_BYTES
        nursery.cancel_scope.cancel()
