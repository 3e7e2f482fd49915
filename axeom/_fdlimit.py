"""Raise this process's descriptor limit as far as it may go, and say so.

Every open WebSocket is a descriptor, and the default soft limit of many
systems (1,024) is far below what a server holds; the hard limit is what
the operator allowed. Each process of a tree raises its own limit at start
(children inherit the raised figure, but a process started another way,
or by an older supervisor, must not depend on that).
"""

from __future__ import annotations

import logging

__all__ = ["raise_fd_limit"]

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None  # type: ignore[assignment]


def raise_fd_limit(logger: logging.Logger) -> int | None:
    """Set the soft ``RLIMIT_NOFILE`` to the hard limit; log one info line
    with the figure in force and return it (None where there is no such limit)."""
    if resource is None:  # pragma: no cover
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            # An "unlimited" hard limit is refused on some systems: keep the soft one.
            logger.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, exc)
            return soft
        logger.info("file descriptor limit raised to %d (soft limit was %d)", hard, soft)
    else:
        logger.info("file descriptor limit: %d", hard)
    return hard
