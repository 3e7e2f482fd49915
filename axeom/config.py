"""Configuration for ``axeom run``: one frozen object built from defaults, a TOML file, overrides.

A configuration file looks like this (every key is optional; the values shown are the defaults)::

    [server]
    host = "127.0.0.1"
    port = 8000
    workers = 0                 # 0 = single process, N >= 1 = supervisor + acceptor + N workers
    log_level = "info"          # critical | error | warning | info | debug
    loop = "trio"               # trio | asyncio | uvloop: the event loop application code runs on
    graceful_timeout = 10.0     # seconds a child has to finish its work once asked to stop
    max_pending_handshakes = 1024             # unfinished requests at once (node-wide)
    max_pending_handshakes_per_address = 64   # ... from one client address
    max_head_size = 16384       # bytes of request head; larger: 431
    request_timeout = 10.0      # seconds to send the whole request (head and body); slower: 408
    max_body_size = 1048576     # bytes of request body (HTTP routes); larger: 413
    # TLS (wss://), off by default (no file); the files are checked when the configuration is built:
    # ssl_certfile = "cert.pem"      # PEM certificate chain (may hold the key too)
    # ssl_keyfile = "key.pem"        # PEM private key
    # ssl_keyfile_password = "..."   # of an encrypted ssl_keyfile
    # ssl_ca_certs = "ca.pem"        # clients must present a certificate signed by these
    forwarded_allow_ips = []    # proxies whose X-Forwarded-For / Forwarded name the client
    # metrics_port = 9100      # Prometheus /metrics of the node on this port (unset: off)
    reload = false              # development: restart the app's processes when a .py file changes
    reload_dirs = []            # more folders to watch with reload (besides the app's own)
    log_format = "text"         # text | json (one object per line)
    # log_config = "logging.json"  # unset; a dictConfig (.json, .yaml) or fileConfig (.ini) file
    access_log = true           # one line per request head answered (logger axeom.access)

    [supervisor]
    strategy = "one_for_one"    # or "one_for_all"
    max_restarts = 5            # more than this many restarts ...
    max_seconds = 30            # ... within this many seconds: give up
    backoff = { initial = 0.1, max = 5.0, multiplier = 2.0, jitter = 0.1 }
    shutdown_timeout = 15       # seconds after asking a child to stop: SIGKILL

    [workers]
    restart = "permanent"       # permanent | transient | temporary
    heartbeat_interval = 1.0
    heartbeat_timeout = 30.0    # seconds of silence before a worker counts as hung
    block_warning = 1.0         # seconds a handler may hold the loop before it is logged; 0: off

Precedence is *override > file > default*: overrides are what the command line or the environment
gave (``None`` means "not given"), the file is optional, and every knob has a default, so
``Config.build("myapp:app")`` is a complete, valid configuration.

Everything is validated up front, before any process starts, because a typo discovered by a
worker at 3 a.m. is much more expensive than one reported by ``axeom run`` at startup. Errors are
raised as :class:`ConfigError` and read like ``config.toml:9: supervisor.max_restarts must be an
integer >= 0, got "five"``: the file (or ``overrides``) and the line the key is on, the dotted
key, what was expected and what was found.

This module only uses the standard library (no trio, nothing else from ``axeom`` but ``axeom.tls``,
itself standard library only, to check the TLS files) so that the CLI, the supervisor and tests
can import it cheaply.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from .tls import TLSSettings

__all__ = [
    "OVERRIDES_SOURCE",
    "OVERRIDE_KEYS",
    "BackoffConfig",
    "Config",
    "ConfigError",
    "LogFormat",
    "LogLevel",
    "LoopName",
    "RestartType",
    "ServerConfig",
    "Strategy",
    "SupervisorConfig",
    "WorkerPolicyConfig",
    "load_config_file",
]

Strategy = Literal["one_for_one", "one_for_all"]
"""Which children a supervisor restarts when one dies (see :class:`SupervisorConfig`)."""

RestartType = Literal["permanent", "transient", "temporary"]
"""When a worker is restarted after it exits (see :class:`WorkerPolicyConfig`)."""

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
"""Names of the log levels accepted by ``server.log_level``."""

LogFormat = Literal["text", "json"]
"""Formats accepted by ``server.log_format``."""

LoopName = Literal["trio", "asyncio", "uvloop"]
"""Event loops accepted by ``server.loop``: where handlers, hooks and lifespan functions run."""

OVERRIDES_SOURCE = "overrides"
"""How errors name values that came from overrides (command line / environment) and not a file."""


class ConfigError(Exception):
    """An invalid configuration: one readable line naming where the problem is and what it is.

    ``str(error)`` is ``"<source>:<line>: <key> <detail>"`` (parts that are unknown are left
    out), e.g. ``config.toml:9: supervisor.max_restarts must be an integer >= 0, got "five"``.
    The parts are also available separately so a CLI can format them differently.

    Attributes:
        detail: What is wrong, e.g. ``must be an integer >= 0, got "five"``.
        key: The dotted key the problem is about (``supervisor.max_restarts``), or ``None`` when
            the problem is not about one key (a missing file, a TOML syntax error, an unknown key,
            whose name is then part of ``detail``).
        source: The file name as it was given, ``"overrides"``, or ``None`` when a dataclass was
            constructed directly in Python.
        related: Other keys the problem involves (``heartbeat_interval`` for a
            ``heartbeat_timeout`` that is too small); used to find the source to blame.
        line: The line of ``source`` (a file) the blamed key is on, counted from 1, or ``None``
            when unknown.
    """

    def __init__(
        self,
        detail: str,
        key: str | None = None,
        source: str | None = None,
        related: tuple[str, ...] = (),
        line: int | None = None,
    ) -> None:
        # All arguments go to Exception.args so that the error survives pickling between processes.
        super().__init__(detail, key, source, related, line)
        self.detail = detail
        self.key = key
        self.source = source
        self.related = related
        self.line = line

    def __str__(self) -> str:
        message = f"{self.key} {self.detail}" if self.key else self.detail
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {message}" if self.source else message

    def within(self, prefix: str, origins: Mapping[str, str]) -> ConfigError:
        """Return this error re-rooted under the table ``prefix``, blaming the right source.

        ``origins`` maps full dotted keys to the source that set them. The key the error is about
        is blamed first; if it was left at its default, the first related key that was set is.
        """
        key = f"{prefix}.{self.key}" if self.key else prefix
        related = tuple(f"{prefix}.{name}" for name in self.related)
        source = next((origins[k] for k in (key, *related) if k in origins), self.source)
        return ConfigError(self.detail, key, source, related)


# --------------------------------------------------------------------------------------------
# Value checks. Each returns the normalised value or raises ValueError("must be ..., got ...").
# --------------------------------------------------------------------------------------------

Check = Callable[[Any], Any]


def _show(value: Any) -> str:
    """Render a value the way it would be written in TOML, so messages quote what the user wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return repr(value)


def _did_you_mean(name: str, candidates: list[str]) -> str:
    """A ``' (did you mean "x"?)'`` suffix for the closest candidate, or ``''`` if none is close."""
    lowered = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return f' (did you mean "{lowered[close[0]]}"?)' if close else ""


def _is_number(value: Any) -> bool:
    """True for ints and floats. Bools are ints in Python but ``port = true`` is never meant."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(minimum: int, maximum: int | None = None) -> Check:
    """An integer in ``minimum..maximum`` (floats are refused: ``workers = 2.5`` is a mistake)."""
    wanted = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
    )

    def check(value: Any) -> int:
        upper = math.inf if maximum is None else maximum
        if not (_is_number(value) and isinstance(value, int) and minimum <= value <= upper):
            raise ValueError(f"must be {wanted}, got {_show(value)}")
        return int(value)

    return check


def _number(wanted: str, ok: Callable[[float], bool]) -> Check:
    """A finite int or float satisfying ``ok`` (described by ``wanted``), returned as a float."""

    def check(value: Any) -> float:
        if not _is_number(value) or not ok(value):
            raise ValueError(f"must be a number {wanted}, got {_show(value)}")
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {_show(value)}")
        return float(value)

    return check


_POSITIVE = _number("> 0", lambda value: value > 0)
_NON_NEGATIVE = _number(">= 0", lambda value: value >= 0)
_AT_LEAST_ONE = _number(">= 1", lambda value: value >= 1)
_FRACTION = _number("between 0 and 1", lambda value: 0 <= value <= 1)

# Bounds of the request limits. A browser's upgrade request with its cookies
# is a few KiB: a head limit below 1 KiB refuses real clients, and above 1 MiB
# each unfinished head (there may be max_pending_handshakes of them) holds that
# much memory.
MIN_HEAD_SIZE, MAX_HEAD_SIZE = 1024, 1 << 20
# Longer than this, every slow client holds a descriptor for minutes: a gift
# to a slowloris attack, never what a real client needs.
MAX_REQUEST_TIMEOUT = 600.0
# A request body is held whole in memory until the handler has run.
MAX_BODY_SIZE = 1 << 30
# gunicorn's worker timeout: a blocking database call or a slow DNS lookup in a
# handler can take this long, and a worker killed for it drops every socket on it.
DEFAULT_HEARTBEAT_TIMEOUT = 30.0
_REQUEST_TIMEOUT = _number(
    f"> 0 and <= {MAX_REQUEST_TIMEOUT:g}", lambda value: 0 < value <= MAX_REQUEST_TIMEOUT
)


def _optional_path(value: Any) -> str | None:
    """A file path, or None; the file itself is checked with the other TLS settings."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a file path, got {_show(value)}")
    return value


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_show(value)}")
    return value


def _choice(alias: Any) -> Check:
    """One of the strings of a ``Literal`` alias, with a did-you-mean hint for near misses."""
    choices: tuple[str, ...] = get_args(alias)
    wanted = ", ".join(f'"{choice}"' for choice in choices)

    def check(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            hint = _did_you_mean(value, list(choices)) if isinstance(value, str) else ""
            raise ValueError(f"must be one of {wanted}, got {_show(value)}{hint}")
        return value

    return check


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {_show(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_show(value)}")
    return value


def _directories(value: Any) -> tuple[str, ...]:
    """A list of existing folders (``reload_dirs``), as a tuple: a folder that is not there
    would be watched for nothing, and the user would wonder why no edit reloads."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be an array of folder names, got {_show(value)}")
    for folder in value:
        if not os.path.isdir(folder):
            raise ValueError(f"must name existing folders, got {_show(folder)} (not a folder)")
    return tuple(value)


def _instance_of(cls: type) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, cls):
            raise ValueError(f"must be a {cls.__name__}, got {_show(value)}")
        return value

    return check


def _checked(check: Check) -> dict[str, Any]:
    """Field metadata: the value is validated (and normalised) by ``check``."""
    return {"check": check}


def _nested(cls: type) -> dict[str, Any]:
    """Field metadata: the value is a nested table (a TOML section or inline table)."""
    return {"check": _instance_of(cls), "table": cls}


def _validate(obj: Any) -> None:
    """Run every field's check on a (frozen) dataclass instance and store normalised values.

    Checking in ``__post_init__`` means that *any* config object, however it was made, is valid;
    the loader re-roots the errors raised here with the file name and dotted key.
    """
    for f in fields(obj):
        value = getattr(obj, f.name)
        try:
            normalised = f.metadata["check"](value)
        except ValueError as error:
            raise ConfigError(str(error), f.name) from None
        object.__setattr__(obj, f.name, normalised)


def _require_greater(obj: Any, name: str, other: str, *, or_equal: bool = False) -> None:
    """Cross-field check: ``obj.name > obj.other`` (or ``>=``)."""
    value, bound = getattr(obj, name), getattr(obj, other)
    if value < bound or (value == bound and not or_equal):
        relation = ">=" if or_equal else "greater than"
        detail = f"must be {relation} {other} ({_show(bound)}), got {_show(value)}"
        raise ConfigError(detail, name, related=(other,))


# --------------------------------------------------------------------------------------------
# The configuration objects.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """How long the supervisor waits before restarting a child that keeps failing.

    Restarting a crashing worker immediately turns one bug into a busy loop that burns CPU and
    floods the logs; waiting a little longer after each consecutive failure gives a dependency
    (database, disk, DNS) time to come back. The delay before the *n*-th consecutive restart of
    a child is ``min(max, initial * multiplier ** (n - 1))``, then multiplied by a random factor
    in ``1 ± jitter`` (as in gRPC's connection backoff) so that workers that died together do not
    all come back in the same instant.

    Attributes:
        initial: Delay in seconds before the first restart of a child (``>= 0``; ``0`` together
            with ``multiplier = 1`` disables the backoff).
        max: Longest delay in seconds before jitter (``>= initial``).
        multiplier: Factor applied per consecutive failure (``>= 1``; ``1`` means a fixed delay).
        jitter: Random spread as a fraction of the delay, ``0 <= jitter <= 1``.
    """

    initial: float = field(default=0.1, metadata=_checked(_NON_NEGATIVE))
    max: float = field(default=5.0, metadata=_checked(_NON_NEGATIVE))
    multiplier: float = field(default=2.0, metadata=_checked(_AT_LEAST_ONE))
    jitter: float = field(default=0.1, metadata=_checked(_FRACTION))

    def __post_init__(self) -> None:
        _validate(self)
        _require_greater(self, "max", "initial", or_equal=True)


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """How the supervisor reacts when a child process (acceptor or worker) exits.

    The model is Erlang/OTP's supervisor: restart what crashed, but if crashes come too fast the
    problem is not transient, so stop (exit non-zero) and let the outer layer (systemd,
    Kubernetes, a human) decide, instead of restarting forever.

    Attributes:
        strategy: ``"one_for_one"`` restarts only the worker that exited, right for independent
            workers. ``"one_for_all"`` stops and restarts every worker when one exits, for
            deployments where the workers share state that one crash may have left
            inconsistent. Either way the acceptor and the Redis bridge restart on their own:
            they hold no application state, and restarting the workers for them would drop
            every socket.
        max_restarts: Restart intensity: if more than this many restarts (counted over all
            children) happen within ``max_seconds``, the supervisor gives up. ``0`` means the
            first crash is fatal.
        max_seconds: Length in seconds of the sliding window for ``max_restarts``. It is also how
            long a child must stay up for its backoff to start over from ``backoff.initial``.
        backoff: Delays between restarts of a failing child, see :class:`BackoffConfig`.
        shutdown_timeout: Seconds after which a child that was asked to stop (SIGTERM, on every
            path: shutdown, reload, a missed heartbeat, ``one_for_all``) is killed with SIGKILL.
            Keep it above ``server.graceful_timeout``, the time a child has to finish its work.
    """

    strategy: Strategy = field(default="one_for_one", metadata=_checked(_choice(Strategy)))
    max_restarts: int = field(default=5, metadata=_checked(_integer(0)))
    max_seconds: float = field(default=30.0, metadata=_checked(_POSITIVE))
    backoff: BackoffConfig = field(default_factory=BackoffConfig, metadata=_nested(BackoffConfig))
    shutdown_timeout: float = field(default=15.0, metadata=_checked(_POSITIVE))

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, slots=True)
class WorkerPolicyConfig:
    """When workers are restarted and how the supervisor notices a worker that hangs.

    Attributes:
        restart: Erlang/OTP restart type. ``"permanent"``: always restarted, even after a clean
            exit (a worker is never supposed to stop on its own). ``"transient"``: restarted
            only after an abnormal exit (non-zero code or killed by a signal). ``"temporary"``:
            never restarted.
        heartbeat_interval: Seconds between the "I am alive" messages a worker sends.
        heartbeat_timeout: Seconds without a heartbeat after which the supervisor considers the
            worker hung (an event loop blocked by CPU-bound code or a blocking call) and stops
            it. Must be greater than ``heartbeat_interval``, or every healthy worker would be
            killed. The default, 30 s, is gunicorn's: what a slow blocking database call can
            take; such calls belong in ``trio.to_thread.run_sync`` / ``asyncio.to_thread``.
        block_warning: Seconds a handler may hold its process's event loop before the process
            logs it (the route, the socket id, the handler and the stack of the blocking
            call), once per episode, and again when the loop resumes. ``0`` turns it off.
    """

    restart: RestartType = field(default="permanent", metadata=_checked(_choice(RestartType)))
    heartbeat_interval: float = field(default=1.0, metadata=_checked(_POSITIVE))
    heartbeat_timeout: float = field(
        default=DEFAULT_HEARTBEAT_TIMEOUT, metadata=_checked(_POSITIVE)
    )
    block_warning: float = field(default=1.0, metadata=_checked(_NON_NEGATIVE))

    def __post_init__(self) -> None:
        _validate(self)
        _require_greater(self, "heartbeat_timeout", "heartbeat_interval")


def _optional_port(value: Any) -> int | None:
    return None if value is None else _integer(0, 65535)(value)


def _log_config_file(value: Any) -> str | None:
    """A ``--log-config`` file: a path to a file that exists (read by every process)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be the path of a logging config file, got {_show(value)}")
    if not os.path.isfile(value):
        raise ValueError(f"names no file, got {_show(value)}")
    return value


def _redis_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f'must be a URL like "redis://127.0.0.1:6379/0", got {_show(value)}')
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f'must be a URL like "redis://127.0.0.1:6379/0", got {_show(value)}')
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"has an invalid port, got {_show(value)}") from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"must name a numeric database after the host, got {_show(value)}")
    return value


def _proxy_list(value: Any) -> tuple[str, ...]:
    """``"127.0.0.1, 10.0.0.0/8"`` (the command line's form) or a list of entries:
    IP addresses, CIDR networks and ``*`` (every peer)."""
    import ipaddress

    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f'must be a list like ["127.0.0.1", "10.0.0.0/8"], got {_show(value)}')
    checked: list[str] = []
    for entry in entries:
        entry = entry.strip() if isinstance(entry, str) else entry
        if entry == "":
            continue  # "a, b," from a shell variable
        if entry != "*":
            try:
                if not isinstance(entry, str):  # ip_network takes the int 5 as 0.0.0.5
                    raise TypeError(entry)
                ipaddress.ip_network(entry, strict=False)
            except (TypeError, ValueError):
                raise ValueError(
                    f"must list IP addresses, CIDR networks (10.0.0.0/8) or *, got {_show(entry)}"
                ) from None
        checked.append(entry)
    return tuple(checked)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where to listen and how many processes to run.

    Attributes:
        host: Interface to bind. The default ``127.0.0.1`` is only reachable from this machine;
            use ``0.0.0.0`` (or ``::``) to accept outside connections.
        port: TCP port, ``0..65535``; ``0`` lets the OS pick a free port (useful in tests).
        workers: ``0`` runs everything in one process, which is simplest to debug (development).
            ``N >= 1`` runs a supervisor, an acceptor and ``N`` worker processes (production).
        log_level: One of ``critical``, ``error``, ``warning``, ``info``, ``debug``.
        graceful_timeout: Seconds a child has to finish its work once asked to stop: a worker
            closes its sockets with 1001 and runs their ``close`` handlers (those still running
            then are cancelled); the acceptor finishes the handshakes in flight.
        pubsub: ``redis://HOST:PORT/DB`` to bridge pub/sub to the other nodes running the same
            app through Redis; unset, pub/sub reaches this node's workers only.
        max_pending_handshakes: Connections whose request (head, and body if any) is not
            complete yet, at once, on this node; one more evicts the oldest with 408 (a
            slowloris attack costs a bounded number of descriptors).
        max_pending_handshakes_per_address: The same, from one client address; the excess is
            answered 429 and closed at once. Raise it behind a proxy (its clients share its
            address).
        max_head_size: Bytes of request head (request line and headers); a larger head is
            answered 431.
        request_timeout: Seconds a client has to send its whole request, head and body; a
            slower one is answered 408.
        max_body_size: Bytes of request body an HTTP route accepts (``Content-Length``); a
            larger one is answered 413 before it is read. ``0`` refuses every body.
        forwarded_allow_ips: The reverse proxies (IP addresses, CIDR networks, or ``*`` for
            any peer) whose ``X-Forwarded-For`` or ``Forwarded`` header names the client: from
            them, ``ws.remote_address``, ``ctx.client`` and the per-address limits use the
            client's address. Empty (the default) trusts no peer: the headers are ignored.
        loop: The event loop every process that runs application code (the single-process
            server, the acceptor, the workers) runs it on: ``trio`` (the default), ``asyncio``
            or ``uvloop`` (the ``axeom[uvloop]`` extra). A handler awaits the primitives of
            its loop only, so an app whose handlers use asyncio libraries (asyncpg,
            ``redis.asyncio``) picks ``asyncio`` or ``uvloop``. The supervisor stays on trio.
        ssl_certfile: PEM certificate chain; set, the server speaks TLS only (``wss://``).
            It may hold the private key too. See ``axeom.tls``.
        ssl_keyfile: PEM private key of the certificate.
        ssl_keyfile_password: Password of an encrypted ``ssl_keyfile``.
        ssl_ca_certs: PEM bundle of authorities; set, every client must present a
            certificate signed by one of them (mutual TLS).
        metrics_port: Serve Prometheus metrics of the whole node at ``/metrics`` on this port
            (on ``host``); ``0`` picks a free one (printed at start). Unset: no metrics server.
        reload: Development: watch the app's folder (the folder of its file, or of its module
            or package) and ``reload_dirs`` for changes to ``.py`` files, and restart every
            process that runs application code when one changes; open sockets are closed with
            1012 (service restart). Needs the ``axeom[reload]`` extra (watchfiles).
        reload_dirs: More folders to watch with ``reload``.
        log_format: ``text`` (lines for a person) or ``json`` (one object per line: time,
            level, process role and name, pid, socket id and route, logger, message).
        log_config: A logging configuration file applied in every process instead of the
            format above: ``.json`` or ``.yaml`` (``logging.config.dictConfig``) or ``.ini``
            (``logging.config.fileConfig``), as uvicorn's ``--log-config``.
        access_log: One line per answered request head (logger ``axeom.access``: status,
            method, path, client, duration), 101s and rejections alike.
    """

    host: str = field(default="127.0.0.1", metadata=_checked(_non_empty_string))
    port: int = field(default=8000, metadata=_checked(_integer(0, 65535)))
    workers: int = field(default=0, metadata=_checked(_integer(0)))
    log_level: LogLevel = field(default="info", metadata=_checked(_choice(LogLevel)))
    graceful_timeout: float = field(default=10.0, metadata=_checked(_POSITIVE))
    pubsub: str | None = field(default=None, metadata=_checked(_redis_url))
    max_pending_handshakes: int = field(default=1024, metadata=_checked(_integer(1)))
    max_pending_handshakes_per_address: int = field(default=64, metadata=_checked(_integer(1)))
    max_head_size: int = field(
        default=16384, metadata=_checked(_integer(MIN_HEAD_SIZE, MAX_HEAD_SIZE))
    )
    request_timeout: float = field(default=10.0, metadata=_checked(_REQUEST_TIMEOUT))
    max_body_size: int = field(default=1 << 20, metadata=_checked(_integer(0, MAX_BODY_SIZE)))
    # Last, so that positional construction from before it was added still works.
    loop: LoopName = field(default="trio", metadata=_checked(_choice(LoopName)))
    # TLS (wss://): after ``loop`` for the same reason.
    ssl_certfile: str | None = field(default=None, metadata=_checked(_optional_path))
    ssl_keyfile: str | None = field(default=None, metadata=_checked(_optional_path))
    ssl_keyfile_password: str | None = field(default=None, metadata=_checked(_optional_text))
    ssl_ca_certs: str | None = field(default=None, metadata=_checked(_optional_path))
    forwarded_allow_ips: tuple[str, ...] = field(default=(), metadata=_checked(_proxy_list))
    metrics_port: int | None = field(default=None, metadata=_checked(_optional_port))
    reload: bool = field(default=False, metadata=_checked(_boolean))
    reload_dirs: tuple[str, ...] = field(default=(), metadata=_checked(_directories))
    # Logs (after ``loop``, for the same reason).
    log_format: LogFormat = field(default="text", metadata=_checked(_choice(LogFormat)))
    log_config: str | None = field(default=None, metadata=_checked(_log_config_file))
    access_log: bool = field(default=True, metadata=_checked(_boolean))

    def __post_init__(self) -> None:
        _validate(self)
        self._check_tls()
        if self.metrics_port and self.metrics_port == self.port:
            # Else the two binds race: one of them fails with "address in use".
            detail = f"must differ from port ({self.port}), got {self.metrics_port}"
            raise ConfigError(detail, "metrics_port", related=("port",))

    def _check_tls(self) -> None:
        """The TLS files are loaded once here, so that a missing file, a wrong
        password or a key that does not match its certificate stops ``axeom
        run`` with one line naming the key, before any process starts."""
        if self.ssl_certfile is None:
            for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs"):
                if getattr(self, name) is not None:
                    raise ConfigError("needs ssl_certfile (the certificate)", name)
            return
        if self.workers and self.loop != "trio":
            # The worker runs TLS and the handshake on trio, and an SSL session
            # cannot be passed on to the worker's asyncio loop afterwards.
            raise ConfigError(
                f'with workers >= 1 needs loop = "trio" (TLS in workers runs on trio; '
                f'"{self.loop}" serves TLS with workers = 0)',
                "ssl_certfile",
                related=("loop", "workers"),
            )
        from .tls import TLSError, TLSSettings, server_context

        try:
            server_context(TLSSettings(**self.tls_options()))
        except TLSError as error:
            raise ConfigError(error.detail, error.option, related=("ssl_certfile",)) from None

    def tls(self) -> TLSSettings | None:
        """``axeom.tls.TLSSettings`` when TLS is on (``ssl_certfile`` set), else None."""
        if self.ssl_certfile is None:
            return None
        from .tls import TLSSettings

        return TLSSettings(**self.tls_options())

    def tls_options(self) -> dict[str, Any]:
        """Keyword arguments for ``axeom.tls.TLSSettings`` (as passed to child processes)."""
        return {
            "certfile": self.ssl_certfile,
            "keyfile": self.ssl_keyfile,
            "password": self.ssl_keyfile_password,
            "ca_certs": self.ssl_ca_certs,
        }

    @property
    def single_process(self) -> bool:
        """True in development mode (``workers = 0``): no supervisor, acceptor or workers."""
        return self.workers == 0

    def handshake_limits(self) -> dict[str, Any]:
        """Keyword arguments for ``HandshakeLimits`` (which lives with the event loop)."""
        return {
            "max_pending": self.max_pending_handshakes,
            "max_pending_per_address": self.max_pending_handshakes_per_address,
            "max_head_size": self.max_head_size,
            "timeout": self.request_timeout,
            "max_body_size": self.max_body_size,
            "forwarded_allow_ips": self.forwarded_allow_ips,
        }


def _app_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'must be an import string like "package.module:app", got {_show(value)}')
    return value


def _optional_string(value: Any) -> str | None:
    return None if value is None else _non_empty_string(value)


OVERRIDE_KEYS: Mapping[str, str] = {
    "host": "server.host",
    "port": "server.port",
    "workers": "server.workers",
    "log_level": "server.log_level",
    "loop": "server.loop",
    "graceful_timeout": "server.graceful_timeout",
    "pubsub": "server.pubsub",
    "max_pending_handshakes": "server.max_pending_handshakes",
    "max_pending_handshakes_per_address": "server.max_pending_handshakes_per_address",
    "max_head_size": "server.max_head_size",
    "request_timeout": "server.request_timeout",
    "max_body_size": "server.max_body_size",
    "ssl_certfile": "server.ssl_certfile",
    "ssl_keyfile": "server.ssl_keyfile",
    "ssl_keyfile_password": "server.ssl_keyfile_password",
    "ssl_ca_certs": "server.ssl_ca_certs",
    "forwarded_allow_ips": "server.forwarded_allow_ips",
    "metrics_port": "server.metrics_port",
    "reload": "server.reload",
    "reload_dirs": "server.reload_dirs",
    "log_format": "server.log_format",
    "log_config": "server.log_config",
    "access_log": "server.access_log",
    "block_warning": "workers.block_warning",
    "strategy": "supervisor.strategy",
    "max_restarts": "supervisor.max_restarts",
    "max_seconds": "supervisor.max_seconds",
    "shutdown_timeout": "supervisor.shutdown_timeout",
    "backoff_initial": "supervisor.backoff.initial",
    "backoff_max": "supervisor.backoff.max",
    "backoff_multiplier": "supervisor.backoff.multiplier",
    "backoff_jitter": "supervisor.backoff.jitter",
    "restart": "workers.restart",
    "heartbeat_interval": "workers.heartbeat_interval",
    "heartbeat_timeout": "workers.heartbeat_timeout",
}
"""Keyword names accepted as overrides by :meth:`Config.build`, and the dotted key each sets.

Dotted keys themselves (``**{"supervisor.max_restarts": 3}``) are accepted too, which suits a
generic environment-variable mapping.
"""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``axeom run`` needs: the application to serve and how to run it.

    Build it with :meth:`Config.build`; constructing it directly is fine too (it is validated
    either way) but skips the file and the overrides.

    Attributes:
        app: Import string of the application, ``"package.module:attribute"``.
        server: Listening address, process count, logging; see :class:`ServerConfig`.
        supervisor: Restart strategy, intensity and backoff; see :class:`SupervisorConfig`.
        workers: Worker restart type and heartbeats; see :class:`WorkerPolicyConfig`.
        file: The configuration file the values were read from, if any (for log messages).
    """

    app: str = field(metadata=_checked(_app_string))
    server: ServerConfig = field(default_factory=ServerConfig, metadata=_nested(ServerConfig))
    supervisor: SupervisorConfig = field(
        default_factory=SupervisorConfig, metadata=_nested(SupervisorConfig)
    )
    workers: WorkerPolicyConfig = field(
        default_factory=WorkerPolicyConfig, metadata=_nested(WorkerPolicyConfig)
    )
    file: str | None = field(default=None, metadata=_checked(_optional_string))

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def build(
        cls, app: str, file: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> Config:
        """Merge defaults, the TOML ``file`` (optional) and ``overrides`` into a valid Config.

        ``overrides`` use the names in :data:`OVERRIDE_KEYS` (``port=9000``,
        ``backoff_max=2.0``) or dotted keys; a value of ``None`` means "not given" so a CLI can
        pass every option through unconditionally. Values must already have the right Python
        type (click converts option and environment-variable strings).

        Raises:
            ConfigError: if the file cannot be read or parsed, or any value is invalid.
            TypeError: for an override name that does not exist (a programming error).
        """
        layers: list[tuple[str, dict[str, Any]]] = []
        if file is not None:
            source = os.fspath(file)
            raw = load_config_file(file)
            _check_shape(cls, raw, "", source)
            layers.append((source, raw))
        layers.append((OVERRIDES_SOURCE, _nest_overrides(overrides)))
        values, origins = _merge(layers)
        values["app"] = app
        values["file"] = None if file is None else os.fspath(file)
        try:
            return _construct(cls, values, "", origins)
        except ConfigError as error:
            raise _located(error) from None


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse a TOML file; the raw dict is returned and not validated.

    Raises:
        ConfigError: naming the file, if it cannot be read, is not UTF-8 or is not valid TOML
            (the message then includes tomllib's line and column).
    """
    source = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except OSError as error:
        detail = f"cannot read config file: {error.strerror or error}"
        raise ConfigError(detail, None, source) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"not valid UTF-8 (at byte {error.start})", None, source) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"invalid TOML: {error}", None, source) from None


# --------------------------------------------------------------------------------------------
# Loading machinery: shape checks, merging layers, constructing the dataclasses.
# --------------------------------------------------------------------------------------------


def _tables(cls: type) -> dict[str, type | None]:
    """Keys a table accepts in a file: field name -> nested dataclass (or None for a value).

    At the top level only sections are accepted: ``app`` and ``file`` are not file settings.
    """
    accepted = {f.name: f.metadata.get("table") for f in fields(cls)}
    if cls is Config:
        return {name: table for name, table in accepted.items() if table is not None}
    return accepted


def _leaf_keys(cls: type = Config, prefix: str = "") -> Iterator[str]:
    """Every dotted key a file or an override can set (``server.port``, ...)."""
    for name, table in _tables(cls).items():
        if table is None:
            yield f"{prefix}{name}"
        else:
            yield from _leaf_keys(table, f"{prefix}{name}.")


def _top_level_hint(name: str) -> str:
    """For a value written outside its section (``port = 8000``): suggest ``server.port``."""
    by_leaf = {key.rsplit(".", 1)[-1]: key for key in _leaf_keys()}
    close = difflib.get_close_matches(name, list(by_leaf), n=1)
    return f' (did you mean "{by_leaf[close[0]]}"?)' if close else ""


def _check_shape(cls: type, raw: Mapping[str, Any], prefix: str, source: str) -> None:
    """Reject unknown sections and keys, and scalars where a table belongs, in file order."""
    accepted = _tables(cls)
    for name, value in raw.items():
        key = f"{prefix}{name}"
        if name not in accepted:
            detail = _unknown(cls, name, key, value)
            raise ConfigError(detail, None, source, line=_line_of(source, key))
        table = accepted[name]
        if table is None:
            continue
        if not isinstance(value, dict):
            hint = _top_level_hint(name) if cls is Config else ""
            detail = f"must be a table, got {_show(value)}{hint}"
            raise ConfigError(detail, key, source, line=_line_of(source, key))
        _check_shape(table, value, f"{key}.", source)


def _unknown(cls: type, name: str, key: str, value: Any) -> str:
    """The message for a name the schema does not have, with the closest match if any."""
    if cls is Config and isinstance(value, dict):
        return f'unknown section "{key}"{_did_you_mean(name, list(_tables(cls)))}'
    hint = _top_level_hint(name) if cls is Config else _did_you_mean(name, list(_tables(cls)))
    return f'unknown key "{key}"{hint}'


def _located(error: ConfigError) -> ConfigError:
    """``error`` with the line of its file that set the key it blames (or a related key)."""
    if error.source in (None, OVERRIDES_SOURCE) or error.line is not None:
        return error
    assert error.source is not None
    for key in (error.key, *error.related):
        line = None if key is None else _line_of(error.source, key)
        if line is not None:
            return ConfigError(error.detail, error.key, error.source, error.related, line)
    return error


# A table header (``[server]``, ``[ supervisor . backoff ]``), not an array of tables.
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
# The key of a ``key = value`` line: bare, quoted or dotted.
_ASSIGNMENT = re.compile(r"^\s*([\w\-. \"']+?)\s*=")


def _line_of(path: str, key: str) -> int | None:
    """The line (from 1) of the TOML file ``path`` that sets the dotted ``key``, or that opens
    the table or inline table holding it; ``None`` if it cannot be told.

    tomllib reports no positions, so the file is scanned here: table headers and ``key =``
    lines, skipping multi-line strings. Only called to report an error.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    wanted = tuple(key.split("."))
    table: tuple[str, ...] = ()
    in_string = False
    for number, line in enumerate(lines, 1):
        continued = in_string  # this line is inside a multi-line string
        if line.count('"""') % 2 or line.count("'''") % 2:
            in_string = not in_string
        if continued:
            continue
        if header := _HEADER.match(line):
            table = _key_parts(header[1])
            if table == wanted:
                return number
        elif assignment := _ASSIGNMENT.match(line):
            full = table + _key_parts(assignment[1])
            if full == wanted[: len(full)]:
                return number
    return None


def _key_parts(text: str) -> tuple[str, ...]:
    """``server . "port"`` -> ``("server", "port")`` (a quoted key holding a dot is not split
    right, and then simply not found)."""
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def _nest_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"port": 9000, "backoff_max": None}`` into ``{"server": {"port": 9000}}``."""
    leaves = set(_leaf_keys())
    nested: dict[str, Any] = {}
    for name, value in overrides.items():
        key = OVERRIDE_KEYS.get(name, name)
        if key not in leaves:
            hint = _did_you_mean(name, [*OVERRIDE_KEYS, *leaves])
            raise TypeError(f'Config.build() got an unknown override "{name}"{hint}')
        if value is None:
            continue
        *tables, leaf = key.split(".")
        target = nested
        for table in tables:
            target = target.setdefault(table, {})
        target[leaf] = value
    return nested


def _merge(layers: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Deep-merge layers (later ones win) and record which source set each dotted key."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def merge_into(
        target: dict[str, Any], layer: Mapping[str, Any], prefix: str, source: str
    ) -> None:
        for name, value in layer.items():
            if isinstance(value, dict):
                merge_into(target.setdefault(name, {}), value, f"{prefix}{name}.", source)
            else:
                target[name] = value
                origins[f"{prefix}{name}"] = source

    for source, layer in layers:
        merge_into(merged, layer, "", source)
    return merged, origins


def _construct(
    cls: type, values: Mapping[str, Any], prefix: str, origins: Mapping[str, str]
) -> Any:
    """Instantiate ``cls`` (nested tables first) and blame errors on the right file and key."""
    tables = {f.name: f.metadata.get("table") for f in fields(cls)}
    kwargs = {
        name: _construct(table, value, f"{prefix}{name}.", origins)
        if (table := tables[name]) is not None
        else value
        for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError as error:
        if not prefix:
            raise
        raise error.within(prefix.rstrip("."), origins) from None
