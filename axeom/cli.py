"""The ``axeom`` command line: a thin shim over one validated ``Config``.

``axeom run`` serves in this process (``--workers 0``) or execs the
supervisor (``--workers N``), which then is the main process of the tree.
Mistakes a user can make (a bad import string, an app that fails to load,
a bad config key, a port in use) end with one readable line and a non-zero
status, never a traceback. Every option also reads ``AXEOM_<NAME>``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import click

from ._fdlimit import raise_fd_limit
from ._importer import APP_DIR_ENV, ImportFromStringError, add_app_dir
from ._loops import LOOPS, loop_unavailable
from .config import OVERRIDES_SOURCE, Config, ConfigError, ServerConfig, WorkerPolicyConfig
from .logs import LOG_FORMATS, LogSettings, announce
from .process import (
    STOP_SIGNALS,
    close_code_for,
    configure_logging,
    exit_if_on_start_failed,
    exit_loop_unavailable,
    load_app_or_exit,
    serve_with_lifespan,
)

__all__ = ["main"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_DEFAULTS = ServerConfig()
_DEFAULTS_WORKERS = WorkerPolicyConfig()


class _EnvOption(click.Option):
    """An option whose errors name ``AXEOM_<NAME>`` when that is where the value came from.

    ``AXEOM_WORKERS=abc`` must not be reported as a bad ``--workers``: the user never typed
    that flag and would look for it on the command line.
    """

    def consume_value(self, ctx: click.Context, opts: Any) -> Any:
        value, source = super().consume_value(ctx, opts)
        ctx.meta[self._source_key] = source
        return value, source

    def get_error_hint(self, ctx: click.Context | None) -> str:
        hint = super().get_error_hint(ctx)
        from_env = ctx is not None and (
            ctx.meta.get(self._source_key) is click.core.ParameterSource.ENVIRONMENT
        )
        if from_env and isinstance(self.envvar, str):
            return f"{self.envvar} (environment variable for {hint})"
        return hint

    @property
    def _source_key(self) -> str:
        return f"axeom.source.{self.name}"


_option = functools.partial(click.option, cls=_EnvOption)


class _ConfigProblem(click.ClickException):
    """A bad configuration: the one line of the ``ConfigError`` (file, line, key)
    and exit status 2, like a usage error but without the usage text, which
    is about the command line and would only hide the line that matters."""

    exit_code = 2


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "AXEOM"}
)
@click.version_option(package_name="axeom", prog_name="axeom")
def main() -> None:
    """Axeom: WebSocket apps on a multi-process, actor-style runtime."""


# Options default to None ("not given") so that a config file can set them;
# the effective defaults are shown in the help text.
@main.command()
@click.argument("app", metavar="IMPORT")
@_option("--host", envvar="AXEOM_HOST", help=f"Address to listen on.  [default: {_DEFAULTS.host}]")
@_option(
    "--port",
    type=click.IntRange(0, 65535),
    envvar="AXEOM_PORT",
    help=f"Port to listen on; 0 picks a free one.  [default: {_DEFAULTS.port}]",
)
@_option(
    "--workers",
    type=click.IntRange(0),
    envvar="AXEOM_WORKERS",
    help="Worker processes; 0 serves from this one process (development).  "
    f"[default: {_DEFAULTS.workers}]",
)
@_option(
    "--loop",
    type=click.Choice(LOOPS, case_sensitive=False),
    envvar="AXEOM_LOOP",
    help="Event loop the app's handlers, hooks and lifespan functions run on "
    "(in every process that runs them).  "
    f"[default: {_DEFAULTS.loop}]",
)
@_option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="AXEOM_CONFIG",
    help="TOML file with [server], [supervisor] and [workers] tables.",
)
@_option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    envvar="AXEOM_LOG_LEVEL",
    help=f"Logging threshold.  [default: {_DEFAULTS.log_level}]",
)
@_option(
    "--graceful-timeout",
    type=click.FloatRange(min=0, min_open=True),
    envvar="AXEOM_GRACEFUL_TIMEOUT",
    help="Seconds workers get to close their sockets on SIGTERM.  "
    f"[default: {_DEFAULTS.graceful_timeout:g}]",
)
@_option(
    "--pubsub",
    envvar="AXEOM_PUBSUB",
    help="redis://HOST:PORT/DB: bridge pub/sub to every node using this Redis.",
)
@_option(
    "--forwarded-allow-ips",
    envvar="AXEOM_FORWARDED_ALLOW_IPS",
    help="Comma-separated proxy addresses or CIDR networks (* for any peer) whose "
    "X-Forwarded-For / Forwarded headers name the client.  [default: none]",
)
@_option(
    "--reload",
    is_flag=True,
    default=None,
    envvar="AXEOM_RELOAD",
    help="Development: restart the processes that run the app when a .py file in its "
    "folder (or a --reload-dir) changes; open sockets get 1012.  [default: off]",
)
@_option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    envvar="AXEOM_RELOAD_DIR",
    help="Another folder to watch with --reload (repeatable; the environment variable "
    "takes several, separated by spaces).",
)
@_option(
    "--log-format",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    envvar="AXEOM_LOG_FORMAT",
    help="text, or json: one object per line (time, level, process, socket id, route...).  "
    f"[default: {_DEFAULTS.log_format}]",
)
@_option(
    "--log-config",
    type=click.Path(dir_okay=False),
    envvar="AXEOM_LOG_CONFIG",
    help="Logging config file for every process: .json/.yaml (dictConfig) or .ini (fileConfig).",
)
@_option(
    "--access-log/--no-access-log",
    default=None,
    envvar="AXEOM_ACCESS_LOG",
    help="One line per request head answered (logger axeom.access).  [default: on]",
)
@_option(
    "--block-warning",
    type=click.FloatRange(min=0),
    envvar="AXEOM_BLOCK_WARNING",
    help="Seconds a handler may hold the event loop before its route, socket and stack "
    f"are logged; 0 turns it off.  [default: {_DEFAULTS_WORKERS.block_warning:g}]",
)
@_option(
    "--app-dir",
    default=".",
    envvar=APP_DIR_ENV,
    help="Folder put first on the import path, in every process.  [default: .]",
)
@_option(
    "--ssl-certfile",
    type=click.Path(dir_okay=False),
    envvar="AXEOM_SSL_CERTFILE",
    help="PEM certificate chain: serve TLS only (wss://).",
)
@_option(
    "--ssl-keyfile",
    type=click.Path(dir_okay=False),
    envvar="AXEOM_SSL_KEYFILE",
    help="PEM private key of the certificate (if not in --ssl-certfile).",
)
@_option(
    "--ssl-keyfile-password",
    envvar="AXEOM_SSL_KEYFILE_PASSWORD",
    help="Password of an encrypted --ssl-keyfile.",
)
@_option(
    "--ssl-ca-certs",
    type=click.Path(dir_okay=False),
    envvar="AXEOM_SSL_CA_CERTS",
    help="PEM bundle of authorities: clients must present a certificate they signed.",
)
@_option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    envvar="AXEOM_METRICS_PORT",
    help="Serve Prometheus metrics of the whole node at /metrics on this port (on --host); "
    "0 picks a free one.  [default: off]",
)
def run(app: str, config_file: str | None, app_dir: str, **overrides: Any) -> None:
    """Serve the app named by IMPORT (module:attr or path/to/file.py:attr)."""
    try:
        # Absolute, and in the environment, so that every child of the tree imports
        # from the same folder whatever its own working directory.
        os.environ[APP_DIR_ENV] = add_app_dir(app_dir)
    except ImportFromStringError as exc:
        raise click.BadParameter(str(exc), param_hint="'--app-dir'") from None
    for name in ("log_level", "loop", "log_format"):
        if overrides.get(name):
            overrides[name] = overrides[name].lower()
    overrides["reload_dirs"] = overrides.get("reload_dirs") or None  # () = not given
    try:
        config = Config.build(app, config_file, **overrides)
    except ConfigError as exc:
        raise _ConfigProblem(_where_set(exc)) from None
    problem = loop_unavailable(config.server.loop)
    if problem is not None:
        raise _ConfigProblem(problem)
    if config.server.pubsub:
        _check_pubsub(config)
    arguments = {"app": app, "file": config_file, "overrides": overrides}
    if config.server.reload:
        _check_reload()
        # Python trusts a cached .pyc whose source has the same size and mtime second:
        # an edit saved within the second of the last import, keeping the size (v1 -> v2),
        # would load the old code. Without cached app code every import compiles afresh.
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        if config.server.workers == 0:
            sys.exit(_run_reloader(config, arguments))
    if config.server.workers == 0:
        _serve_in_process(config)
        return
    argv = [sys.executable, "-m", "axeom_supervisor", json.dumps(arguments)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


# Settings checked beyond their type when the configuration is built (the TLS
# and log config files, a metrics port equal to the port, the proxies' addresses):
# an error about one, given on the command line or in the environment, names the
# option rather than the "overrides" layer.
_CHECKED_OPTIONS = (
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_keyfile_password",
    "ssl_ca_certs",
    "metrics_port",
    "log_config",
    "forwarded_allow_ips",
)


def _where_set(error: ConfigError) -> str:
    """The error's line, naming ``--option`` (and its variable) for a value from there."""
    name = (error.key or "").removeprefix("server.")
    if error.source != OVERRIDES_SOURCE or name not in _CHECKED_OPTIONS:
        return str(error)
    flag = "--" + name.replace("_", "-")
    return f"{flag} (or AXEOM_{name.upper()}): {error.detail}"


def _ssl_context(config: Config) -> Any:
    """The one ``ssl.SSLContext`` of this process, or None without TLS."""
    settings = config.server.tls()
    if settings is None:
        return None
    from .tls import server_context

    return server_context(settings)


def _scheme(config: Config) -> str:
    """How the banner names the server's address: ``wss`` when it serves TLS."""
    return "wss" if config.server.ssl_certfile else "ws"


async def _set_on_signal(event: Any, stopped_by: list[int]) -> None:
    """SIGTERM or SIGINT (or a reloader's RESTART_SIGNAL): ask the server to drain
    (a second one is ignored); ``stopped_by`` gets the signal."""
    import trio

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            logging.getLogger("axeom.server").info(
                "received %s: closing sockets with %d",
                signal.Signals(signum).name,
                close_code_for(signum),
            )
            stopped_by.append(signum)
            event.set()
            return


def _check_pubsub(config: Config) -> None:
    if config.server.workers == 0:
        raise click.UsageError(
            "--pubsub bridges the pub/sub hub of a process tree: use it with --workers N (N >= 1)"
        )
    try:
        import redis  # noqa: F401
    except ImportError:
        raise click.UsageError(
            "--pubsub needs the redis package: pip install 'axeom[redis]'"
        ) from None


def _check_reload() -> None:
    from .reload import watchfiles_missing

    problem = watchfiles_missing()
    if problem is not None:
        raise click.UsageError(problem)


def _run_reloader(config: Config, arguments: dict[str, Any]) -> int:
    """``--workers 0 --reload``: this process binds and watches; the server is its child."""
    from ._reloader import run_reloader

    return run_reloader(config, arguments, _bind(config))


def _serve_in_process(config: Config, listener: Any = None) -> None:
    """``--workers 0``: this process serves, on the loop ``server.loop`` names
    (the one place that choice is made for this mode). ``listener``: the
    listening socket, when a ``--reload`` parent bound it (else bound here)."""
    configure_logging(LogSettings.of(config.server))
    application = load_app_or_exit(config.app)
    collector = _serve_metrics(config)
    with exit_if_on_start_failed():
        if config.server.loop == "trio":
            _serve_on_trio(config, application, collector, listener)
        else:
            _serve_on_asyncio(config, application, collector, listener)


def _serve_metrics(config: Config) -> Any:
    """``--metrics-port``: /metrics served from a thread of this process (the
    collector the server keeps refreshed), or None; one line if it cannot listen."""
    server = config.server
    if server.metrics_port is None:
        return None
    from .metrics import MetricsServer, NodeCollector

    collector = NodeCollector()
    try:
        port = MetricsServer(collector).start(server.host, server.metrics_port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve metrics on {server.host}:{server.metrics_port}: {exc.strerror or exc}"
        ) from None
    click.echo(f"Axeom metrics on http://{_format_host(server.host)}:{port}/metrics")
    return collector


def _bind(config: Config, listener: Any = None) -> Any:
    """The listening socket of ``--workers 0``, or one line if it cannot be had."""
    from ._listener import bind_listener

    if listener is not None:
        return listener
    server = config.server
    try:
        return bind_listener(server.host, server.port)
    except OSError as exc:
        reason = exc.strerror or exc
        raise click.ClickException(
            f"cannot listen on {server.host}:{server.port}: {reason}"
        ) from None


def _serve_on_asyncio(
    config: Config, application: Any, collector: Any = None, listener: Any = None
) -> None:
    """Bind, serve on asyncio or uvloop (``asyncio_runtime.run``: lifespan
    functions around serving, drain on a signal), with the control socket
    ``axeom status`` and ``axeom publish`` talk to, as on trio."""
    server = config.server
    descriptors = raise_fd_limit()
    from .asyncio_runtime import LoopUnavailable
    from .asyncio_runtime import run as run_asyncio
    from .ipc import control_address
    from .trio_runtime._handshake import HandshakeLimits

    watchdog = _watchdog(config)

    def ready(bound: tuple[str, int]) -> None:
        announce(f"Axeom listening on {_scheme(config)}://{_format_host(bound[0])}:{bound[1]}")
        logging.getLogger("axeom.server").info(descriptors)
        if watchdog is not None:
            import asyncio

            from .watchdog import start_beating_asyncio

            start_beating_asyncio(watchdog, asyncio.get_running_loop())

    with _bind(config, listener) as listener, watchdog or contextlib.nullcontext():
        try:
            run_asyncio(
                application,
                loop_name=server.loop,
                graceful_timeout=server.graceful_timeout,
                limits=HandshakeLimits(**server.handshake_limits()),
                control=control_address(listener.getsockname()[1]),
                listener=listener,
                on_ready=ready,
                ssl_context=_ssl_context(config),
                metrics=collector,
            )
        except LoopUnavailable as exc:
            exit_loop_unavailable(str(exc))
        except KeyboardInterrupt:
            pass


def _serve_on_trio(
    config: Config, application: Any, collector: Any = None, listener: Any = None
) -> None:
    """Bind, run the lifespan functions around ``serve_listener`` on trio, drain on a signal."""
    server = config.server
    descriptors = raise_fd_limit()
    import trio

    from .ipc import control_address
    from .trio_runtime._handshake import HandshakeLimits
    from .trio_runtime._serve import serve_listener

    listener = _bind(config, listener)
    watchdog = _watchdog(config)

    async def serve() -> None:
        async with trio.open_nursery() as beats:
            if watchdog is not None:
                from .watchdog import beat_forever_trio

                beats.start_soon(beat_forever_trio, watchdog)
            await serve_until_drained()
            beats.cancel_scope.cancel()  # beating on through the drain, not after it

    async def serve_until_drained() -> None:
        shutdown = trio.Event()
        stopped_by: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_set_on_signal, shutdown, stopped_by)
            serving = functools.partial(
                serve_listener,
                application,
                listener,
                shutdown=shutdown,
                limits=HandshakeLimits(**server.handshake_limits()),
                graceful_timeout=server.graceful_timeout,
                control=control_address(listener.getsockname()[1]),
                ssl_context=_ssl_context(config),
                metrics=collector,
                close_code=lambda: close_code_for(stopped_by[0] if stopped_by else signal.SIGTERM),
            )
            bound: Any = await nursery.start(serving)
            announce(f"Axeom listening on {_scheme(config)}://{_format_host(bound[0])}:{bound[1]}")
            logging.getLogger("axeom.server").info(descriptors)
            await shutdown.wait()
        # serve_listener returned after draining; the nursery ended with it.

    with listener, watchdog or contextlib.nullcontext():
        try:
            trio.run(serve_with_lifespan, application, serve)
        except KeyboardInterrupt:
            pass


def _watchdog(config: Config) -> Any:
    """The watchdog of ``--workers 0`` (None if ``block_warning`` is 0): it
    names a handler that holds the loop; with no supervisor to replace this
    process, it has nothing to close on a hang."""
    if config.workers.block_warning <= 0:
        return None
    from .watchdog import Watchdog

    return Watchdog(config.workers.block_warning)


def _control_options(fn: Any) -> Any:
    """--port and --timeout, shared by the commands that talk to a supervisor."""
    fn = click.option(
        "--timeout",
        type=float,
        default=3.0,
        show_default=True,
        help="Seconds to wait for the supervisor.",
    )(fn)
    return _option(
        "--port",
        type=click.IntRange(1, 65535),
        default=_DEFAULTS.port,
        show_default=True,
        envvar="AXEOM_PORT",
        help="Port of the server (its supervisor's control socket).",
    )(fn)


# Seconds between two refreshes of ``axeom status --watch`` without a value.
WATCH_INTERVAL = 2.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home, erase the screen (ANSI)


@main.command()
@_control_options
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=WATCH_INTERVAL,
    default=None,
    metavar="[SECONDS]",
    help=f"Refresh every SECONDS (default {WATCH_INTERVAL:g}) until Ctrl-C: in place on a "
    "terminal, else one block after another.",
)
def status(port: int, as_json: bool, timeout: float, watch: float | None) -> None:
    """Show the processes of a running `axeom run` (its sockets, topics, restarts)."""
    if watch is not None:
        _watch_status(port, as_json, timeout, watch)
        return
    click.echo(_status_text(control_request(port, {"cmd": "status"}, timeout), as_json))


def _status_text(result: dict[str, Any], as_json: bool) -> str:
    return json.dumps(result, indent=2) if as_json else _format_status(result)


def _watch_status(port: int, as_json: bool, timeout: float, interval: float) -> None:
    """``status --watch``: on a terminal the screen is redrawn in place; piped
    or redirected, blocks follow each other separated by a blank line (no
    escape codes in a log file). Ctrl-C ends it quietly with status 0."""
    in_place = sys.stdout.isatty()
    try:
        first = True
        while True:
            text = _status_text(control_request(port, {"cmd": "status"}, timeout), as_json)
            if in_place:
                click.echo(f"{CLEAR_SCREEN}every {interval:g}s, Ctrl-C to stop\n\n{text}")
            else:
                click.echo(text if first else f"\n{text}")
            sys.stdout.flush()
            first = False
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def control_request(port: int, request: dict[str, Any], timeout: float) -> Any:
    """Send one command to the supervisor on ``port``; exit 1 with a reason on failure."""
    from .control import ControlError
    from .control import request as send_request

    try:
        return send_request(request, port=port, timeout=timeout)
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("topic")
@click.argument("message")
@_control_options
@click.option("--binary", is_flag=True, help="Send MESSAGE as a binary frame (UTF-8 bytes).")
def publish(topic: str, message: str, port: int, binary: bool, timeout: float) -> None:
    """Publish MESSAGE to every socket subscribed to TOPIC."""
    data: str | bytes = message.encode() if binary else message
    workers = control_request(port, {"cmd": "publish", "topic": topic, "data": data}, timeout)
    click.echo(f"published to {topic!r} ({workers} worker(s) with subscribers)")


@main.command()
@_control_options
def reload(port: int, timeout: float) -> None:
    """Load the app's code anew, as SIGHUP does: with `--workers N` the workers are
    replaced one at a time, then the acceptor, without refusing a handshake; under
    `--reload` (also `--workers 0`) as an edit does."""
    result = control_request(port, {"cmd": "reload"}, timeout)
    if result == "restarting":
        click.echo("restarting (--reload): the processes that run the app are replaced")
        return
    click.echo("reloading: workers are replaced one at a time, then the acceptor")


@main.command()
@click.argument("app", metavar="IMPORT")
@click.option("--yaml", "as_yaml", is_flag=True, help="YAML instead of JSON (needs PyYAML).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout."
)
@_option(
    "--host",
    envvar="AXEOM_HOST",
    help=f"Host clients dial, as the document's server.  [default: {_DEFAULTS.host}]",
)
@_option(
    "--port",
    type=click.IntRange(1, 65535),
    envvar="AXEOM_PORT",
    help=f"Port clients dial, as the document's server.  [default: {_DEFAULTS.port}]",
)
@_option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="AXEOM_CONFIG",
    help="The TOML file of `axeom run`: its [server] host and port name the server.",
)
@click.option(
    "--protocol",
    type=click.Choice(["ws", "wss"]),
    default="ws",
    show_default=True,
    help="wss when clients reach the app through TLS.",
)
@click.option("--title", default="Axeom app", show_default=True, help="info.title")
@click.option("--api-version", default="0.1.0", show_default=True, help="info.version")
@_option(
    "--app-dir",
    default=".",
    envvar=APP_DIR_ENV,
    help="Folder put first on the import path.  [default: .]",
)
def asyncapi(
    app: str,
    as_yaml: bool,
    output: str | None,
    host: str | None,
    port: int | None,
    config_file: str | None,
    protocol: str,
    title: str,
    api_version: str,
    app_dir: str,
) -> None:
    """Print the AsyncAPI 3.0 document of the app named by IMPORT.

    Imports the app as `axeom run` does (no server is started, no on_start
    function runs), and describes its WebSocket routes.
    """
    from .asyncapi import asyncapi_document, to_yaml

    try:
        os.environ[APP_DIR_ENV] = add_app_dir(app_dir)
    except ImportFromStringError as exc:
        raise click.BadParameter(str(exc), param_hint="'--app-dir'") from None
    try:
        # The address `axeom run` would listen on, given the same options, file and env.
        server = Config.build(app, config_file, host=host, port=port).server
    except ConfigError as exc:
        raise _ConfigProblem(str(exc)) from None
    if server.port == 0:
        raise click.UsageError("the config file says port 0 (picked at start): give --port")
    application = load_app_or_exit(app)
    document = asyncapi_document(
        application,
        title=title,
        version=api_version,
        host=f"{_format_host(server.host)}:{server.port}",
        protocol=protocol,
    )
    if as_yaml:
        try:
            text = to_yaml(document)
        except ImportError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        text = json.dumps(document, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None


def _format_status(result: dict[str, Any]) -> str:
    # With --workers 0 the one "server" process answers: it supervises nothing.
    single = all(p["role"] == "server" for p in result["processes"])
    lines = [
        f"Axeom on port {result['port']} ({'' if single else 'supervisor '}pid {result['pid']}, "
        f"up {result['uptime']:.0f}s)",
        "",
    ]
    header = (
        f"{'NAME':<12} {'ROLE':<9} {'PID':>7} {'STATE':<10} "
        f"{'UPTIME':>7} {'RESTARTS':>8} {'SOCKETS':>8}"
    )
    lines.append(header)
    for p in result["processes"]:
        sockets = str(p["sockets"]) if "sockets" in p else "-"
        pid = "-" if p["pid"] is None else p["pid"]  # restarting: no process right now
        lines.append(
            f"{p['name']:<12} {p['role']:<9} {pid:>7} {p['state']:<10} "
            f"{p['uptime']:>6.0f}s {p['restarts']:>8} {sockets:>8}"
        )
    pubsub = result.get("pubsub") or {}
    if pubsub:
        lines += [
            "",
            "pub/sub "
            + "  ".join(f"{key}: {value}" for key, value in pubsub.items() if key != "workers"),
        ]
    totals = result["totals"]
    lines += [
        "",
        (
            f"sockets open: {totals['sockets']}  handed off: {totals['handed_off']}  "
            f"rejected handshakes: {totals['rejected_handshakes']}  "
            f"shed heads: {totals.get('shed_heads', 0)}  "
            f"restarts: {totals['restarts']}"
        ),
    ]
    if "invalid_messages" in totals:
        lines.append(f"invalid messages (typed routes): {totals['invalid_messages']}")
    responses = totals.get("http_responses") or {}
    if responses:
        lines.append(
            "http responses (refused upgrades included): "
            + "  ".join(f"{status_class}: {count}" for status_class, count in responses.items())
        )
    # Security plugin refusals and message limits, by limit name (none hit: no line).
    hits = totals.get("limits_hit") or {}
    if hits:
        lines.append(
            "limits hit: " + "  ".join(f"{name}: {count}" for name, count in sorted(hits.items()))
        )
    lines += _operator_lines(result)
    return "\n".join(lines)


def _operator_lines(result: dict[str, Any]) -> list[str]:
    """Sockets per route, the busiest topics, each child's last exit."""
    lines: list[str] = []
    routes = result.get("routes") or {}
    if routes:
        shown = sorted(routes.items(), key=lambda item: (-item[1], item[0]))
        lines.append("sockets per route: " + "  ".join(f"{r}: {n}" for r, n in shown))
    topics = result.get("top_topics") or []
    if topics:
        lines.append("top topics (subscribers): " + "  ".join(f"{t}: {n}" for t, n in topics))
    exits = [p for p in result["processes"] if p.get("last_exit")]
    if exits:
        lines.append("last exit of each child:")
        for p in exits:
            last = p["last_exit"]
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
            asked = " (asked: stop or reload)" if last.get("requested") else ""
            lines.append(f"  {p['name']:<12} {at}  {last['cause']}{asked}")
    return ["", *lines] if lines else []


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
