"""The worker process of ``axeom run --workers N``: receives accepted sockets
from the acceptor and runs each as an actor, exactly as ``--workers 0`` does."""

from ._worker import WorkerSettings, run_worker

__all__ = ["WorkerSettings", "run_worker"]
