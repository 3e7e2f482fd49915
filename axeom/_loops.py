"""Which event loop application code runs on, and what a handler that awaited
the other one gets told.

Loop-neutral on purpose: the engine and the actor call :func:`wrong_loop_hint`
on their failure paths whatever runtime drives them, and the CLI checks
:func:`loop_unavailable` before any process starts. trio is looked up in
``sys.modules`` only, so importing this module never imports a loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from typing import get_args

from .config import LoopName

__all__ = [
    "DEFAULT_LOOP",
    "LOOPS",
    "loop_unavailable",
    "running_loop",
    "wrong_loop_hint",
]

LOOPS: tuple[str, ...] = get_args(LoopName)
DEFAULT_LOOP: LoopName = "trio"

# What asyncio raises when one of its primitives runs where no asyncio loop runs
# (asyncio.sleep, open_connection, timeout, wait_for, to_thread: get_running_loop).
_NO_ASYNCIO_LOOP = "no running event loop"
# asyncio.Event/Queue/Lock bind to the running loop lazily; with none, they
# fail on the None they bound to.
_ASYNCIO_UNBOUND = "'NoneType' object has no attribute 'create_future'"
# trio's answer to an asyncio Future (or asyncio.sleep(0)'s bare yield).
_TRIO_FOREIGN_YIELD = "trio.run received unrecognized yield message"
# What trio raises when one of its primitives runs outside trio.run.
_NO_TRIO = "must be called from async context"
# What an asyncio task says when a trio primitive yields to it.
_ASYNCIO_FOREIGN_YIELD = "Task got bad yield: <class 'trio."

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def running_loop() -> LoopName | None:
    """The loop running the caller: ``uvloop``, ``asyncio``, ``trio``, or None.

    Only called on a failure path (it looks at ``sys.modules`` and the running
    loop's class), never per message.
    """
    loop = asyncio._get_running_loop()
    if loop is not None:
        return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return None
        return "trio"
    return None


def wrong_loop_hint(exc: BaseException) -> str | None:
    """If ``exc`` is what awaiting the other loop's primitive raises, one
    sentence naming the loop this process runs on and the option to change;
    else None (an ordinary failure: logged as it always was).

    Narrow on purpose (the exact messages these cases produce, checked against
    the loops, and where the raise happened), so that an app's own
    ``RuntimeError`` is never dressed up as a loop mistake.
    """
    awaited = _awaited_library(exc)
    if awaited is None:
        return None
    running = running_loop() or ("trio" if awaited == "asyncio" else "asyncio")
    if (awaited == "asyncio") == (running != "trio"):
        return None  # the failure is not about the loop this code runs on
    wanted = "asyncio" if awaited == "asyncio" else "trio"
    return (
        f"it awaited {'an' if awaited == 'asyncio' else 'a'} {awaited} object, "
        f"but this server runs on {running}; "
        f'start it with --loop {wanted} (or [server] loop = "{wanted}")'
    )


def _awaited_library(exc: BaseException) -> str | None:
    """``asyncio`` or ``trio`` if ``exc`` is that library failing outside its
    loop, else None."""
    message = str(exc)
    if isinstance(exc, RuntimeError):
        if message == _NO_ASYNCIO_LOOP:
            return "asyncio"
        if message == _NO_TRIO and _raised_in(exc, "trio"):
            return "trio"
        if message.startswith(_ASYNCIO_FOREIGN_YIELD):
            return "trio"
    elif (isinstance(exc, TypeError) and message.startswith(_TRIO_FOREIGN_YIELD)) or (
        isinstance(exc, AttributeError)
        and message == _ASYNCIO_UNBOUND
        and _raised_in(exc, "asyncio")
    ):
        return "asyncio"
    return None


def _raised_in(exc: BaseException, library: str) -> bool:
    """True if the innermost frame of ``exc``'s traceback is ``library``'s code."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    filename = frames[-1].filename
    if library == "asyncio":
        return filename.startswith(_ASYNCIO_DIR)
    return f"{os.sep}{library}{os.sep}" in filename


def loop_unavailable(name: str) -> str | None:
    """Why the loop ``name`` cannot run in this install (one line), or None.

    Only uvloop is optional (the ``axeom[uvloop]`` extra). It is imported, not
    just looked for: an install whose uvloop is present but broken (built for
    another Python) must fail here, in one line, not in every child.
    """
    if name != "uvloop":
        return None
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "--loop uvloop needs the uvloop package: pip install 'axeom[uvloop]'"
    return None
