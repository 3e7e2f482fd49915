"""The one bounded outbox of the batched links (a worker's pub/sub link to the hub,
the hub's link to the Redis bridge): bounded, counted, logged once per episode,
barriers never dropped."""

from __future__ import annotations

import logging

import pytest

from axeom.outbox import MAX_OUTGOING, Outbox
from axeom.pubsub import PubSub
from axeom_supervisor._bridge_link import BridgeLink

logger = logging.getLogger("axeom.test.outbox")


def outbox(wakes: list[int]) -> Outbox:
    return Outbox(
        lambda: wakes.append(1),
        logger,
        dropping="link not keeping up",
        caught_up="link caught up; %d dropped",
    )


def test_wakes_the_sender_only_when_the_first_operation_arrives() -> None:
    """One wake per batch, not per operation: the sender takes everything at once."""
    wakes: list[int] = []
    box = outbox(wakes)
    box.put(["pub", "t", "1"])
    box.put(["pub", "t", "2"])
    assert wakes == [1]
    assert box.take() == [["pub", "t", "1"], ["pub", "t", "2"]]
    box.put_always(["sync", 1])
    assert wakes == [1, 1] and len(box) == 1


def test_full_outbox_drops_counts_and_logs_once_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past MAX_OUTGOING new operations are dropped and counted; one line when the
    episode starts, one with the number when the owner says the link caught up."""
    box = outbox([])
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for number in range(MAX_OUTGOING + 7):
            box.put(["pub", "t", number])
        assert len(box) == MAX_OUTGOING
        assert box.dropped == 7
        assert box.take(10)[0] == ["pub", "t", 0]  # oldest first; the newest were dropped
        box.caught_up()
        box.caught_up()  # nothing dropped since: no second line
    assert [r.getMessage() for r in caplog.records] == [
        "link not keeping up",
        "link caught up; 7 dropped",
    ]


def test_barriers_are_never_dropped() -> None:
    """A full outbox still takes a ``sync``: a caller waits for its answer."""
    box = outbox([])
    for _ in range(MAX_OUTGOING):
        box.put(["pub", "t", "x"])
    box.put(["pub", "t", "dropped"])
    box.put_always(["sync", 1])
    taken = box.take()
    assert len(taken) == MAX_OUTGOING + 1 and taken[-1] == ["sync", 1]
    assert box.dropped == 1 and len(box) == 0


def test_take_with_a_limit_leaves_the_rest_in_order() -> None:
    box = outbox([])
    for number in range(5):
        box.put([number])
    assert box.take(2) == [[0], [1]]
    assert box.take(10) == [[2], [3], [4]]
    assert box.take() == []


def test_send_failures_count_in_the_same_episode(caplog: pytest.LogCaptureFixture) -> None:
    """A send that timed out drops its whole batch: counted with the overflows,
    and no second "not keeping up" line while the episode lasts."""
    box = outbox([])
    with caplog.at_level(logging.WARNING, logger=logger.name):
        box.drop(40)
        box.drop(2)
        box.caught_up()
    assert box.dropped == 42
    assert [r.getMessage() for r in caplog.records] == [
        "link not keeping up",
        "link caught up; 42 dropped",
    ]


def test_both_links_use_the_one_outbox() -> None:
    """The worker's pub/sub queue and the hub's queue to the Redis bridge are the
    same bounded class with the same bound (one MAX_OUTGOING)."""
    assert isinstance(PubSub().outgoing, Outbox)
    assert isinstance(BridgeLink().outgoing, Outbox)


async def test_bridge_link_bound_is_max_outgoing() -> None:
    """The hub's queue to the Redis bridge holds MAX_OUTGOING, then counts drops,
    and still takes barriers."""
    link = BridgeLink()
    for _ in range(MAX_OUTGOING + 3):
        link.forward(["pub", "t", "x"])
    link.sync("worker-1.1", 1)
    assert link.dropped == 3
    assert len(link.outgoing) == MAX_OUTGOING + 1
