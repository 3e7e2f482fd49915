"""Tests for the supervisor restart policy: restart types, intensity, backoff, app-load failure."""

from __future__ import annotations

import random
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from axeom.config import BackoffConfig, RestartType, SupervisorConfig
from axeom.process import EXIT_CANNOT_START
from axeom_supervisor._policy import (
    EXIT_APP_LOAD_FAILED,
    ExitStatus,
    GiveUp,
    Ignore,
    Restart,
    RestartPolicy,
)

CRASH = ExitStatus(code=1)
CLEAN = ExitStatus(code=0)
KILLED = ExitStatus(signal=signal.SIGKILL)


def make_policy(
    restart: RestartType = "permanent",
    *,
    max_restarts: int = 100,
    max_seconds: float = 30.0,
    initial: float = 0.1,
    maximum: float = 5.0,
    multiplier: float = 2.0,
    jitter: float = 0.0,
    strategy: str = "one_for_one",
    seed: int = 0,
) -> RestartPolicy:
    """A policy with no jitter and a generous intensity unless a test asks otherwise."""
    backoff = BackoffConfig(initial=initial, max=maximum, multiplier=multiplier, jitter=jitter)
    config = SupervisorConfig(
        strategy=strategy,  # type: ignore[arg-type]
        max_restarts=max_restarts,
        max_seconds=max_seconds,
        backoff=backoff,
    )
    return RestartPolicy(config, restart, rng=random.Random(seed))


def delays(policy: RestartPolicy, times: list[float], child: str = "worker-1") -> list[float]:
    """Crash ``child`` at each time and return the restart delays (all must be restarts)."""
    result = []
    for now in times:
        decision = policy.on_exit(now, child, CRASH)
        assert isinstance(decision, Restart), decision
        result.append(decision.after)
    return result


# ----------------------------------------------------------------------------- ExitStatus


def test_returncode_zero_and_positive_are_exit_codes() -> None:
    """Non-negative return codes are exit codes; only 0 is a normal exit."""
    assert ExitStatus.from_returncode(0) == ExitStatus(code=0)
    assert ExitStatus.from_returncode(0).normal
    assert ExitStatus.from_returncode(2) == ExitStatus(code=2)
    assert not ExitStatus.from_returncode(2).normal


def test_negative_returncode_is_a_signal() -> None:
    """``-9`` from subprocess means killed by SIGKILL, which is not a normal exit."""
    status = ExitStatus.from_returncode(-9, requested=True)
    assert status == ExitStatus(signal=9, requested=True)
    assert not status.normal
    assert status.describe() == "killed by SIGKILL"


def test_exit_descriptions() -> None:
    """Descriptions read naturally in log lines, including unknown signal numbers."""
    assert CLEAN.describe() == "exited normally"
    assert ExitStatus(code=70).describe() == "exited with code 70"
    assert ExitStatus(signal=200).describe() == "killed by signal 200"


@pytest.mark.parametrize("kwargs", [{}, {"code": 1, "signal": 9}])
def test_exit_status_needs_exactly_one_of_code_and_signal(kwargs: dict[str, int]) -> None:
    """An exit is either a code or a signal, never both or neither."""
    with pytest.raises(ValueError, match="exactly one of code and signal"):
        ExitStatus(**kwargs)


# ----------------------------------------------------------------------------- restart types


@pytest.mark.parametrize("status", [CRASH, CLEAN, KILLED])
def test_permanent_children_are_always_restarted(status: ExitStatus) -> None:
    """A permanent child is restarted whether it crashed, was killed or exited cleanly."""
    decision = make_policy("permanent").on_exit(0.0, "worker-1", status)
    assert decision == Restart(after=0.1, reason=decision.reason)
    assert decision.reason.startswith(f"worker-1 {status.describe()}: restarting in 0.10s")


@pytest.mark.parametrize("status", [CRASH, KILLED])
def test_transient_children_are_restarted_after_failures(status: ExitStatus) -> None:
    """A transient child that exits abnormally (code != 0 or signal) is restarted."""
    assert isinstance(make_policy("transient").on_exit(0.0, "worker-1", status), Restart)


def test_transient_child_exiting_normally_is_not_restarted() -> None:
    """A transient child that exits with code 0 has finished its job: Ignore."""
    decision = make_policy("transient").on_exit(0.0, "worker-1", CLEAN)
    assert decision == Ignore(
        "worker-1 exited normally: transient children are only restarted on failure"
    )


@pytest.mark.parametrize("status", [CRASH, CLEAN, KILLED])
def test_temporary_children_are_never_restarted(status: ExitStatus) -> None:
    """A temporary child is never restarted, however it ended."""
    decision = make_policy("temporary").on_exit(0.0, "worker-1", status)
    assert decision == Ignore(f"worker-1 {status.describe()}: temporary children are not restarted")


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
def test_requested_exits_are_not_restarted(restart: RestartType) -> None:
    """An exit the supervisor asked for (shutdown, reload) is never restarted."""
    status = ExitStatus.from_returncode(-signal.SIGTERM, requested=True)
    decision = make_policy(restart).on_exit(0.0, "worker-1", status)
    assert decision == Ignore("worker-1 killed by SIGTERM after being asked to stop: not restarted")


def test_ignored_exits_do_not_count_towards_intensity() -> None:
    """Requested stops, however many, do not use up the restart budget."""
    policy = make_policy(max_restarts=1)
    for now in range(10):
        policy.on_exit(float(now), "worker-1", ExitStatus(code=0, requested=True))
    assert isinstance(policy.on_exit(10.0, "worker-1", CRASH), Restart)


def test_unknown_restart_type_is_rejected() -> None:
    """A typo in the restart type fails at construction, not at the first crash."""
    with pytest.raises(ValueError, match="restart must be one of"):
        RestartPolicy(SupervisorConfig(), "sometimes")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- app load failure


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
def test_app_load_failure_gives_up_at_once(restart: RestartType) -> None:
    """Exit code 3 means the app cannot be imported: give up on the very first exit."""
    status = ExitStatus.from_returncode(EXIT_APP_LOAD_FAILED)
    decision = make_policy(restart).on_exit(0.0, "worker-2", status)
    assert isinstance(decision, GiveUp)
    assert decision.reason.startswith("worker-2 exited with code 3: the application failed to load")


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
def test_a_child_that_cannot_start_gives_up_at_once(restart: RestartType) -> None:
    """Exit code 4 (settings of another version, a missing package): no restart loop."""
    status = ExitStatus.from_returncode(EXIT_CANNOT_START)
    decision = make_policy(restart).on_exit(0.0, "bridge", status)
    assert isinstance(decision, GiveUp)
    assert decision.reason.startswith("bridge exited with code 4: it cannot start")


def test_app_load_failed_constant() -> None:
    """The exit code is 3, distinct from 0 (normal), 1 (generic error) and 2 (usage error)."""
    assert EXIT_APP_LOAD_FAILED == 3
    assert ExitStatus(code=3).app_load_failed
    assert not ExitStatus(code=1).app_load_failed


# ----------------------------------------------------------------------------- intensity


def test_giving_up_after_more_than_max_restarts() -> None:
    """With max_restarts=5, five restarts are allowed and the sixth exit gives up."""
    policy = make_policy(max_restarts=5, max_seconds=30.0)
    delays(policy, [0.0, 1.0, 2.0, 3.0, 4.0])
    decision = policy.on_exit(5.0, "worker-2", KILLED)
    assert isinstance(decision, GiveUp)
    # The five earlier exits were worker-1's, so the message counts children.
    assert decision.reason == (
        "2 children exited 6 times within 30s (max_restarts=5): giving up;"
        " last exit: worker-2 killed by SIGKILL"
    )


def test_give_up_reason_for_a_single_child() -> None:
    """When one child caused every restart, the reason names it and how it last ended."""
    policy = make_policy(max_restarts=5, max_seconds=30.0)
    delays(policy, [0.0, 1.0, 2.0, 3.0, 4.0], child="worker-2")
    decision = policy.on_exit(5.0, "worker-2", KILLED)
    assert decision == GiveUp(
        "worker-2 exited 6 times within 30s (max_restarts=5): giving up;"
        " last exit: killed by SIGKILL"
    )


def test_zero_max_restarts_makes_the_first_crash_fatal() -> None:
    """max_restarts=0 (as in OTP) allows no restart at all."""
    decision = make_policy(max_restarts=0, max_seconds=10.0).on_exit(0.0, "worker-1", CRASH)
    assert decision == GiveUp(
        "worker-1 exited 1 time within 10s (max_restarts=0): giving up;"
        " last exit: exited with code 1"
    )


def test_intensity_window_slides() -> None:
    """Restarts older than max_seconds fall out of the window; the boundary is inclusive (OTP)."""
    policy = make_policy(max_restarts=3, max_seconds=10.0)
    delays(policy, [0.0, 1.0, 2.0])
    # At 10.5 the restart at 0.0 is older than 10s: window = {1, 2, 10.5}, three restarts, fine.
    assert isinstance(policy.on_exit(10.5, "worker-1", CRASH), Restart)
    # At 11.0 the restart at 1.0 is exactly 10s old and still counts: four restarts, too many.
    assert isinstance(policy.on_exit(11.0, "worker-1", CRASH), GiveUp)


def test_slow_crashes_never_give_up() -> None:
    """A child crashing less often than max_restarts per max_seconds is restarted forever."""
    policy = make_policy(max_restarts=1, max_seconds=10.0)
    assert len(delays(policy, [20.0 * n for n in range(50)])) == 50


def test_intensity_is_shared_by_all_children() -> None:
    """Restarts of different children add up, as in an OTP supervisor."""
    policy = make_policy(max_restarts=2, max_seconds=10.0)
    assert isinstance(policy.on_exit(0.0, "worker-1", CRASH), Restart)
    assert isinstance(policy.on_exit(1.0, "worker-2", CRASH), Restart)
    assert isinstance(policy.on_exit(2.0, "worker-3", CRASH), GiveUp)


# ----------------------------------------------------------------------------- backoff


def test_backoff_grows_exponentially_and_is_capped() -> None:
    """Consecutive restarts wait initial * multiplier**n, never more than max (jitter 0)."""
    policy = make_policy(initial=0.1, maximum=1.0, multiplier=2.0)
    assert delays(policy, [float(n) for n in range(7)]) == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    )


def test_multiplier_one_gives_a_fixed_delay() -> None:
    """With multiplier 1 every restart waits exactly ``initial``."""
    policy = make_policy(initial=0.5, maximum=5.0, multiplier=1.0)
    assert delays(policy, [0.0, 1.0, 2.0, 3.0]) == [0.5, 0.5, 0.5, 0.5]


def test_huge_exponents_do_not_overflow() -> None:
    """After thousands of failures the delay is still the cap, not an OverflowError."""
    policy = make_policy(max_restarts=10_000, max_seconds=1.0, multiplier=10.0, maximum=3.0)
    assert delays(policy, [float(n) for n in range(2000)])[-1] == 3.0


def test_backoff_is_per_child() -> None:
    """One child's failures do not lengthen another child's first delay."""
    policy = make_policy(initial=0.1, multiplier=2.0)
    delays(policy, [0.0, 1.0, 2.0], child="worker-1")
    assert delays(policy, [3.0], child="worker-2") == [0.1]
    assert delays(policy, [4.0], child="worker-1") == pytest.approx([0.8])


def test_backoff_starts_over_after_a_stable_run() -> None:
    """A child that stayed up at least max_seconds is back to the initial delay."""
    policy = make_policy(max_seconds=30.0, initial=0.1, multiplier=2.0)
    delays(policy, [0.0, 1.0, 2.0])  # 0.1, 0.2, 0.4
    policy.on_started(3.0, "worker-1")
    assert delays(policy, [33.0]) == [0.1]


def test_backoff_keeps_growing_after_a_short_run() -> None:
    """A child that crashes again before max_seconds is still flapping: the delay grows."""
    policy = make_policy(max_seconds=30.0, initial=0.1, multiplier=2.0)
    delays(policy, [0.0, 1.0, 2.0])
    policy.on_started(3.0, "worker-1")
    assert delays(policy, [32.9]) == pytest.approx([0.8])


def test_stable_after_can_be_configured() -> None:
    """``stable_after`` overrides max_seconds as the uptime that resets the backoff."""
    config = SupervisorConfig(backoff=BackoffConfig(jitter=0.0))
    policy = RestartPolicy(config, "permanent", stable_after=5.0)
    delays(policy, [0.0, 1.0])
    policy.on_started(2.0, "worker-1")
    assert delays(policy, [7.0]) == [0.1]


def test_forget_drops_the_child_history() -> None:
    """After forget(), a child with the same name starts with the initial delay."""
    policy = make_policy()
    delays(policy, [0.0, 1.0, 2.0])
    policy.forget("worker-1")
    assert delays(policy, [3.0]) == [0.1]


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    failures=st.integers(min_value=1, max_value=12),
)
def test_jitter_stays_within_bounds(seed: int, jitter: float, failures: int) -> None:
    """Each delay is within ``base * (1 ± jitter)`` of the un-jittered backoff."""
    policy = make_policy(jitter=jitter, initial=0.1, maximum=5.0, multiplier=2.0, seed=seed)
    for n, after in enumerate(delays(policy, [float(t) for t in range(failures)]), start=1):
        base = min(5.0, 0.1 * 2.0 ** (n - 1))
        assert base * (1 - jitter) - 1e-12 <= after <= base * (1 + jitter) + 1e-12


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    """The same seed gives the same delays, and jitter actually spreads them."""
    times = [float(t) for t in range(20)]
    first = delays(make_policy(jitter=0.5, seed=7), times)
    second = delays(make_policy(jitter=0.5, seed=7), times)
    assert first == second
    other = delays(make_policy(jitter=0.5, seed=8), times)
    assert first != other
    assert len({round(after, 9) for after in first[6:]}) > 1  # capped delays still differ


# ----------------------------------------------------------------------------- strategy


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all"])
def test_strategy_is_exposed(strategy: str) -> None:
    """The policy reports the configured strategy so the supervisor can act on it."""
    assert make_policy(strategy=strategy).strategy == strategy


def test_restart_type_is_exposed() -> None:
    """The restart type given at construction is readable back."""
    assert make_policy("transient").restart_type == "transient"
