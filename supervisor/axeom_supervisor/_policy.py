"""The restart policy: what the supervisor should do when a child process exits.

This is the decision half of a supervisor, kept free of processes, signals and clocks so that it
can be tested with plain numbers: the caller passes the current (monotonic) time in and acts on
the answer. It follows Erlang/OTP supervisors:

* restart types: *permanent* children are always restarted, *transient* ones only after an
  abnormal exit, *temporary* ones never;
* restart intensity: more than ``max_restarts`` restarts within ``max_seconds``, counted over all
  children, means the fault is not transient, so the supervisor gives up instead of looping;
* strategy: ``one_for_one`` or ``one_for_all`` (exposed, acted on by the supervisor);

plus what circus's flapping plugin adds for OS processes: an exponential, jittered delay before
restarting a child that keeps failing, which starts over once the child has stayed up a while.
"""

from __future__ import annotations

import random
import signal
from collections import deque
from dataclasses import dataclass

from axeom.config import RestartType, Strategy, SupervisorConfig
from axeom.process import (
    EXIT_APP_LOAD_FAILED,
    EXIT_CANNOT_START,
    EXIT_HUNG,
    EXIT_ON_START_FAILED,
)

__all__ = [
    "EXIT_APP_LOAD_FAILED",
    "Decision",
    "ExitStatus",
    "GiveUp",
    "Ignore",
    "Restart",
    "RestartPolicy",
]

# EXIT_APP_LOAD_FAILED (3): a child that could not import the application. Restarting cannot
# fix a typo in the app module, and a restart loop would bury the error under repeated copies
# of it, so the supervisor gives up at once on this code. Children exit with it from axeom.process.
# EXIT_ON_START_FAILED (5): an on_start function of the app raised; every process runs them, so
# a restart would fail the same way: given up at once too.

_RESTART_TYPES: tuple[RestartType, ...] = ("permanent", "transient", "temporary")


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a child process ended: exactly one of ``code`` and ``signal`` is set.

    Attributes:
        code: Exit code, if the process exited by itself.
        signal: Number of the signal that killed the process, if it was killed.
        requested: True if the supervisor asked the child to stop (shutdown, reload,
            ``one_for_all`` restart of the siblings); such exits are never restarted.
    """

    code: int | None = None
    signal: int | None = None
    requested: bool = False

    def __post_init__(self) -> None:
        if (self.code is None) == (self.signal is None):
            raise ValueError("ExitStatus needs exactly one of code and signal")

    @classmethod
    def from_returncode(cls, returncode: int, requested: bool = False) -> ExitStatus:
        """From ``subprocess``/``trio.Process`` ``returncode``: negative means killed by signal."""
        if returncode < 0:
            return cls(signal=-returncode, requested=requested)
        return cls(code=returncode, requested=requested)

    @property
    def normal(self) -> bool:
        """True for a clean exit (code 0), the only exit a transient child is not restarted for."""
        return self.code == 0

    @property
    def cannot_start(self) -> bool:
        """True if the child reported it cannot start (EXIT_CANNOT_START)."""
        return self.code == EXIT_CANNOT_START

    @property
    def on_start_failed(self) -> bool:
        """True if an ``on_start`` function of the app raised in the child."""
        return self.code == EXIT_ON_START_FAILED

    @property
    def app_load_failed(self) -> bool:
        """True if the child reported that the application could not be imported."""
        return self.code == EXIT_APP_LOAD_FAILED

    def describe(self) -> str:
        """A short phrase for log lines: ``exited with code 1``, ``killed by SIGKILL``."""
        if self.signal is not None:
            return f"killed by {_signal_name(self.signal)}"
        if self.code == 0:
            return "exited normally"
        if self.code == EXIT_HUNG:
            return f"ended by its watchdog, its sockets closed with 1011 (code {EXIT_HUNG})"
        return f"exited with code {self.code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True, slots=True)
class Restart:
    """Restart the child (or all children, under ``one_for_all``) ``after`` seconds from now."""

    after: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop every child and exit: restarting will not help. ``reason`` is one log line."""

    reason: str


@dataclass(frozen=True, slots=True)
class Ignore:
    """Do not restart this child (it is temporary, finished its job, or was asked to stop)."""

    reason: str


Decision = Restart | GiveUp | Ignore
"""What :meth:`RestartPolicy.on_exit` tells the supervisor to do."""


@dataclass(slots=True)
class _ChildState:
    started_at: float | None = None
    consecutive_exits: int = 0


class RestartPolicy:
    """Decides, for each child exit, whether to restart it, after what delay, or to give up.

    The policy is pure bookkeeping: it never reads a clock (``now`` is passed in, and must come
    from a monotonic clock) and never touches a process. One policy object belongs to one
    supervisor, since restart intensity is counted across all of its children, as in OTP.

    Args:
        supervisor: Strategy, intensity (``max_restarts`` within ``max_seconds``) and backoff.
        restart: Restart type of the children: ``"permanent"``, ``"transient"``, ``"temporary"``.
        rng: Source of the backoff jitter; pass ``random.Random(seed)`` for reproducible tests.
        stable_after: Seconds a child must stay up (from :meth:`on_started` to its exit) for its
            backoff to start over from ``backoff.initial``. Defaults to ``max_seconds``: a child
            that outlived a whole intensity window is no longer "flapping".
    """

    def __init__(
        self,
        supervisor: SupervisorConfig,
        restart: RestartType,
        *,
        rng: random.Random | None = None,
        stable_after: float | None = None,
    ) -> None:
        if restart not in _RESTART_TYPES:
            raise ValueError(f"restart must be one of {_RESTART_TYPES}, got {restart!r}")
        self._config = supervisor
        self._restart_type: RestartType = restart
        self._rng = rng if rng is not None else random.Random()
        self._stable_after = supervisor.max_seconds if stable_after is None else stable_after
        self._children: dict[str, _ChildState] = {}
        self._restarts: deque[tuple[float, str]] = deque()  # (time, child), oldest first

    @property
    def strategy(self) -> Strategy:
        """``one_for_one`` (restart the child that exited) or ``one_for_all`` (restart every
        worker; the supervisor applies it to workers only)."""
        return self._config.strategy

    @property
    def restart_type(self) -> RestartType:
        """The restart type this policy applies to every child."""
        return self._restart_type

    def on_started(self, now: float, child: str) -> None:
        """Record that ``child`` (re)started at ``now``, so a long uptime can reset its backoff."""
        self._state(child).started_at = now

    def forget(self, child: str) -> None:
        """Drop the per-child state of a child that is gone for good (e.g. scaled down)."""
        self._children.pop(child, None)

    def on_exit(self, now: float, child: str, status: ExitStatus) -> Decision:
        """Decide what to do about ``child`` having exited with ``status`` at time ``now``."""
        if status.requested:
            return Ignore(f"{child} {status.describe()} after being asked to stop: not restarted")
        if status.app_load_failed:
            return GiveUp(
                f"{child} exited with code {EXIT_APP_LOAD_FAILED}: the application failed to load"
                " (its log shows the import error): giving up without restarting"
            )
        if status.on_start_failed:
            return GiveUp(
                f"{child} exited with code {EXIT_ON_START_FAILED}: an on_start function of the"
                " application failed (its log shows the error): giving up without restarting"
            )
        if status.cannot_start:
            return GiveUp(
                f"{child} exited with code {EXIT_CANNOT_START}: it cannot start (its log says"
                " why): giving up without restarting"
            )
        if self._restart_type == "temporary":
            self.forget(child)
            return Ignore(f"{child} {status.describe()}: temporary children are not restarted")
        if self._restart_type == "transient" and status.normal:
            self.forget(child)
            return Ignore(
                f"{child} exited normally: transient children are only restarted on failure"
            )
        return self._restart_or_give_up(now, child, status)

    def _restart_or_give_up(self, now: float, child: str, status: ExitStatus) -> Decision:
        """Count the restart against the intensity window, then compute the child's backoff."""
        window = self._record_restart(now, child)
        if len(window) > self._config.max_restarts:
            return GiveUp(self._intensity_reason(window, child, status))
        exits = self._count_exit(now, child)
        after = self._delay(exits)
        return Restart(
            after,
            f"{child} {status.describe()}: restarting in {after:.2f}s"
            f" (consecutive exit {exits}; {len(window)} of at most"
            f" {self._config.max_restarts} restarts in {self._config.max_seconds:g}s)",
        )

    def _record_restart(self, now: float, child: str) -> deque[tuple[float, str]]:
        """Add a restart at ``now`` and drop those older than ``max_seconds`` (OTP keeps ``>=``)."""
        threshold = now - self._config.max_seconds
        while self._restarts and self._restarts[0][0] < threshold:
            self._restarts.popleft()
        self._restarts.append((now, child))
        return self._restarts

    def _intensity_reason(
        self, window: deque[tuple[float, str]], child: str, status: ExitStatus
    ) -> str:
        """One log line saying who exited how often, the limit, and how the last one ended."""
        count, seconds = len(window), f"{self._config.max_seconds:g}s"
        limit = f"(max_restarts={self._config.max_restarts}): giving up"
        times = "time" if count == 1 else "times"
        children = {name for _, name in window}
        if children == {child}:
            who, last = child, status.describe()
        else:
            who, last = f"{len(children)} children", f"{child} {status.describe()}"
        return f"{who} exited {count} {times} within {seconds} {limit}; last exit: {last}"

    def _count_exit(self, now: float, child: str) -> int:
        """Bump the child's consecutive-exit count, starting over if it had been up long enough."""
        state = self._state(child)
        if state.started_at is not None and now - state.started_at >= self._stable_after:
            state.consecutive_exits = 0
        state.started_at = None  # this run is over; on_started records the next one
        state.consecutive_exits += 1
        return state.consecutive_exits

    def _delay(self, exits: int) -> float:
        """``min(max, initial * multiplier ** (exits - 1))`` times a random ``1 ± jitter``."""
        backoff = self._config.backoff
        try:
            base = min(backoff.max, backoff.initial * backoff.multiplier ** (exits - 1))
        except OverflowError:
            base = backoff.max
        return base * (1 + self._rng.uniform(-backoff.jitter, backoff.jitter))

    def _state(self, child: str) -> _ChildState:
        return self._children.setdefault(child, _ChildState())
