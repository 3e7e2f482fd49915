"""Messages between the processes of one ``axeom run`` tree, over nng.

Every message is one msgpack map with a ``"t"`` (type) key. Children PUSH
reports (ready, heartbeat with load figures) to the supervisor's PULL; the
supervisor PUBlishes events to children, each prefixed with a topic so a
child subscribes only to what concerns it; ``axeom status`` and friends use
REQ/REP on the control socket. Nothing here sits on a per-message path:
heartbeats carry load figures in bulk once per interval.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = ["RunPaths", "control_address", "decode", "encode", "split_topic", "topic_message"]

TOPIC_ALL = b"all"
TOPIC_ACCEPTOR = b"acceptor"


def encode(kind: str, **fields: Any) -> bytes:
    return msgpack.packb({"t": kind, **fields})


def decode(data: bytes) -> dict[str, Any]:
    message = msgpack.unpackb(data)
    if not isinstance(message, dict) or "t" not in message:
        raise ValueError("not an axeom IPC message")
    return message


def topic_message(topic: bytes, kind: str, **fields: Any) -> bytes:
    """A PUB message: topic, a space, then the encoded message."""
    return topic + b" " + encode(kind, **fields)


def subscription(topic: bytes) -> bytes:
    """What to subscribe to for ``topic``: nng matches prefixes, so the
    separator is included (``w:worker-1.1`` must not match ``w:worker-1.10``)."""
    return topic + b" "


def split_topic(data: bytes) -> tuple[bytes, dict[str, Any]]:
    topic, _, rest = data.partition(b" ")
    return topic, decode(rest)


def worker_topic(worker_id: str, generation: int) -> bytes:
    """One worker process: a name is reused by its replacement, a generation is not."""
    return f"w:{worker_id}.{generation}".encode()


def control_address(port: int) -> str:
    """Where the supervisor of the server on ``port`` answers control commands."""
    return f"ipc://{os.path.join(tempfile.gettempdir(), f'axeom-{port}.ctl')}"


@dataclass(frozen=True)
class RunPaths:
    """The private directory of one process tree and the addresses inside it."""

    run_dir: str

    @property
    def reports(self) -> str:
        return f"ipc://{self.run_dir}/reports.ipc"

    @property
    def events(self) -> str:
        return f"ipc://{self.run_dir}/events.ipc"

    @property
    def hub(self) -> str:
        """Where the pub/sub hub pulls batches from workers."""
        return f"ipc://{self.run_dir}/hub.ipc"

    @property
    def bridge(self) -> str:
        """Where the Redis bridge process pulls operations from the hub."""
        return f"ipc://{self.run_dir}/bridge.ipc"

    def worker_pubsub(self, worker_id: str, generation: int) -> str:
        """Where one worker pulls its pub/sub deliveries."""
        return f"ipc://{self.run_dir}/{worker_id}.{generation}.pubsub.ipc"

    def handoff(self, worker_id: str, generation: int) -> str:
        """Unix SOCK_SEQPACKET path where a worker receives sockets."""
        return os.path.join(self.run_dir, f"{worker_id}.{generation}.sock")
