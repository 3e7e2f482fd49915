"""The supervisor's control commands: one table, each command documenting its wire message."""

from __future__ import annotations

import pytest

from axeom import wire
from axeom_supervisor import _control


@pytest.mark.parametrize("name", sorted(_control.COMMANDS))
def test_each_command_documents_its_wire_message(name: str) -> None:
    """A command's docstring opens with the request it answers (circus style)."""
    doc = _control.COMMANDS[name].__doc__ or ""
    assert doc.startswith(f'``{{"cmd": "{name}"'), doc


def test_the_table_is_what_the_cli_and_axeom_control_use() -> None:
    """status, ping, reload and publish: what ``axeom status``, ``axeom publish`` and
    ``axeom.control`` send."""
    assert set(_control.COMMANDS) == {"status", "ping", "reload", "publish"}


async def test_a_bad_publish_is_an_error_reply_not_a_crash() -> None:
    """A publish without a topic is refused in the reply envelope."""
    request = wire.encode_request({"cmd": "publish", "data": "x"})
    reply = wire.decode_reply(await _control.handle_request(None, request))  # type: ignore[arg-type]
    assert reply.ok is False and reply.error == wire.ERROR_FAILED
    assert "publish needs 'topic'" in (reply.message or "")
