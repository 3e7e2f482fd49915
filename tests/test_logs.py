"""Logs of every process of ``axeom run``: JSON lines that parse, one access
line per handshake, app records tagged with their socket, ``--log-config``
and ``--no-access-log``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests._processes import ROOT, Server, run_axeom, running_axeom, wait_for

APP = "tests/apps/ops_app.py:app"
# Generous for a loaded 2-core machine: only a failure takes this long.
DEADLINE = 30.0


def _records(server: Server) -> list[dict[str, Any]]:
    """Every line the tree printed so far, each parsed as JSON (the test
    fails on the first line that is not an object)."""
    records = []
    for line in server.text().splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        records.append(record)
    return records


def _access(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["logger"] == "axeom.access"]


def _traffic(server: Server) -> list[tuple[int, str, int]]:
    """Three accepted sockets (each sends a message the handler logs), two
    refused by the hook (403) and one to no route (404): (status, path,
    client port) of each, in order."""
    done = []
    for index in range(3):
        with connect(f"{server.url}/say/n{index}", open_timeout=DEADLINE) as ws:
            ws.send(f"m{index}")
            assert ws.recv(timeout=DEADLINE) == f"logged m{index}"
            done.append((101, f"/say/n{index}", ws.socket.getsockname()[1]))
    for path, status in (("/say/x?deny=1", 403), ("/nowhere", 404), ("/say/y?deny=1", 403)):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{server.url}{path}", open_timeout=DEADLINE)
        assert refused.value.response.status_code == status
        done.append((status, path.split("?")[0], -1))
    return done


def _check_access(records: list[dict[str, Any]], done: list[tuple[int, str, int]]) -> None:
    """Exactly one access line per handshake, with its status, path and client."""
    access = _access(records)
    assert len(access) == len(done), access
    seen = sorted((r["status"], r["path"]) for r in access)
    assert seen == sorted((status, path) for status, path, _ in done)
    for record in access:
        assert record["method"] == "GET"
        assert record["client"].startswith("127.0.0.1:")
        assert record["duration_ms"] >= 0
    ports = {int(r["client"].rsplit(":", 1)[1]) for r in access if r["status"] == 101}
    assert ports == {port for status, _, port in done if status == 101}


def _check_handler_records(records: list[dict[str, Any]]) -> None:
    """The handler's own records carry their socket's id and route."""
    said = [r for r in records if r["logger"] == "opsapp"]
    assert len(said) == 3, said
    assert all(r["route"] == "/say/:name" and r["socket_id"] for r in said)
    assert len({r["socket_id"] for r in said}) == 3
    for record in records:
        assert {"time", "level", "role", "process", "pid", "logger", "message"} <= set(record)
        assert record["time"].endswith("Z")


@pytest.mark.parametrize(("workers", "loop"), [(2, "trio"), (0, "trio"), (0, "asyncio")])
def test_json_logs_parse_and_log_each_handshake_once(workers: int, loop: str) -> None:
    """``--log-format json``: every line of every process parses, each role
    appears, one access line per handshake (101s and refusals), and the
    handler's record names its socket and route."""
    with running_axeom(
        APP, "--port", "0", "--workers", str(workers), "--loop", loop, "--log-format", "json"
    ) as server:
        done = _traffic(server)
        wait_for(
            lambda: (
                len(_access(_records(server))) >= len(done)
                and len([r for r in _records(server) if r["logger"] == "opsapp"]) >= 3
            ),
            DEADLINE,
            "the access and handler lines",
            output=server.text,
        )
        records = _records(server)
    _check_access(records, done)
    _check_handler_records(records)
    processes = {(r["role"], r["process"]) for r in records}
    if workers:
        expected = {
            ("supervisor", "supervisor"),
            ("acceptor", "acceptor"),
            ("worker", "worker-1"),
            ("worker", "worker-2"),
        }
    else:
        expected = {("server", "server")}
    assert expected <= processes, processes


def test_odd_log_calls_keep_the_socket_and_the_json_lines() -> None:
    """A handler's ``extra`` with keys Axeom sets on records (``route``,
    ``role``, ``socket_id``) is the caller's, not a KeyError closing the socket
    with 1011; a log call that cannot be formatted (bad arguments, a message
    whose ``str`` raises) is still one JSON line, saying what went wrong."""
    with running_axeom(APP, "--port", "0", "--log-format", "json") as server:
        with connect(f"{server.url}/odd", open_timeout=DEADLINE) as ws:
            ws.send("m")
            assert ws.recv(timeout=DEADLINE) == "odd m"
        wait_for(
            lambda: len([r for r in _records(server) if r["logger"] == "opsapp"]) >= 3,
            DEADLINE,
            "the handler's three records",
            output=server.text,
        )
        said = [r for r in _records(server) if r["logger"] == "opsapp"]
    extra, bad_arguments, unprintable = said
    assert (extra["message"], extra["route"], extra["role"]) == ("with extra", "mine", "admin")
    assert extra["socket_id"] == 7
    assert "'%s and %s'" in bad_arguments["message"], bad_arguments
    assert "not enough arguments" in bad_arguments["message"]
    assert "no text for this one" in unprintable["message"], unprintable


def test_no_access_log_gives_no_access_line() -> None:
    """``--no-access-log``: handshakes are answered, none is logged."""
    with running_axeom(APP, "--port", "0", "--workers", "2", "--no-access-log") as server:
        _traffic(server)
        wait_for(
            lambda: server.text().count("handler got") >= 3,
            DEADLINE,
            "the handler lines",
            output=server.text,
        )
        assert "axeom.access" not in server.text()


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "axeom.log"


def test_log_config_dict_sends_records_where_it_says(tmp_path: Path, log_file: Path) -> None:
    """``--log-config x.json`` (a dictConfig): every process writes to the
    file in the file's format, which may use the socket's id and route."""
    config = tmp_path / "logging.json"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {
                    "custom": {"format": "CUSTOM|%(process_name)s|%(name)s|%(route)s|%(message)s"}
                },
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(log_file),
                        "formatter": "custom",
                    }
                },
                "root": {"level": "INFO", "handlers": ["file"]},
            }
        )
    )
    with running_axeom(APP, "--port", "0", "--workers", "2", "--log-config", str(config)) as server:
        done = _traffic(server)

        def written() -> list[str]:
            return log_file.read_text().splitlines() if log_file.exists() else []

        wait_for(
            lambda: sum("|axeom.access|" in line for line in written()) >= len(done),
            DEADLINE,
            "the access lines in the log file",
            output=lambda: "\n".join(written()),
        )
        lines = written()
        assert "axeom.access" not in server.text()  # nothing of it on stderr
    assert all(line.startswith("CUSTOM|") for line in lines if line)
    assert sum("|axeom.access|" in line for line in lines) == len(done)
    said = [line for line in lines if "|opsapp|" in line]
    assert len(said) == 3 and all("|/say/:name|handler got" in line for line in said)
    assert {line.split("|")[1] for line in lines} >= {"supervisor", "acceptor", "worker-1"}


def _configure(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    """``configure_logging`` with ``--log-config`` file ``name``, then one record."""
    path = tmp_path / name
    path.write_text(text)
    code = (
        "import logging\n"
        "from axeom.logs import LogSettings\n"
        "from axeom.process import configure_logging\n"
        f"configure_logging(LogSettings(config={str(path)!r}), 'worker-1')\n"
        "logging.getLogger('axeom.test').warning('hello')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


INI = """
[loggers]
keys=root
[handlers]
keys=err
[formatters]
keys=f
[logger_root]
level=INFO
handlers=err
[handler_err]
class=StreamHandler
args=(sys.stderr,)
formatter=f
[formatter_f]
format=INI %(role)s %(process_name)s %(message)s
"""


def test_log_config_ini_and_yaml(tmp_path: Path) -> None:
    """An ``.ini`` file is a fileConfig, a ``.yaml`` one a dictConfig."""
    result = _configure(tmp_path, "logging.ini", INI)
    assert result.stderr == "INI worker worker-1 hello\n", result.stderr
    yaml_text = (
        "version: 1\n"
        "formatters: {f: {format: 'YAML %(process_name)s %(message)s'}}\n"
        "handlers: {e: {class: logging.StreamHandler, formatter: f, stream: ext://sys.stderr}}\n"
        "root: {level: INFO, handlers: [e]}\n"
    )
    result = _configure(tmp_path, "logging.yaml", yaml_text)
    assert result.stderr == "YAML worker-1 hello\n", result.stderr


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.json", "{not json", "bad.json:1: invalid JSON"),
        ("bad.json", '{"version": 1, "handlers": {"h": {"class": "no.Such"}}}', "invalid log"),
        ("bad.ini", "[loggers]\nkeys=root\n", "invalid log config"),
    ],
)
def test_a_bad_log_config_is_one_line_and_status_2(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    """A log config that cannot be applied: one ``Error:`` line naming the
    file, status 2, no traceback."""
    result = _configure(tmp_path, name, text)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ") and expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_missing_log_config_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """``--log-config`` naming no file: a config error, exit 2, no tree started."""
    missing = os.path.join(tmp_path, "nope.json")
    result = run_axeom("run", APP, "--workers", "2", "--port", "0", "--log-config", missing)
    assert result.returncode == 2
    assert "Error: --log-config (or AXEOM_LOG_CONFIG): names no file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nlog_format = "xml"', 'config.toml:2: server.log_format must be one of "text"'),
        ('[server]\naccess_log = "no"', "config.toml:2: server.access_log must be true or false"),
        ("[workers]\nblock_warning = -1", "config.toml:2: workers.block_warning must be a number"),
        ('[server]\nlog_config = "nope.json"', "config.toml:2: server.log_config names no file"),
    ],
)
def test_log_keys_of_the_config_file_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    """A bad logging or watchdog key: one line at the file's line, before anything starts."""
    from axeom.config import Config, ConfigError

    path = tmp_path / "config.toml"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)  # the error names the file as given
    with pytest.raises(ConfigError) as error:
        Config.build("app:app", "config.toml")
    assert str(error.value).startswith(message), str(error.value)
