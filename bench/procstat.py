"""Read a server's resource use from /proc, summed over its whole process tree.

Multi-process servers (``axeom --workers N``) keep their connections in child processes,
so every figure is taken over the process and all its descendants, not just the parent.
"""

import os
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` and all its live descendants (via /proc/PID/task/*/children)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        if not Path(f"/proc/{current}").exists():
            continue
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue  # the thread exited while we listed it
    return found


def rss_kb(pids: list[int]) -> int:
    """Return the summed VmRSS of ``pids`` in KiB (processes that vanished count as 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    """Return the summed user+system CPU time of ``pids`` in seconds."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLK_TCK


def fd_count(pids: list[int]) -> int:
    """Return the number of open file descriptors of ``pids`` (a proxy for open sockets)."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def core_seconds(cpu: int) -> tuple[float, float]:
    """Return (task time, interrupt time) core ``cpu`` spent since boot, in seconds.

    Task time (user, system, plus steal by the hypervisor), compared with what the server and
    the load generator used on their cores, exposes other load sharing those cores, which
    silently lowers the figures. Interrupt time is kept apart: it is mostly the kernel
    moving the benchmark's own loopback packets (softirq), charged to no process.
    """
    prefix = f"cpu{cpu} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
            return (user + nice + system + steal) / _CLK_TCK, (irq + softirq) / _CLK_TCK
    raise ValueError(f"no CPU {cpu} in /proc/stat")
