"""The performance targets of the runtimes (the trio readiness loop; the asyncio and uvloop
runtimes), checked against one run.

Each target is a ratio between an Axeom server and a peer measured in the same run on the
same core (ratios hold across machines where absolute figures do not), or, for idle memory,
between this run and an earlier results file of the same harness (``--reference``): the
earlier code measured on this machine. Fan-out is measured by ``bench.fanout``, which prints
its own ratio; the table only points to it.
"""

from dataclasses import dataclass
from typing import Any

from bench.scenarios import TESTS, Result
from bench.targets import BASELINE, FAST_PEER

REFERENCE = "reference"  # ``versus`` of a target checked against the --reference file
PLAIN = ("axeom", "axeom-w1")  # plain-function handler, --workers 0 and 1
COROUTINE = ("axeom-async", "axeom-async-w1")  # coroutine handler, --workers 0 and 1
THROUGH_ACCEPTOR = ("axeom-w1", "axeom-async-w1")
EVERY_AXEOM = (*PLAIN, *COROUTINE)
# The asyncio runtime (--loop asyncio|uvloop), one process; the tree through its acceptor.
UVLOOP_PLAIN = ("axeom-uvloop",)
UVLOOP_HANDSHAKES = ("axeom-uvloop", "axeom-uvloop-w1")
ASYNCIO_COROUTINE = ("axeom-uvloop-async", "axeom-asyncio-async")
ASYNCIO_PLAIN = ("axeom-asyncio",)
TYPED_MSGSPEC = ("axeom-typed-msgspec",)  # body typed by a msgspec Struct
UNTYPED = "axeom"  # the same echo without a type: JSON text in, the same text back
# Idle memory "no worse than before": RSS per connection repeats within about 0.3 KiB of
# ~9 KiB between runs, so allow 5% before calling a change a regression.
MEMORY_SLACK = 0.05


@dataclass(frozen=True)
class Target:
    """One line of the targets: ``test`` on each of ``servers`` against ``versus``."""

    label: str
    test: str
    servers: tuple[str, ...]
    versus: str  # a peer's server name, or REFERENCE
    bound: float  # ratio needed: at least (higher is better), at most (memory)


TARGETS: tuple[Target, ...] = (
    Target("closed-loop echo, plain function", "echo", PLAIN, FAST_PEER, 1.3),
    Target("pipelined x16, plain function", "pipelined", PLAIN, FAST_PEER, 2.0),
    Target("closed-loop echo, coroutine", "echo", COROUTINE, FAST_PEER, 0.9),
    Target("handshakes through the acceptor", "handshake", THROUGH_ACCEPTOR, BASELINE, 1.0),
    Target("1 MiB echo", "large", EVERY_AXEOM, BASELINE, 1.0),
    Target("idle memory per connection", "memory", EVERY_AXEOM, REFERENCE, 1.0 + MEMORY_SLACK),
    Target("uvloop closed-loop echo, plain function", "echo", UVLOOP_PLAIN, FAST_PEER, 1.3),
    Target("uvloop pipelined x16, plain function", "pipelined", UVLOOP_PLAIN, FAST_PEER, 1.5),
    Target("uvloop handshakes", "handshake", UVLOOP_HANDSHAKES, FAST_PEER, 1.0),
    Target("asyncio/uvloop closed-loop echo, coroutine", "echo", ASYNCIO_COROUTINE, FAST_PEER, 1.0),
    Target("plain asyncio closed-loop echo", "echo", ASYNCIO_PLAIN, FAST_PEER, 1.0),
    # Validation is cheap enough to leave on: a msgspec-typed echo keeps 90% of untyped.
    Target("typed echo (msgspec) vs untyped", "json-echo", TYPED_MSGSPEC, UNTYPED, 0.9),
)
FANOUT_NOTE = (
    "fan-out: no worse than the last release -> python -m bench.fanout "
    "(prints its ratios; --reference compares with an earlier run)"
)

Results = dict[str, dict[str, Result]]
Reference = dict[str, dict[str, float | None]]  # server -> test -> value, from a results file


def load_reference(document: dict[str, Any]) -> Reference:
    """Return the figures of an earlier ``bench.run`` results file, by server and test."""
    return {
        server: {test: result.get("value") for test, result in tests.items()}
        for server, tests in document.get("results", {}).items()
    }


def _against(target: Target, server: str, results: Results, reference: Reference) -> float | None:
    """Return the figure ``server``'s is compared with for ``target`` (None: not measured)."""
    if target.versus == REFERENCE:
        return reference.get(server, {}).get(target.test)
    peer = results.get(target.versus, {}).get(target.test)
    return None if peer is None else peer.value


@dataclass(frozen=True)
class Check:
    """One target on one server: the ratio found and whether it meets the bound."""

    target: Target
    server: str
    result: Result | None  # None: the server or the test was not run
    ratio: float | None  # None: nothing to compare with (see ``verdict``)
    verdict: str  # "pass", "FAIL", or why there is none

    @property
    def versus(self) -> str:
        """Return what the ratio is taken against, as the table says it."""
        return "earlier run" if self.target.versus == REFERENCE else self.target.versus

    @property
    def needed(self) -> str:
        """Return the bound as the table says it (``>= 1.30x``; ``<=`` for memory)."""
        higher = TESTS[self.target.test].higher_is_better
        return f"{'>=' if higher else '<='} {self.target.bound:.2f}x"


def check(target: Target, server: str, results: Results, reference: Reference) -> Check:
    """Compare ``server``'s figure for ``target`` with what it is measured against."""
    result = results.get(server, {}).get(target.test)
    if result is None or result.value is None:
        return Check(target, server, result, None, "not run" if result is None else "failed")
    other = _against(target, server, results, reference)
    if not other:
        why = "no --reference" if target.versus == REFERENCE else f"no {target.versus} figure"
        return Check(target, server, result, None, why)
    ratio = result.value / other
    higher = TESTS[target.test].higher_is_better
    met = ratio >= target.bound if higher else ratio <= target.bound
    return Check(target, server, result, ratio, "pass" if met else "FAIL")


def checks(results: Results, reference: Reference, tests: list[str]) -> list[Check]:
    """Every target of ``tests`` on every server of it this run measured, in the targets' order."""
    return [
        check(target, server, results, reference)
        for target in TARGETS
        if target.test in tests
        for server in target.servers
        if server in results
    ]
