"""Every format that crosses a process boundary in an ``axeom run`` tree.

Addresses, paths and topic names are in ``axeom.ipc``; the bytes that travel
between them are built and read here, and nowhere else. Positional layouts
(the hand-off body, worker-table entries) are known only to this module; a
pub/sub operation is a (code, subject, payload) triple with its code named
here, unpacked into names where it is read (a batch stays a list of tuples:
no object per operation on that path).

============================  ==================  ============================
link                          transport           built / read by
============================  ==================  ============================
acceptor -> worker            SOCK_SEQPACKET      ``handoff_prefix`` +
                              + SCM_RIGHTS        ``encode_handoff`` /
                                                  ``read_handoff``,
                                                  ``decode_handoff``
worker -> acceptor            same channel        ``encode_replies`` /
                                                  ``decode_replies``
worker, bridge -> hub         nng PUSH/PULL       ``encode_batch`` /
                                                  ``decode_batch``
hub -> worker, hub -> bridge  nng PUSH/PULL       ``encode_operations`` /
                                                  ``decode_operations``
child -> supervisor           nng PUSH/PULL       ``ready``, ``worker_ready``,
                                                  ``heartbeat``, ``table_ack``
                                                  / ``decode_report``
supervisor -> acceptor        nng PUB/SUB         ``worker_table`` /
                                                  ``decode_event``
client -> control socket      nng REQ/REP         ``encode_request`` /
                                                  ``decode_request``;
                                                  ``encode_result``,
                                                  ``encode_error`` /
                                                  ``decode_reply``
============================  ==================  ============================

Versions
--------
``WIRE_VERSION`` is one integer for all of these formats: bump it whenever
any of them changes. Every message carries it. The processes of one tree
always come from one install, so a message of another version means a
half-upgraded install (the package was upgraded under a running server and a
child was restarted, or the tree was reloaded, into the new code) or a stale
process; it is never misread. What a process does with one:

- A hand-off of another version: the worker writes the 101 from the
  datagram, then a close frame 1012 (service restart: the client reconnects),
  and answers ``OTHER_VERSION``; the acceptor then closes its copy and neither
  retries nor writes anything. The client sees 101 + 1012, never a 101 and
  silence.
- An answer of another version: the acceptor applies the outcomes it reads
  (their codes are frozen, below) and logs the version once per worker:
  ``OTHER_VERSION`` means the client has its 101 + 1012; any other outcome
  but ``TAKEN`` (a worker of another version never takes a socket) means
  nothing was written, so the socket goes to another worker or gets a 503,
  before any 101.
- A report (ready, heartbeat, table ack) of another version: dropped. The
  supervisor logs one line naming the child and both versions and treats the
  child as unhealthy: it is stopped on the usual timeline and the restart
  policy replaces it with a process of this install. If the install itself
  now speaks another version, the replacements fail the same way until the
  policy gives up with its usual reason: a reload cannot cross a wire version
  change; restart the server.
- An event, or a pub/sub batch, of another version: dropped, logged once
  per sender and version (``MismatchLog``), never once per message.
- A control request of another version: answered with the error
  ``wire_version`` and a message naming both versions (``axeom status``
  prints that line). A reply of another version raises ``VersionMismatch``
  in the client. A request or reply without a version comes from an Axeom
  of before versioning, and counts as version 0.

So that a process of another version can read what it needs to refuse, some
parts are frozen forever (a change there is not a version bump but a new
format): every nng message is a msgpack array whose first item is the
version, or a msgpack map with the version under ``"v"`` (after the topic and
a space, for an event); a report's map
names its sender under ``"id"``, ``"gen"`` and ``"pid"``; a pub/sub batch's
second item is its sender; a hand-off datagram starts with ``HANDOFF_MAGIC``,
the version, the sequence number and the length-prefixed 101 head; an answer
datagram is ``REPLY_MAGIC``, the version, then (sequence number, outcome)
pairs with the outcome codes below. Versions before 1 had no magic: such a
datagram is not recognised (its descriptor is closed, nothing is answered,
and the acceptor answers 503 when its wait times out).

Not here: the Redis channels (``axeom_supervisor.redis_bridge``) are JSON,
without this version. They are a public contract with clients that are not
Axeom (anything that can ``PUBLISH`` into a topic), so they change only
compatibly: new optional keys, never a changed meaning.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgpack
from websockets.frames import Close, CloseCode, Frame, Opcode

from . import ipc
from ._headers import Headers

if TYPE_CHECKING:
    from .ws._route import WSRoute
    from .ws._upgrade import Upgrade

__all__ = [
    "BRIDGE_SOURCE",
    "CLOSED",
    "COUNTS",
    "ERROR_BAD_REQUEST",
    "ERROR_FAILED",
    "ERROR_UNKNOWN_COMMAND",
    "ERROR_WIRE_VERSION",
    "HANDOFF_MAGIC",
    "HANDOFF_PREFIX_SIZE",
    "HEARTBEAT",
    "MAX_HANDOFF",
    "NO_DESCRIPTOR",
    "OTHER_VERSION",
    "PUB",
    "RCOUNTS",
    "READY",
    "REFUSED",
    "REPLY_MAGIC",
    "SEND",
    "SUB",
    "SYNC",
    "SYNCED",
    "TABLE_ACK",
    "TAKEN",
    "TOPICS",
    "UNSUB",
    "WIRE_VERSION",
    "WORKERS",
    "Batch",
    "ControlReply",
    "HandedOff",
    "MismatchLog",
    "Operation",
    "Replies",
    "Report",
    "VersionMismatch",
    "WireError",
    "WorkerEntry",
    "WorkerTable",
    "decode_batch",
    "decode_connection",
    "decode_event",
    "decode_handoff",
    "decode_operations",
    "decode_replies",
    "decode_reply",
    "decode_report",
    "decode_request",
    "decode_settings",
    "encode_batch",
    "encode_connection",
    "encode_error",
    "encode_handoff",
    "encode_operations",
    "encode_replies",
    "encode_request",
    "encode_result",
    "encode_settings",
    "handoff_prefix",
    "heartbeat",
    "is_connection",
    "read_handoff",
    "ready",
    "refusal_after_101",
    "replies_size",
    "subscription",
    "table_ack",
    "worker_ready",
    "worker_table",
]

# Bump on any change to any format of this module (see the docstring).
# 2: a worker also reports on the answer channel that a socket ended (``CLOSED``).
WIRE_VERSION = 2


class WireError(ValueError):
    """Bytes that are not a message of this format (malformed, truncated, or
    a hand-off this process cannot run)."""


class VersionMismatch(WireError):
    """A well-framed message of another wire version. ``sender`` names who
    sent it when the frozen part of the format says so, else None; for a
    report, ``child`` is the (name, generation) it gives."""

    def __init__(
        self, version: Any, sender: str | None = None, child: tuple[Any, Any] | None = None
    ) -> None:
        self.version = version
        self.sender = sender
        self.child = child
        source = f" from {sender}" if sender else ""
        super().__init__(f"wire version {version!r}{source}, this process speaks {WIRE_VERSION}")


Decoded = TypeVar("Decoded")


class MismatchLog:
    """Logs a version mismatch once per (sender, version): a stale process
    sends a message per heartbeat or per publish, the log gets one line."""

    def __init__(self, logger: logging.Logger, channel: str) -> None:
        self._logger = logger
        self._channel = channel
        self._seen: set[tuple[str, str]] = set()

    def _first(self, sender: str, version: Any) -> bool:
        """True the first time ``sender`` is seen speaking ``version``."""
        key = (sender, repr(version))
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def decode(
        self,
        decoder: Callable[[bytes], Decoded],
        data: bytes,
        what: str,
        sender: str | None = None,
    ) -> Decoded | None:
        """``decoder(data)``, or None for a message to drop: one of another
        version is reported once (``report``), anything else unusable is logged
        as a warning naming ``what``. The receive loops' one way to read."""
        try:
            return decoder(data)
        except VersionMismatch as exc:
            self.report(exc, "dropped", sender)
        except WireError as exc:
            self._logger.warning("unusable %s dropped: %s", what, exc)
        return None

    def report(self, error: VersionMismatch, consequence: str, sender: str | None = None) -> None:
        """One error line for the first such message from this sender."""
        who = sender or error.sender or "an unknown sender"
        if self._first(who, error.version):
            self._logger.error(
                "%s from %s: wire version %r, this process speaks %d (a stale process or"
                " a half-upgraded install); %s",
                self._channel,
                who,
                error.version,
                WIRE_VERSION,
                consequence,
            )


def _unpack(data: bytes, what: str, *, use_list: bool = True) -> Any:
    try:
        return msgpack.unpackb(data, use_list=use_list)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError(f"malformed {what}: {exc}") from None


def _versioned_array(data: bytes, what: str, size: int, *, use_list: bool = True) -> Any:
    """The items of a versioned array message (the version first); raises
    ``VersionMismatch`` for another version (naming the sender, the second
    item, when it is a str) and ``WireError`` for anything else unusable."""
    message = _unpack(data, what, use_list=use_list)
    if not isinstance(message, list | tuple) or not message:
        raise WireError(f"malformed {what}: not a versioned array")
    if message[0] != WIRE_VERSION:
        sender = message[1] if len(message) > 1 and isinstance(message[1], str) else None
        raise VersionMismatch(message[0], sender)
    if len(message) != size:
        raise WireError(f"malformed {what}: {len(message)} items, expected {size}")
    return message


def _versioned_map(message: Any, what: str) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise WireError(f"malformed {what}: not a map")
    version = message.get("v", 0)  # none: an Axeom from before versioning
    if version != WIRE_VERSION:
        raise VersionMismatch(version)
    return message


# -- hand-off: acceptor -> worker, and the worker's answers --------------------------

HANDOFF_MAGIC = b"AXho"  # frozen: tells a hand-off of any version from anything else
REPLY_MAGIC = b"AXre"  # frozen: the same for a worker's answers
# Frozen: magic, version, hand-off sequence number (the prefix, numbered
# per send); then the 101 head's length and the head; then the body of this
# version. A worker reads the first four at once (``_HANDOFF_HEADER``).
_HANDOFF_PREFIX = struct.Struct("!4sHQ")
_HEAD_LENGTH = struct.Struct("!I")
_HANDOFF_HEADER = struct.Struct("!4sHQI")
_REPLY_HEADER = struct.Struct("!4sH")  # frozen: magic, version
_REPLY_PAIR = struct.Struct("!QB")  # frozen: sequence number, outcome
_OUR_REPLY_HEADER = _REPLY_HEADER.pack(REPLY_MAGIC, WIRE_VERSION)
HANDOFF_PREFIX_SIZE = _HANDOFF_PREFIX.size
# Largest hand-off after the prefix (head and body): ws.data travels in it,
# and this bounds the buffer a worker receives into.
MAX_HANDOFF = 1 << 20

# Outcomes a worker answers (frozen: a future code must mean "nothing written").
TAKEN = 0  # the worker holds the socket and writes the 101
NO_DESCRIPTOR = 1  # the worker is out of descriptors: the kernel dropped the passed one
REFUSED = 2  # the worker will not run it (draining, unknown route, unusable blob)
OTHER_VERSION = 3  # another wire version: the worker wrote the 101 and a close 1012
# Not an answer: a socket taken earlier (by this sequence number) has ended.
# Sent only when the app has connection limits, so the acceptor that counted
# it open can count it closed; an acceptor has no hand-off waiting on that
# number any more, so one of version 1 ignores it.
CLOSED = 4

# The close frame a worker of another version writes after the 101: 1012
# (service restart) tells the client to reconnect, and it will reach a
# process of the right version.
_CLOSE_SERVICE_RESTART = Frame(
    Opcode.CLOSE, Close(CloseCode.SERVICE_RESTART, "").serialize()
).serialize(mask=False)


@dataclass(slots=True)
class HandedOff:
    """A hand-off as the worker runs it."""

    upgrade: Upgrade
    trailing: bytes  # bytes the acceptor read past the request head
    socket_id: str  # "" lets the worker name the socket
    response_head: bytes  # the 101 to write before anything else


def encode_handoff(
    upgrade: Upgrade, trailing: bytes, socket_id: str, response_head: bytes
) -> bytes:
    """What follows ``handoff_prefix`` in a hand-off datagram (encoded once,
    sent with a new prefix to each worker tried); raises ``WireError`` past
    ``MAX_HANDOFF`` (too much ``ws.data``)."""
    body = msgpack.packb(
        [
            upgrade.route.pattern,
            upgrade.path,
            upgrade.params,
            upgrade.query,
            upgrade.headers.items_list(),
            upgrade.data,
            upgrade.subprotocol,
            upgrade.extensions,
            upgrade.deflate_offer,
            list(upgrade.remote_address) if upgrade.remote_address else None,
            trailing,
            socket_id,
        ]
    )
    size = _HEAD_LENGTH.size + len(response_head) + len(body)
    if size > MAX_HANDOFF:
        raise WireError(f"hand-off of {size} bytes exceeds {MAX_HANDOFF} (ws.data too big)")
    return b"".join((_HEAD_LENGTH.pack(len(response_head)), response_head, body))


def handoff_prefix(seq: int) -> bytes:
    """The frozen start of a hand-off datagram numbered ``seq``."""
    return _HANDOFF_PREFIX.pack(HANDOFF_MAGIC, WIRE_VERSION, seq)


def read_handoff(
    datagram: bytes | bytearray, size: int
) -> tuple[int, int, bytes | None, bytes] | None:
    """(version, sequence number, 101 head, body) of the first ``size``
    bytes of a hand-off datagram of any version, copied out; the head is None
    if it is cut short. None if it is no hand-off at all (too short, no magic)."""
    if size < _HANDOFF_HEADER.size:
        return None
    magic, version, seq, length = _HANDOFF_HEADER.unpack_from(datagram)
    if magic != HANDOFF_MAGIC:
        return None
    end = _HANDOFF_HEADER.size + length
    if end > size:
        return version, seq, None, b""
    return version, seq, bytes(datagram[_HANDOFF_HEADER.size : end]), bytes(datagram[end:size])


# ``Upgrade``, imported on first use rather than at the top: the pub/sub
# engine imports this module, and the ws package imports the pub/sub engine.
# Kept here, since an import statement per hand-off costs about a microsecond.
_upgrade_class: type[Upgrade] | None = None


def _import_upgrade() -> type[Upgrade]:
    global _upgrade_class
    from .ws._upgrade import Upgrade

    _upgrade_class = Upgrade
    return Upgrade


def decode_handoff(routes: Mapping[str, WSRoute], head: bytes | None, body: bytes) -> HandedOff:
    """A hand-off of this version (as ``read_handoff`` split it) with its
    route resolved by pattern; ``WireError`` if malformed or if this app has
    no such route (a reload changed the routes: the worker refuses it rather
    than run the wrong handlers)."""
    if head is None:
        raise WireError("malformed hand-off: its 101 head is cut short")
    upgrade_class = _upgrade_class or _import_upgrade()
    try:
        (
            pattern,
            path,
            params,
            query,
            headers,
            data,
            subprotocol,
            extensions,
            offer,
            remote,
            trailing,
            socket_id,
        ) = msgpack.unpackb(body)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError(f"malformed hand-off: {exc}") from None
    route = routes.get(pattern)
    if route is None:
        raise WireError(f"this worker's app has no WebSocket route {pattern!r}")
    upgrade = upgrade_class(
        route=route,
        path=path,
        params=params,
        query=query,
        headers=Headers([tuple(pair) for pair in headers]),
        data=data,
        subprotocol=subprotocol,
        extensions=extensions,
        # [] (a bare offer, no parameters) and None (no compression) differ.
        deflate_offer=None if offer is None else [(name, value) for name, value in offer],
        remote_address=tuple(remote) if remote else None,
    )
    return HandedOff(upgrade, trailing, socket_id, head)


# -- hand-off of a connection before its handshake (TLS) ------------------------
#
# With TLS the acceptor cannot read the request (the session cannot cross a
# process boundary), so it places the TCP connection right after accept and
# the worker runs TLS, reads the head and runs ``app.handle`` itself. Such a
# hand-off has an empty 101 head (an accepted upgrade never has one) and a
# body of the client's address only. A worker of this version without TLS
# settings refuses it; one from before it refuses it as malformed.


def encode_connection(remote: tuple[str, int]) -> bytes:
    """What follows ``handoff_prefix`` for a connection not yet read from."""
    return _HEAD_LENGTH.pack(0) + msgpack.packb([list(remote)])


def is_connection(head: bytes | None) -> bool:
    """True for a hand-off of a connection before its handshake (``read_handoff``'s head)."""
    return head == b""


def decode_connection(body: bytes) -> tuple[str, int]:
    """The client's (host, port) of such a hand-off; ``WireError`` if malformed."""
    try:
        ((host, port),) = msgpack.unpackb(body)
        return str(host), int(port)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError(f"malformed connection hand-off: {exc}") from None


def refusal_after_101(response_head: bytes) -> bytes:
    """What a worker writes for a hand-off of another version: the 101 the
    acceptor prepared, then a close frame 1012 (service restart)."""
    return response_head + _CLOSE_SERVICE_RESTART


class Replies(NamedTuple):
    """One answer datagram: the worker's wire version and its answers."""

    version: int
    pairs: list[tuple[int, int]]  # (hand-off sequence number, outcome)


def encode_replies(pairs: Sequence[tuple[int, int]]) -> bytes:
    """A worker's answers to hand-offs, (seq, outcome) pairs, in one datagram."""
    return _OUR_REPLY_HEADER + b"".join([_REPLY_PAIR.pack(seq, outcome) for seq, outcome in pairs])


def decode_replies(data: bytes) -> Replies:
    """The answers of one datagram, of any version (the layout is frozen); a
    trailing partial pair (not something a worker sends) is ignored;
    ``WireError`` if it is not an answer datagram at all."""
    if len(data) < _REPLY_HEADER.size:
        raise WireError("truncated hand-off answer")
    magic, version = _REPLY_HEADER.unpack_from(data)
    if magic != REPLY_MAGIC:
        raise WireError("not a hand-off answer (no magic: a worker from before wire version 1?)")
    end = len(data) - (len(data) - _REPLY_HEADER.size) % _REPLY_PAIR.size
    pairs = list(_REPLY_PAIR.iter_unpack(data[_REPLY_HEADER.size : end]))
    return Replies(version, pairs)


def replies_size(count: int) -> int:
    """Bytes of an answer datagram carrying ``count`` answers."""
    return _REPLY_HEADER.size + count * _REPLY_PAIR.size


# -- pub/sub: worker <-> hub <-> Redis bridge ---------------------------------------------

# An operation is a triple (code, subject, payload), read by unpacking, never
# by index. Codes are small ints: they pack to one byte and unpack without
# allocating, which shows on the hub and on every worker (measured: reading a
# batch of short publishes took ~40% longer with string codes).
#
# code     subject              payload             link: meaning
# PUB      topic                message             worker -> hub -> workers, hub <-> bridge
# SEND     socket id            message             the same, routed by the id's prefix
# SUB      topic                None                worker -> hub: its first local subscriber
# UNSUB    topic                None                worker -> hub: its last one left
# SYNC     number               None                worker -> hub: a barrier (ws.subscribe)
#          worker key           number              hub -> bridge: the same, through Redis
# SYNCED   number               None                hub -> worker: the barrier is passed
#          worker key           number              bridge -> hub
# COUNTS   totals               the worker's own    hub -> worker ({topic: subscribers})
#          this node's totals   None                hub -> bridge
# RCOUNTS  other nodes' totals  None                bridge -> hub
# TOPICS   [subscribed]         [unsubscribed]      hub -> bridge: topics to (un)subscribe
PUB = 1
SEND = 2
SUB = 3
UNSUB = 4
SYNC = 5
SYNCED = 6
COUNTS = 7
RCOUNTS = 8
TOPICS = 9

Operation = tuple[int, Any, Any]

# The sender named in batches from the Redis bridge (workers use their key).
BRIDGE_SOURCE = "bridge"


class Batch(NamedTuple):
    """Operations from one sender to the hub, and its changed subscriber counts."""

    source: str  # a worker's key ("worker-1.2") or BRIDGE_SOURCE
    operations: Sequence[Operation]
    counts: dict[str, int]


def encode_batch(source: str, operations: Sequence[Operation], counts: Mapping[str, int]) -> bytes:
    """A worker's (or the bridge's) batch to the hub."""
    return msgpack.packb([WIRE_VERSION, source, operations, counts])


def decode_batch(data: bytes) -> Batch:
    """A batch for the hub; ``VersionMismatch`` (naming the sender) or ``WireError``."""
    _, source, operations, counts = _versioned_array(data, "pub/sub batch", 4, use_list=False)
    if not isinstance(source, str) or not isinstance(counts, dict):
        raise WireError("malformed pub/sub batch")
    return Batch(source, operations, counts)


def encode_operations(operations: Sequence[Operation]) -> bytes:
    """The hub's deliveries to one worker, or its operations for the bridge."""
    return msgpack.packb([WIRE_VERSION, operations])


def decode_operations(data: bytes) -> Sequence[Operation]:
    """Operations from the hub; ``VersionMismatch`` or ``WireError``."""
    _, operations = _versioned_array(data, "pub/sub operations", 2, use_list=False)
    return operations  # type: ignore[no-any-return]


# -- reports: children -> supervisor -------------------------------------------------------

READY = "ready"  # the child runs (for the acceptor: it accepts)
HEARTBEAT = "hb"  # alive, with load figures
TABLE_ACK = "table"  # the acceptor has the worker table numbered "seq"


class Report(NamedTuple):
    """A report from a child. ``fields`` by kind: a worker's READY has
    ``handoff``, ``pubsub`` and ``prefix``; a HEARTBEAT has the figures
    (see ``heartbeat``); a TABLE_ACK has ``seq``."""

    kind: str
    name: str
    generation: int
    pid: int
    fields: dict[str, Any]


def _report(kind: str, name: str, generation: int, pid: int, fields: Mapping[str, Any]) -> bytes:
    # "v", "id", "gen" and "pid" are frozen: a supervisor of another version
    # can still tell which child speaks another version.
    return msgpack.packb(
        {"v": WIRE_VERSION, "t": kind, "id": name, "gen": generation, "pid": pid, "f": fields}
    )


def ready(name: str, generation: int, pid: int) -> bytes:
    """An acceptor or the Redis bridge is ready."""
    return _report(READY, name, generation, pid, {})


def worker_ready(
    name: str, generation: int, pid: int, *, handoff: str, pubsub: str, prefix: str
) -> bytes:
    """A worker is ready: where it takes sockets (``handoff``) and pub/sub
    deliveries (``pubsub``), and the prefix of its socket ids."""
    return _report(
        READY, name, generation, pid, {"handoff": handoff, "pubsub": pubsub, "prefix": prefix}
    )


def heartbeat(name: str, generation: int, pid: int, figures: Mapping[str, Any]) -> bytes:
    """Alive, with load figures, by role. A worker: ``sockets`` (open),
    ``received`` (in its lifetime), ``draining``, ``pubsub_dropped``. The
    acceptor: ``handed``, ``unplaced``, and its handshake counters
    (``accepted``, ``rejected``, ``shed``, ``responses`` by status class).
    The Redis bridge: ``dropped``."""
    return _report(HEARTBEAT, name, generation, pid, figures)


def table_ack(name: str, generation: int, pid: int, seq: int) -> bytes:
    """The acceptor applied the worker table numbered ``seq``."""
    return _report(TABLE_ACK, name, generation, pid, {"seq": seq})


def decode_report(data: bytes) -> Report:
    """A child's report; ``VersionMismatch`` naming the child
    (``"worker-1.2 (pid 4242)"``) or ``WireError``."""
    message = _unpack(data, "report")
    try:
        message = _versioned_map(message, "report")
    except VersionMismatch as exc:
        child = (message.get("id"), message.get("gen"))
        raise VersionMismatch(exc.version, _reporter(message), child) from None
    try:
        kind, name, generation = message["t"], message["id"], message["gen"]
        pid, fields = message.get("pid", 0), message.get("f", {})
    except KeyError as exc:
        raise WireError(f"malformed report: no {exc}") from None
    if not isinstance(fields, dict):
        raise WireError("malformed report: fields not a map")
    return Report(kind, name, generation, pid, fields)


def _reporter(message: dict[str, Any]) -> str | None:
    name, generation, pid = message.get("id"), message.get("gen"), message.get("pid")
    if not isinstance(name, str):
        return None
    return f"{name}.{generation} (pid {pid})"


# -- events: supervisor -> children (PUB/SUB, by topic) ----------------------------------

WORKERS = "workers"  # the worker table, for the acceptor
_TOPIC_END = b" "  # ends the topic before the message: nng subscribes by prefix


class WorkerEntry(NamedTuple):
    """One worker in the table the acceptor places sockets by."""

    name: str
    generation: int
    handoff: str  # its SOCK_SEQPACKET path
    sockets: int = 0  # open, as of its last heartbeat
    received: int | None = None  # in its lifetime, as of its last heartbeat (None: no report yet)


class WorkerTable(NamedTuple):
    seq: int  # numbers the tables, so that the acceptor's acknowledgement names one
    workers: list[WorkerEntry]


def subscription(topic: bytes) -> bytes:
    """What to subscribe to for ``topic``: nng matches prefixes, so the end of
    the topic is included (a topic must not match a longer one it begins)."""
    return topic + _TOPIC_END


def _event(topic: bytes, kind: str, fields: Mapping[str, Any]) -> bytes:
    return topic + _TOPIC_END + msgpack.packb({"v": WIRE_VERSION, "t": kind, **fields})


def worker_table(seq: int, workers: Sequence[WorkerEntry]) -> bytes:
    """The worker table, published to the acceptor."""
    return _event(ipc.TOPIC_ACCEPTOR, WORKERS, {"seq": seq, "workers": [list(w) for w in workers]})


def decode_event(data: bytes) -> WorkerTable:
    """An event as a subscriber receives it (topic included); ``VersionMismatch``
    or ``WireError``."""
    _, _, rest = data.partition(_TOPIC_END)
    message = _versioned_map(_unpack(rest, "event"), "event")
    kind = message.get("t")
    try:
        if kind == WORKERS:
            return WorkerTable(message["seq"], [WorkerEntry(*w) for w in message["workers"]])
    except (KeyError, TypeError) as exc:
        raise WireError(f"malformed {kind} event: {exc}") from None
    raise WireError(f"unknown event {kind!r}")


# -- start-up settings: supervisor -> child (its one command-line argument) -----------


def encode_settings(settings: Mapping[str, Any]) -> str:
    """A child's settings as the JSON argument of ``python -m ROLE``, versioned."""
    return json.dumps({"v": WIRE_VERSION, **settings})


def decode_settings(arguments: Sequence[str]) -> dict[str, Any]:
    """The settings from a child's command-line arguments; ``VersionMismatch``
    (a supervisor of another install) or ``WireError`` (not started by one)."""
    if len(arguments) != 1:
        raise WireError("expected one argument, the settings its supervisor passes")
    try:
        settings = json.loads(arguments[0])
    except ValueError as exc:
        raise WireError(f"malformed start-up settings: {exc}") from None
    return _versioned_map(settings, "start-up settings")


# -- control: REQ/REP on the control socket -------------------------------------------------

ERROR_UNKNOWN_COMMAND = "unknown_command"
ERROR_BAD_REQUEST = "bad_request"
ERROR_FAILED = "failed"
ERROR_WIRE_VERSION = "wire_version"


class ControlReply(NamedTuple):
    """``ok`` and the command's ``result``, or the ``error`` code and ``message``."""

    ok: bool
    result: Any = None
    error: str | None = None
    message: str | None = None


def encode_request(command: Mapping[str, Any]) -> bytes:
    """``{"cmd": NAME, ...properties}``, versioned."""
    return msgpack.packb({**command, "v": WIRE_VERSION})


def decode_request(data: bytes) -> dict[str, Any]:
    """The request (a map with a str ``"cmd"``); ``VersionMismatch`` or ``WireError``."""
    request = _versioned_map(_unpack(data, "control request"), "control request")
    if not isinstance(request.get("cmd"), str):
        raise WireError("control request without a 'cmd'")
    return request


def encode_result(result: Any) -> bytes:
    return msgpack.packb({"v": WIRE_VERSION, "ok": True, "result": result})


def encode_error(code: str, message: str) -> bytes:
    return msgpack.packb({"v": WIRE_VERSION, "ok": False, "error": code, "message": message})


def decode_reply(data: bytes) -> ControlReply:
    """A reply; ``VersionMismatch`` or ``WireError``."""
    reply = _versioned_map(_unpack(data, "control reply"), "control reply")
    if reply.get("ok"):
        return ControlReply(True, reply.get("result"))
    return ControlReply(False, None, reply.get("error"), reply.get("message"))
