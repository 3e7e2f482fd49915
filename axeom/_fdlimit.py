"""Raise this process's descriptor limit as far as it may go, and say so.

Every open WebSocket is a descriptor, and the default soft limit of many
systems (1,024) is far below what a server holds; the hard limit is what
the operator allowed. Each process of a tree raises its own limit at start
(children inherit the raised figure, but a process started another way,
or by an older supervisor, must not depend on that).
"""

from __future__ import annotations

__all__ = ["raise_fd_limit"]

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None  # type: ignore[assignment]


def raise_fd_limit() -> str:
    """Set the soft ``RLIMIT_NOFILE`` to the hard limit; returns the line to
    log (info level) with the figure in force."""
    if resource is None:  # pragma: no cover
        return "file descriptor limit: not applicable"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == soft:
        return f"file descriptor limit: {hard}"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        # An "unlimited" hard limit is refused on some systems: keep the soft one.
        return f"file descriptor limit: {soft} (cannot raise it to {hard}: {exc})"
    return f"file descriptor limit raised to {hard} (soft limit was {soft})"
