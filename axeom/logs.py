"""How every process of ``axeom run`` logs: one function sets it up, the same
way in the single-process server, the supervisor, the acceptor, the workers
and the Redis bridge, from the same settings (``LogSettings``, which the
supervisor passes to its children).

Two formats: ``text`` (a line a person reads, tagged ``[worker-1]`` in a
tree) and ``json`` (one object per line for a log pipeline). Every record
carries its process's role and name, and, when it is logged while a socket's
handler runs, that socket's id and route (``record.socket_id``,
``record.route``; ``None`` otherwise): a ``--log-config`` format can use them
as ``%(socket_id)s``. The socket is found by walking the logging thread's
stack up to the handler's frame when a record is made, so the per-message
path pays nothing for it.

The access log (logger ``axeom.access``, level INFO) has one line per
answered request head: 101s and rejections alike, with status, method, path
(without the query string, which often carries tokens), client address and
the time from accept to the answer. Connections shed before their head was
read (429, 408 under a flood) are counted in ``axeom status``, not logged one
by one: under attack that would be the attack's volume in log lines.
"""

from __future__ import annotations

import configparser
import datetime
import json
import logging
import logging.config
import os
import sys
import time
import traceback
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "JsonFormatter",
    "LogConfigError",
    "LogFormat",
    "LogSettings",
    "announce",
    "configure_logging",
    "error_line",
    "find_handler",
    "format_stack",
    "log_access",
    "log_for_socket",
    "role_of",
    "running_socket",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")

ACCESS_LOGGER = logging.getLogger("axeom.access")
"""One INFO record per answered request head; ``--no-access-log`` disables it."""

# File name endings of a --log-config file, by how it is read.
JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")
INI_SUFFIXES = (".ini", ".cfg", ".conf")

# How many frames a record's maker walks up looking for a handler's frame: a
# handler's call sits a dozen frames above the loop; deeper than this, a log
# call is not in a handler (or is, under so much of the app's own code that
# the walk would cost more than it says).
MAX_FRAME_WALK = 64


class LogConfigError(Exception):
    """A ``--log-config`` file that cannot be read or applied: one line, its file named."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    """How a process logs: what ``axeom run`` was given, passed to every child."""

    level: str = "info"
    format: LogFormat = "text"
    config: str | None = None  # a dictConfig (.json, .yaml) or fileConfig (.ini) file
    access_log: bool = True

    def to_options(self) -> dict[str, Any]:
        """The keys of a child's start-up settings that carry these."""
        return {
            "log_level": self.level,
            "log_format": self.format,
            "log_config": self.config,
            "access_log": self.access_log,
        }

    @classmethod
    def of(cls, server: Any) -> LogSettings:
        """The settings a ``ServerConfig`` (``config.server``) asks for."""
        return cls(server.log_level, server.log_format, server.log_config, server.access_log)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> LogSettings:
        """Read back ``to_options``; a supervisor that predates a key passes
        none, which means what it did then (text, no file, access log on)."""
        log_format = options.get("log_format", "text")
        return cls(
            level=options.get("log_level", "info"),
            format="json" if log_format == "json" else "text",
            config=options.get("log_config") or None,
            access_log=bool(options.get("access_log", True)),
        )


# -- who is logging --------------------------------------------------------------------------

_process = {"role": "server", "name": "server"}
# The roles whose processes run socket handlers: only their records are
# looked up the stack for a socket (the supervisor's never are).
HANDLER_ROLES = frozenset({"server", "worker"})
_walk = [True]  # this process runs handlers
_json_output = False  # announce() and error_line() print JSON too


def role_of(process: str | None) -> str:
    """The role of a process named ``process`` (``worker-3`` is a ``worker``;
    None is the single-process ``server``)."""
    if process is None:
        return "server"
    if process.startswith("worker"):
        return "worker"
    if process in ("redis-bridge", "bridge"):
        return "bridge"
    return process


def running_socket(frame: FrameType | None) -> tuple[Any, str] | None:
    """The socket's actor whose handler runs at ``frame`` (or below it), and
    the name of that handler (``message``, ``open``...), or None outside a handler."""
    found = find_handler(frame)
    return None if found is None else (found[1], found[2])


def find_handler(frame: FrameType | None) -> tuple[FrameType, Any, str] | None:
    """``running_socket``, with the actor's frame that calls the handler."""
    from .ws._actor import handler_frame  # the ws plugin, imported once logging is

    for _ in range(MAX_FRAME_WALK):
        if frame is None:
            return None
        found = handler_frame(frame)
        if found is not None:
            return frame, found[0], found[1]
        frame = frame.f_back
    return None


# The attributes the record factory adds to every record.
RECORD_FIELDS = ("role", "process_name", "socket_id", "route")
_MAKE_RECORD = logging.Logger.makeRecord.__code__


def _record_factory(previous: Any) -> Any:
    """A record factory that adds the process's role and name, and the socket
    of the handler that logs (if any), to every record, whoever formats it.

    ``Logger.makeRecord`` refuses an ``extra`` key the record already has
    (KeyError "Attempt to overwrite"), so a name given in the caller's
    ``extra`` (``extra={"route": ...}``, valid without Axeom) is left for
    ``extra`` to set: the caller's value wins, and the log call works."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = previous(*args, **kwargs)
        values = [_process["role"], _process["name"], None, None]
        caller = sys._getframe(1)
        if _walk[0] and record.name != ACCESS_LOGGER.name:
            found = running_socket(caller)
            if found is not None:
                ws = found[0].ws
                values[2:] = ws.id, ws.route
        extra = caller.f_locals.get("extra") if caller.f_code is _MAKE_RECORD else None
        for name, value in zip(RECORD_FIELDS, values, strict=True):
            if not extra or name not in extra:
                setattr(record, name, value)
        return record

    make.axeom = True  # type: ignore[attr-defined]
    return make


# -- formats ----------------------------------------------------------------------------------

# Attributes of an access record, copied into its JSON object.
ACCESS_FIELDS = ("status", "method", "path", "client", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC),
    ``level``, ``role``, ``process``, ``pid``, ``logger``, ``message``; then
    ``socket_id`` and ``route`` when the record is about a socket, the access
    fields on an access record, and ``exception`` (the traceback) when any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "role": getattr(record, "role", _process["role"]),
            "process": getattr(record, "process_name", _process["name"]),
            "pid": record.process,
            "logger": record.name,
            "message": _message(record),
        }
        socket_id = getattr(record, "socket_id", None)
        if socket_id is not None:
            out["socket_id"] = socket_id
            out["route"] = getattr(record, "route", None)
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _message(record: logging.LogRecord) -> str:
    """The record's message; for a log call that cannot be formatted (more
    ``%s`` than arguments, a message whose ``str`` raises) what was given and
    why it failed, so that the line stays one JSON object (``logging``'s own
    report of the error is a multi-line traceback on stderr)."""
    try:
        return record.getMessage()
    except Exception as exc:
        return (
            f"(unformattable log call: {type(exc).__name__}: {_safe_repr(exc)}) "
            f"message {_safe_repr(record.msg)}, arguments {_safe_repr(record.args)}"
        )


def _safe_repr(value: Any) -> str:
    try:
        return str(value) if isinstance(value, BaseException) else repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _iso(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_formatter(process: str | None) -> logging.Formatter:
    """The text format: in a tree, every line carries its process's name in
    brackets (``[worker-1]``): the children share the supervisor's stderr."""
    tag = f"[{process}] " if process is not None else ""
    return logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")


# -- setting it up ----------------------------------------------------------------------------


def configure_logging(settings: LogSettings, process: str | None = None) -> None:
    """Set up this process's logging from ``settings``: the one function every
    process of the tree calls, first thing, so that all of them log alike.

    With ``settings.config`` the file decides handlers, formats and levels
    (as uvicorn's ``--log-config``); only the access-log switch applies on
    top of it (``access_log`` off disables ``axeom.access`` whatever the file
    says). Without one, records at ``settings.level`` and above go to stderr
    in ``settings.format``.

    Raises:
        LogConfigError: the file cannot be read or applied.
    """
    global _json_output
    _process["role"], _process["name"] = role_of(process), process or "server"
    _walk[0] = _process["role"] in HANDLER_ROLES
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "axeom", False):
        logging.setLogRecordFactory(_record_factory(factory))
    _json_output = settings.format == "json" and settings.config is None
    if settings.config is not None:
        apply_log_config(settings.config)
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = JsonFormatter() if settings.format == "json" else _text_formatter(process)
        handler.setFormatter(formatter)
        root = logging.getLogger()
        for old in root.handlers[:]:
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(settings.level.upper())
    ACCESS_LOGGER.disabled = not settings.access_log


def apply_log_config(path: str) -> None:
    """Apply a logging configuration file: ``.json`` and ``.yaml``/``.yml``
    are ``logging.config.dictConfig`` dictionaries (YAML needs PyYAML),
    anything else is a ``logging.config.fileConfig`` (INI) file.

    Raises:
        LogConfigError: naming the file and what is wrong with it.
    """
    try:
        suffix = os.path.splitext(path)[1].lower()
        if suffix in JSON_SUFFIXES or suffix in YAML_SUFFIXES:
            logging.config.dictConfig(_load_dict(path, suffix))
        else:
            if not os.path.isfile(path):
                raise LogConfigError(f"{path}: cannot read log config: no such file")
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except OSError as exc:
        raise LogConfigError(f"{path}: cannot read log config: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
        raise LogConfigError(f"{path}: invalid log config: {_one_line(exc)}") from None
    except configparser.Error as exc:
        raise LogConfigError(f"{path}: invalid log config: {_one_line(exc)}") from None


def _load_dict(path: str, suffix: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    if suffix in JSON_SUFFIXES:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LogConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    else:
        loaded = _load_yaml(path, text)
    if not isinstance(loaded, dict):
        raise LogConfigError(f"{path}: a log config must be a mapping (dictConfig schema)")
    return loaded


def _load_yaml(path: str, text: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise LogConfigError(
            f"{path}: a YAML log config needs PyYAML (pip install pyyaml), "
            "or write it as .json or .ini"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LogConfigError(f"{path}: invalid YAML: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({' '.join(str(cause).split())})"
    return text


# -- lines outside the loggers ----------------------------------------------------------------


def announce(message: str, logger: str = "axeom.server") -> None:
    """Print a line a script waits for (``Axeom listening on ...``) on stdout,
    whatever the log level: as text, or as a JSON record with ``--log-format json``,
    so that every line of the output parses."""
    line = _json_line("INFO", logger, message) if _json_output else message
    try:
        print(line, flush=True)
    except BrokenPipeError:
        pass  # nobody reads our stdout (`| head -0`): serve on regardless


def error_line(message: str) -> str:
    """The fatal ``Error: ...`` line a process prints before it exits: as
    text, or as a JSON record at level CRITICAL with ``--log-format json``."""
    if _json_output:
        return _json_line("CRITICAL", "axeom", message)
    return f"Error: {message}"


def _json_line(level: str, logger: str, message: str) -> str:
    record = logging.LogRecord(logger, logging.getLevelName(level), "", 0, message, None, None)
    record.role, record.process_name = _process["role"], _process["name"]
    return JsonFormatter().format(record)


# -- the access log ---------------------------------------------------------------------------


# The text of an access line: client, request line, status, milliseconds.
ACCESS_FORMAT = '%s - "%s %s" %d %.2fms'


def log_access(
    status: int,
    method: str,
    path: str,
    client: tuple[str, int] | None,
    started: float,
) -> None:
    """One access line for an answered request head (``started``: the
    ``time.perf_counter()`` of its accept). Called once per handshake, never
    per message; when ``axeom.access`` is off it costs one cached check.

    The record is made and handled directly rather than through
    ``Logger.info``: that would look up the caller's file and line, which
    say nothing here and cost about a third of the line (measured).
    """
    if not ACCESS_LOGGER.isEnabledFor(logging.INFO):
        return
    duration = round((time.perf_counter() - started) * 1000, 2)
    address = "-" if client is None else f"{client[0]}:{client[1]}"
    fields = {
        "status": status,
        "method": method,
        "path": path,
        "client": address,
        "duration_ms": duration,
    }
    args = (address, method, path, status, duration)
    name = ACCESS_LOGGER.name
    record = ACCESS_LOGGER.makeRecord(
        name, logging.INFO, __file__, 0, ACCESS_FORMAT, args, None, "log_access", fields
    )
    ACCESS_LOGGER.handle(record)


def log_for_socket(logger: logging.Logger, level: int, ws: Any, msg: str, *args: Any) -> None:
    """Log a record about socket ``ws`` from outside its handlers (another
    thread, a runtime's own code): it carries that socket's id and route."""
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, "(axeom)", 0, msg, args, None)
    record.socket_id, record.route = ws.id, ws.route
    logger.handle(record)


def format_stack(frame: FrameType | None, below: FrameType | None = None) -> str:
    """``frame`` and its callers up to (not including) ``below``, or all of
    them, formatted as a traceback's lines (innermost last)."""
    frames = []
    while frame is not None and frame is not below:
        frames.append((frame, frame.f_lineno))
        frame = frame.f_back
    return "".join(traceback.format_list(traceback.StackSummary.extract(reversed(frames))))
