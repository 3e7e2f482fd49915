"""Pub/sub and `app.send` on every runtime; with several workers, across them."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

from tests.behaviour._client import Target, one_process_each, pid_of
from tests.behaviour._runtimes import Runtime

# Messages one publisher sends in a row (text and binary alternate).
PUBLISHED = 20


async def test_publish_reaches_every_subscriber_on_every_process(
    target: Target, runtime: Runtime
) -> None:
    """Subscribers spread over every process get every message once, in
    publish order; the publisher (no `publish_to_self`) gets none of its own."""
    topic = uuid.uuid4().hex
    messages: list[str | bytes] = [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(PUBLISHED)]
    async with AsyncExitStack() as stack:
        groups = await one_process_each(stack, target, f"/room/{topic}", runtime.processes, 2)
        publisher, *subscribers = [ws for group in groups for ws in group]
        for message in messages:
            await publisher.send(message)
        for ws in subscribers:
            assert await ws.receive_many(PUBLISHED) == messages
        for ws in [publisher, *subscribers]:  # nothing more: next is the answer
            assert await pid_of(ws)


async def test_app_send_reaches_a_socket_in_another_process(
    target: Target, runtime: Runtime
) -> None:
    """`app.send(id, text)` from a socket in one process reaches the socket
    with that id wherever it lives; to an unknown id it is a no-op."""
    async with AsyncExitStack() as stack:
        groups = await one_process_each(stack, target, "/echo", runtime.processes)
        sender, receiver = groups[0][0], groups[-1][-1]
        if sender is receiver:  # one process: a second socket in it
            receiver = await stack.enter_async_context(target.connect("/echo"))
        answer = await receiver.ask("id")
        await sender.send(f"send nobody-{uuid.uuid4().hex} lost")
        await sender.send(f"send {answer[3:]} for your eyes only")
        assert await receiver.receive() == "for your eyes only"
        assert await sender.ask("sender still fine") == "sender still fine"
