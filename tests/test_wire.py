"""Every format of ``axeom.wire`` round-trips, refuses another version, and
keeps its frozen parts (what a process of another version reads to refuse)."""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axeom import Axeom, Headers, ipc, wire
from axeom.trio_runtime import handoff
from axeom.ws import Upgrade, ws_plugin

APP = Axeom().use(ws_plugin())
APP.ws("/room/:id", message=lambda ws, m: None)
ROUTES = handoff.ws_routes(APP)
OTHER = wire.WIRE_VERSION + 1

text = st.text(max_size=12)
small_ints = st.integers(min_value=0, max_value=2**31)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | text
    | st.binary(max_size=12)
)
# What msgpack gives back as it was given (a list stays a list, a map a map).
json_like = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
)
counts = st.dictionaries(text, small_ints, max_size=4)


@st.composite
def upgrades(draw: st.DrawFn) -> Upgrade:
    return Upgrade(
        route=ROUTES["/room/:id"],
        path=draw(text),
        params=draw(st.dictionaries(text, text, max_size=3)),
        query=draw(st.dictionaries(text, text, max_size=3)),
        headers=Headers(draw(st.lists(st.tuples(text, text), max_size=5))),
        data=draw(st.dictionaries(text, json_like, max_size=4)),
        subprotocol=draw(st.none() | text),
        extensions=draw(st.none() | text),
        deflate_offer=draw(st.none() | st.lists(st.tuples(text, st.none() | text), max_size=3)),
        remote_address=draw(st.none() | st.tuples(text, st.integers(0, 65535))),
    )


@settings(max_examples=150, deadline=None)
@given(upgrades(), st.binary(max_size=40), text, st.binary(max_size=200), st.integers(0, 2**64 - 1))
def test_a_handoff_round_trips(
    upgrade: Upgrade, trailing: bytes, socket_id: str, head: bytes, seq: int
) -> None:
    """Everything the worker needs comes out as it went in, with its number."""
    blob = wire.encode_handoff(upgrade, trailing, socket_id, head)
    datagram = wire.handoff_prefix(seq) + blob
    frame = wire.read_handoff(bytearray(datagram) + b"past the end", len(datagram))
    assert frame is not None
    version, number, got_head, body = frame
    assert (version, number, got_head) == (wire.WIRE_VERSION, seq, head)
    handed = wire.decode_handoff(ROUTES, got_head, body)
    got = handed.upgrade
    assert got.route is upgrade.route
    assert (got.path, got.params, got.query, got.data) == (
        upgrade.path,
        upgrade.params,
        upgrade.query,
        upgrade.data,
    )
    assert got.headers.items_list() == upgrade.headers.items_list()
    assert (got.subprotocol, got.extensions) == (upgrade.subprotocol, upgrade.extensions)
    assert got.deflate_offer == upgrade.deflate_offer
    assert got.remote_address == upgrade.remote_address
    assert (handed.trailing, handed.socket_id, handed.response_head) == (trailing, socket_id, head)


def test_a_connection_handoff_round_trips_and_is_told_apart() -> None:
    """A TLS connection placed before its handshake carries its client's
    address only, and is never read as an accepted upgrade (nor one as it)."""
    datagram = wire.handoff_prefix(7) + wire.encode_connection(("127.0.0.1", 40000))
    frame = wire.read_handoff(bytearray(datagram), len(datagram))
    assert frame is not None
    version, number, head, body = frame
    assert (version, number) == (wire.WIRE_VERSION, 7)
    assert wire.is_connection(head)
    assert wire.decode_connection(body) == ("127.0.0.1", 40000)
    with pytest.raises(wire.WireError):
        wire.decode_handoff(ROUTES, head, body)  # an older worker refuses it
    with pytest.raises(wire.WireError):
        wire.decode_connection(b"not msgpack of an address")
    assert not wire.is_connection(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 255)), max_size=64))
def test_answers_round_trip(pairs: list[tuple[int, int]]) -> None:
    """A worker's (seq, outcome) pairs come back whole, with its version."""
    data = wire.encode_replies(pairs)
    assert len(data) == wire.replies_size(len(pairs))
    assert wire.decode_replies(data) == (wire.WIRE_VERSION, pairs)


codes = st.sampled_from(
    [
        wire.PUB,
        wire.SEND,
        wire.SUB,
        wire.UNSUB,
        wire.SYNC,
        wire.SYNCED,
        wire.COUNTS,
        wire.RCOUNTS,
        wire.TOPICS,
    ]
)
# Subjects and payloads as operations carry them (no lists: operations are
# read back as tuples all the way down).
values = st.none() | small_ints | text | st.binary(max_size=12) | counts
operations = st.lists(st.tuples(codes, values, values), max_size=20)


@given(text, operations, counts)
def test_a_batch_to_the_hub_round_trips(
    source: str, ops: list[wire.Operation], changed: dict[str, int]
) -> None:
    """A worker's (or the bridge's) batch: its sender, operations and counts."""
    batch = wire.decode_batch(wire.encode_batch(source, ops, changed))
    assert batch == (source, tuple(ops), changed)


@given(operations)
def test_operations_from_the_hub_round_trip(ops: list[wire.Operation]) -> None:
    """The hub's deliveries to a worker, and its operations for the bridge."""
    assert wire.decode_operations(wire.encode_operations(ops)) == tuple(ops)


figures = st.dictionaries(text, st.none() | st.booleans() | small_ints | text | counts, max_size=6)


@given(text, small_ints, small_ints, figures, text, text, text, small_ints)
def test_reports_round_trip(
    name: str,
    generation: int,
    pid: int,
    load: dict[str, Any],
    handoff_path: str,
    pubsub: str,
    prefix: str,
    seq: int,
) -> None:
    """Ready (plain and a worker's), heartbeat and table acknowledgement."""
    sender = (name, generation, pid)
    assert wire.decode_report(wire.ready(*sender)) == (wire.READY, *sender, {})
    ready = wire.worker_ready(*sender, handoff=handoff_path, pubsub=pubsub, prefix=prefix)
    fields = {"handoff": handoff_path, "pubsub": pubsub, "prefix": prefix}
    assert wire.decode_report(ready) == (wire.READY, *sender, fields)
    heartbeat = wire.heartbeat(*sender, load)
    assert wire.decode_report(heartbeat) == (wire.HEARTBEAT, *sender, load)
    ack = wire.table_ack(*sender, seq)
    assert wire.decode_report(ack) == (wire.TABLE_ACK, *sender, {"seq": seq})


entries = st.builds(wire.WorkerEntry, text, small_ints, text, small_ints, st.none() | small_ints)


@given(small_ints, st.lists(entries, max_size=5))
def test_events_round_trip(seq: int, workers: list[wire.WorkerEntry]) -> None:
    """The worker table, topic included."""
    message = wire.worker_table(seq, workers)
    assert message.startswith(wire.subscription(ipc.TOPIC_ACCEPTOR))
    assert wire.decode_event(message) == wire.WorkerTable(seq, workers)


@given(text, st.dictionaries(text.filter(lambda k: k not in ("cmd", "v")), json_like, max_size=3))
def test_control_requests_and_replies_round_trip(command: str, arguments: dict[str, Any]) -> None:
    """A request keeps its command and properties; a reply its result or error."""
    request = wire.decode_request(wire.encode_request({"cmd": command, **arguments}))
    assert request == {"cmd": command, **arguments, "v": wire.WIRE_VERSION}
    assert wire.decode_reply(wire.encode_result(arguments)) == wire.ControlReply(True, arguments)
    error = wire.decode_reply(wire.encode_error(wire.ERROR_FAILED, command))
    assert error == wire.ControlReply(False, None, wire.ERROR_FAILED, command)


def test_the_frozen_parts_stay_as_they_are() -> None:
    """What a process of another version reads to refuse cleanly: magic,
    version and sequence number up front, then the length-prefixed 101."""
    seq, head = 7, b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    upgrade = Upgrade(ROUTES["/room/:id"], "/room/1", {}, {}, Headers(), {}, None, None, None, None)
    datagram = wire.handoff_prefix(seq) + wire.encode_handoff(upgrade, b"", "", head)
    version = wire.WIRE_VERSION
    frozen = b"AXho" + struct.pack("!HQI", version, seq, len(head)) + head
    assert datagram.startswith(frozen)
    answer = b"AXre" + struct.pack("!H", version) + struct.pack("!QB", 9, wire.OTHER_VERSION)
    assert wire.encode_replies([(9, wire.OTHER_VERSION)]) == answer
    assert (wire.TAKEN, wire.NO_DESCRIPTOR, wire.REFUSED, wire.OTHER_VERSION) == (0, 1, 2, 3)
    report = msgpack.unpackb(wire.heartbeat("worker-1", 2, 42, {}))
    assert {report["v"], report["id"], report["gen"], report["pid"]} == {version, "worker-1", 2, 42}
    assert msgpack.unpackb(wire.encode_batch("w.1", [], {}))[:2] == [version, "w.1"]
    assert msgpack.unpackb(wire.encode_operations([]))[0] == version
    assert msgpack.unpackb(wire.encode_request({"cmd": "status"}))["v"] == version


def test_a_handoff_of_another_version_still_gives_its_number_and_101() -> None:
    """A worker reads the prefix and the 101 of any version, not the body."""
    head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    body = b"\xc1 a body this version cannot read"
    rest = struct.pack("!I", len(head)) + head + body
    datagram = struct.pack("!4sHQ", b"AXho", OTHER, 12) + rest
    assert wire.read_handoff(datagram, len(datagram)) == (OTHER, 12, head, body)
    assert wire.refusal_after_101(head) == head + b"\x88\x02\x03\xf4"  # close 1012
    assert wire.read_handoff(b"\x00" * 8 + rest, len(rest) + 8) is None  # before v1
    assert wire.read_handoff(datagram, 17) is None  # too short
    cut = struct.pack("!4sHQI", b"AXho", OTHER, 12, 100) + b"short"
    assert wire.read_handoff(cut, len(cut)) == (OTHER, 12, None, b"")
    with pytest.raises(wire.WireError, match="cut short"):
        wire.decode_handoff(ROUTES, None, b"")


def test_answers_of_another_version_are_read_with_their_version() -> None:
    """The answer layout is frozen: the acceptor reads the outcomes and sees the version."""
    data = struct.pack("!4sH", b"AXre", OTHER) + struct.pack("!QB", 5, wire.OTHER_VERSION)
    assert wire.decode_replies(data) == (OTHER, [(5, wire.OTHER_VERSION)])
    with pytest.raises(wire.WireError, match="no magic"):
        wire.decode_replies(struct.pack("!QB", 5, 0))  # an answer from before v1


@pytest.mark.parametrize(
    ("decode", "data", "sender"),
    [
        (wire.decode_batch, msgpack.packb([OTHER, "worker-1.1", [], {}]), "worker-1.1"),
        (wire.decode_operations, msgpack.packb([OTHER, []]), None),
        (
            wire.decode_report,
            msgpack.packb({"v": OTHER, "t": "hb", "id": "worker-1", "gen": 3, "pid": 9}),
            "worker-1.3 (pid 9)",
        ),
        (wire.decode_event, b"acceptor " + msgpack.packb({"v": OTHER, "t": "workers"}), None),
        (wire.decode_request, msgpack.packb({"v": OTHER, "cmd": "status"}), None),
        (wire.decode_reply, msgpack.packb({"v": OTHER, "ok": True, "result": 1}), None),
    ],
)
def test_another_version_is_refused_never_misread(decode: Any, data: bytes, sender: str) -> None:
    """Each decoder raises VersionMismatch, naming the sender when the format does."""
    with pytest.raises(wire.VersionMismatch) as caught:
        decode(data)
    assert (caught.value.version, caught.value.sender) == (OTHER, sender)


def test_a_report_of_another_version_names_the_child() -> None:
    """The supervisor learns which child to replace."""
    data = msgpack.packb({"v": OTHER, "t": "hb", "id": "worker-2", "gen": 5, "pid": 1})
    with pytest.raises(wire.VersionMismatch) as caught:
        wire.decode_report(data)
    assert caught.value.child == ("worker-2", 5)


@pytest.mark.parametrize(
    ("decode", "data"),
    [
        (wire.decode_request, msgpack.packb({"cmd": "status"})),
        (wire.decode_reply, msgpack.packb({"ok": True, "result": 1})),
        (wire.decode_report, msgpack.packb({"t": "hb", "id": "acceptor", "gen": 1})),
    ],
)
def test_a_message_without_a_version_is_version_0(decode: Any, data: bytes) -> None:
    """An Axeom from before versioning sends no version: it is refused as version 0."""
    with pytest.raises(wire.VersionMismatch) as caught:
        decode(data)
    assert caught.value.version == 0


@pytest.mark.parametrize(
    "decode",
    [
        wire.decode_batch,
        wire.decode_operations,
        wire.decode_report,
        wire.decode_event,
        wire.decode_request,
        wire.decode_reply,
        wire.decode_replies,
        lambda data: wire.decode_handoff(ROUTES, b"", data),
    ],
)
@pytest.mark.parametrize("data", [b"", b"\xc1", msgpack.packb("text"), msgpack.packb([])])
def test_garbage_is_a_wire_error(decode: Any, data: bytes) -> None:
    """Bytes that are no message raise WireError (a ValueError), nothing else."""
    with pytest.raises(wire.WireError):
        decode(data)


def test_a_mismatch_is_logged_once_per_sender_and_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stale process sends many messages; the log gets one line for it."""
    log = wire.MismatchLog(logging.getLogger("test.wire"), "reports")
    with caplog.at_level(logging.ERROR, "test.wire"):
        for _ in range(3):
            log.report(wire.VersionMismatch(OTHER, "worker-1.1"), "dropped")
        log.report(wire.VersionMismatch(OTHER, "worker-2.1"), "dropped")
        log.report(wire.VersionMismatch(OTHER + 1, "worker-1.1"), "dropped")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0] == (
        f"reports from worker-1.1: wire version {OTHER}, this process speaks "
        f"{wire.WIRE_VERSION} (a stale process or a half-upgraded install); dropped"
    )


settings_values = st.none() | st.booleans() | small_ints | text | st.lists(text, max_size=3)


@given(st.dictionaries(text.filter(lambda k: k != "v"), settings_values, max_size=4))
def test_settings_round_trip(settings: dict[str, Any]) -> None:
    """A child reads back what its supervisor passed, version checked."""
    decoded = wire.decode_settings([wire.encode_settings(settings)])
    assert decoded == {"v": wire.WIRE_VERSION, **settings}
    with pytest.raises(wire.VersionMismatch):
        wire.decode_settings([json.dumps({**settings, "v": wire.WIRE_VERSION + 1})])
