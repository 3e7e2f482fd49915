"""Where the processes of one ``axeom run`` tree meet: addresses, paths, topics.

Children PUSH reports (ready, heartbeat with load figures) to the
supervisor's PULL; the supervisor PUBlishes events to children, each
prefixed with a topic so a child subscribes only to what concerns it;
``axeom status`` and friends use REQ/REP on the control socket; the
acceptor hands sockets to workers over Unix SOCK_SEQPACKET sockets. What
travels on each of them is in ``axeom.wire``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

__all__ = ["TOPIC_ACCEPTOR", "RunPaths", "control_address"]

TOPIC_ACCEPTOR = b"acceptor"  # events for the acceptor (the worker table)


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
