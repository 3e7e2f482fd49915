"""The ``axeom`` command line: a thin shim over ``axeom.serve``.

Mistakes a user can make (a bad import string, an app that fails to load, a
port in use) end with one readable line and a non-zero status, never a
traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ._app import Axeom
from ._importer import ImportFromStringError, import_from_string

__all__ = ["main"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="axeom", prog_name="axeom")
def main() -> None:
    """Axeom: WebSocket apps on a multi-process, actor-style runtime."""


@main.command()
@click.argument("app", metavar="IMPORT")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="AXEOM_HOST",
    help="Address to listen on.",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="AXEOM_PORT",
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    envvar="AXEOM_LOG_LEVEL",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Logging threshold.",
)
def run(app: str, host: str, port: int, log_level: str) -> None:
    """Serve the app named by IMPORT (module:attr or path/to/file.py:attr)."""
    _configure_logging(log_level)
    application = load_app(app)
    import trio

    from ._native._serve import bind_listener, serve_listener

    try:
        listener = bind_listener(host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None

    async def main_task() -> None:
        async with trio.open_nursery() as nursery:
            bound: Any = await nursery.start(serve_listener, application, listener)
            click.echo(f"Axeom listening on ws://{_format_host(bound[0])}:{bound[1]}")
            sys.stdout.flush()

    with listener:
        try:
            trio.run(main_task)
        except KeyboardInterrupt:
            pass


def load_app(import_str: str) -> Axeom:
    """Import the app or exit with status 1 and one line saying why."""
    try:
        application = import_from_string(import_str)
    except ImportFromStringError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    if not isinstance(application, Axeom):
        click.echo(
            f'Error: "{import_str}" is a {type(application).__name__}, not an Axeom app.', err=True
        )
        sys.exit(1)
    return application


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
