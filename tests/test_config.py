"""Tests for axeom.config: defaults, file loading, precedence and every class of error message."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from axeom import config as _config
from axeom.config import (
    OVERRIDE_KEYS,
    BackoffConfig,
    Config,
    ConfigError,
    ServerConfig,
    SupervisorConfig,
    WorkerPolicyConfig,
    load_config_file,
)

APP = "myapp:app"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write ``config.toml`` in a temporary working directory and return its relative name."""
    monkeypatch.chdir(tmp_path)

    def write(text: str) -> str:
        Path("config.toml").write_text(textwrap.dedent(text), encoding="utf-8")
        return "config.toml"

    return write


def error_from_file(write: Callable[[str], str], text: str) -> str:
    """The message of the ConfigError that building from ``text`` raises."""
    with pytest.raises(ConfigError) as caught:
        Config.build(APP, file=write(text))
    return str(caught.value)


def leaf_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """Every dotted key of the schema, computed independently of the module's helpers."""
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        if f.name in {"app", "file"}:
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            keys |= leaf_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.add(f"{prefix}{f.name}")
    return keys


# ----------------------------------------------------------------------------- defaults


def test_defaults_are_the_documented_values() -> None:
    """Without file or overrides every knob has the value shown in the documented TOML."""
    config = Config.build(APP)
    assert config.app == APP
    assert config.file is None
    assert config.server == ServerConfig(
        host="127.0.0.1", port=8000, workers=0, log_level="info", graceful_timeout=10.0
    )
    assert config.supervisor == SupervisorConfig(
        strategy="one_for_one",
        max_restarts=5,
        max_seconds=30.0,
        backoff=BackoffConfig(initial=0.1, max=5.0, multiplier=2.0, jitter=0.1),
        shutdown_timeout=15.0,
    )
    assert config.workers == WorkerPolicyConfig(
        restart="permanent", heartbeat_interval=1.0, heartbeat_timeout=30.0, block_warning=1.0
    )


def test_documented_example_file_gives_the_defaults(config_file: Callable[[str], str]) -> None:
    """The example file from the module docs parses to exactly the defaults."""
    path = config_file(
        """
        [server]
        host = "127.0.0.1"
        port = 8000
        workers = 0
        log_level = "info"
        graceful_timeout = 10.0
        max_pending_handshakes = 1024
        max_pending_handshakes_per_address = 64
        max_head_size = 16384
        request_timeout = 10.0
        max_body_size = 1048576
        log_format = "text"
        access_log = true

        [supervisor]
        strategy = "one_for_one"
        max_restarts = 5
        max_seconds = 30
        backoff = { initial = 0.1, max = 5.0, multiplier = 2.0, jitter = 0.1 }
        shutdown_timeout = 15

        [workers]
        restart = "permanent"
        heartbeat_interval = 1.0
        heartbeat_timeout = 30.0
        block_warning = 1.0
        """
    )
    assert Config.build(APP, file=path) == dataclasses.replace(Config.build(APP), file=path)


def test_single_process_means_zero_workers() -> None:
    """``workers = 0`` is development mode; any positive count is the multi-process runtime."""
    assert ServerConfig().single_process is True
    assert ServerConfig(workers=1).single_process is False


def test_configs_are_frozen() -> None:
    """A built config cannot be mutated by a component that receives it."""
    config = Config.build(APP)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]


# ----------------------------------------------------------------------------- file values


def test_every_key_is_read_from_the_file(config_file: Callable[[str], str]) -> None:
    """Each knob set in the file replaces its default."""
    path = config_file(
        """
        [server]
        host = "0.0.0.0"
        port = 9000
        workers = 4
        log_level = "debug"
        graceful_timeout = 3.5

        [supervisor]
        strategy = "one_for_all"
        max_restarts = 2
        max_seconds = 60.0
        shutdown_timeout = 4.0

        [supervisor.backoff]
        initial = 0.5
        max = 8.0
        multiplier = 3.0
        jitter = 0.0

        [workers]
        restart = "transient"
        heartbeat_interval = 2.0
        heartbeat_timeout = 9.0
        """
    )
    config = Config.build(APP, file=path)
    assert config.file == "config.toml"
    assert config.server == ServerConfig("0.0.0.0", 9000, 4, "debug", 3.5)
    assert config.supervisor == SupervisorConfig(
        "one_for_all", 2, 60.0, BackoffConfig(0.5, 8.0, 3.0, 0.0), 4.0
    )
    assert config.workers == WorkerPolicyConfig("transient", 2.0, 9.0)


def test_ints_are_accepted_for_floats_and_stored_as_floats(
    config_file: Callable[[str], str],
) -> None:
    """``max_seconds = 30`` is a valid float knob and comes back as ``30.0`` (a float)."""
    config = Config.build(APP, file=config_file("[supervisor]\nmax_seconds = 30\nbackoff.max = 7"))
    assert type(config.supervisor.max_seconds) is float
    assert config.supervisor.max_seconds == 30.0
    assert type(config.supervisor.backoff.max) is float


def test_partial_backoff_table_keeps_other_defaults(config_file: Callable[[str], str]) -> None:
    """Setting one backoff key leaves the other three at their defaults."""
    config = Config.build(APP, file=config_file("[supervisor]\nbackoff = { max = 1.0 }"))
    assert config.supervisor.backoff == BackoffConfig(initial=0.1, max=1.0, multiplier=2.0)


@pytest.mark.parametrize(
    "text",
    [
        "[server]\nport = 0",
        "[server]\nport = 65535",
        "[supervisor]\nmax_restarts = 0",
        "[supervisor]\nbackoff = { initial = 0, max = 0, multiplier = 1, jitter = 0 }",
        "[supervisor]\nbackoff = { initial = 2.0, max = 2.0, jitter = 1 }",
    ],
)
def test_boundary_values_are_accepted(config_file: Callable[[str], str], text: str) -> None:
    """Inclusive range ends (port 0/65535, max == initial, jitter 0/1, ...) are valid."""
    assert isinstance(Config.build(APP, file=config_file(text)), Config)


def test_load_config_file_returns_the_raw_table(config_file: Callable[[str], str]) -> None:
    """load_config_file only parses: unknown keys survive and nothing is converted."""
    raw = load_config_file(config_file("[server]\nport = 1\n[extra]\nx = true"))
    assert raw == {"server": {"port": 1}, "extra": {"x": True}}


# ----------------------------------------------------------------------------- precedence


def test_override_beats_file_beats_default(config_file: Callable[[str], str]) -> None:
    """An override wins over the file, the file wins over the default, per key."""
    path = config_file("[server]\nport = 9000\nhost = '0.0.0.0'")
    config = Config.build(APP, file=path, port=9100)
    assert config.server.port == 9100  # override
    assert config.server.host == "0.0.0.0"  # file
    assert config.server.workers == 0  # default


def test_none_override_means_not_given(config_file: Callable[[str], str]) -> None:
    """Passing ``port=None`` (an unset CLI option) keeps the file's value."""
    config = Config.build(APP, file=config_file("[server]\nport = 9000"), port=None, workers=None)
    assert config.server.port == 9000
    assert config.server.workers == 0


def test_nested_and_dotted_overrides(config_file: Callable[[str], str]) -> None:
    """``backoff_max`` and the dotted key ``supervisor.backoff.jitter`` both reach the backoff."""
    path = config_file("[supervisor.backoff]\nmax = 9.0\njitter = 0.5")
    config = Config.build(APP, file=path, backoff_max=2, **{"supervisor.backoff.jitter": 0.0})
    assert config.supervisor.backoff == BackoffConfig(initial=0.1, max=2.0, jitter=0.0)


def test_override_names_cover_every_knob() -> None:
    """Every knob of the schema can be overridden by a keyword name (and only knobs can)."""
    assert set(OVERRIDE_KEYS.values()) == leaf_keys()
    assert len(set(OVERRIDE_KEYS.values())) == len(OVERRIDE_KEYS)


def test_unknown_override_name_is_a_type_error() -> None:
    """A misspelt override is a programming error, reported like a bad keyword argument."""
    with pytest.raises(TypeError, match=r'unknown override "prot" \(did you mean "port"\?\)'):
        Config.build(APP, prot=9000)


def test_invalid_override_names_overrides_as_source() -> None:
    """Values from the command line/environment are blamed on ``overrides``, not on a file."""
    with pytest.raises(ConfigError) as caught:
        Config.build(APP, port=70000)
    assert str(caught.value) == "overrides: server.port must be an integer in 0..65535, got 70000"


def test_override_can_fix_an_invalid_file_value(config_file: Callable[[str], str]) -> None:
    """Only the merged value is validated, so an override may replace a bad file value."""
    config = Config.build(APP, file=config_file("[server]\nport = 70000"), port=8080)
    assert config.server.port == 8080


# ----------------------------------------------------------------------------- error messages


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[supervisor]\nmax_restarts = "five"',
            'config.toml:2: supervisor.max_restarts must be an integer >= 0, got "five"',
        ),
        (
            "[supervisor]\nmax_restarts = -1",
            "config.toml:2: supervisor.max_restarts must be an integer >= 0, got -1",
        ),
        (
            "[server]\nworkers = 2.5",
            "config.toml:2: server.workers must be an integer >= 0, got 2.5",
        ),
        (
            "[server]\nworkers = -1",
            "config.toml:2: server.workers must be an integer >= 0, got -1",
        ),
        (
            "[server]\nport = 65536",
            "config.toml:2: server.port must be an integer in 0..65535, got 65536",
        ),
        (
            "[server]\nport = -1",
            "config.toml:2: server.port must be an integer in 0..65535, got -1",
        ),
        (
            "[server]\nport = [8000]",
            "config.toml:2: server.port must be an integer in 0..65535, got an array",
        ),
        (
            '[server]\nhost = ""',
            'config.toml:2: server.host must be a non-empty string, got ""',
        ),
        (
            "[server]\nhost = 127",
            "config.toml:2: server.host must be a non-empty string, got 127",
        ),
        (
            '[server]\ngraceful_timeout = "10s"',
            'config.toml:2: server.graceful_timeout must be a number > 0, got "10s"',
        ),
        (
            "[server]\ngraceful_timeout = nan",
            "config.toml:2: server.graceful_timeout must be a number > 0, got nan",
        ),
        (
            "[supervisor]\nshutdown_timeout = inf",
            "config.toml:2: supervisor.shutdown_timeout must be a finite number, got inf",
        ),
    ],
)
def test_type_and_range_errors(config_file: Callable[[str], str], text: str, message: str) -> None:
    """A wrong type or out-of-range value names file, dotted key, expectation and value."""
    assert error_from_file(config_file, text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[server]\nport = true",
            "config.toml:2: server.port must be an integer in 0..65535, got true",
        ),
        (
            "[server]\ngraceful_timeout = false",
            "config.toml:2: server.graceful_timeout must be a number > 0, got false",
        ),
        (
            "[supervisor.backoff]\njitter = true",
            "config.toml:2: supervisor.backoff.jitter must be a number between 0 and 1, got true",
        ),
    ],
)
def test_bools_are_never_numbers(
    config_file: Callable[[str], str], text: str, message: str
) -> None:
    """``true``/``false`` are refused where a number is expected, even though bool is an int."""
    assert error_from_file(config_file, text) == message


@pytest.mark.parametrize(
    "key",
    [
        "server.graceful_timeout",
        "supervisor.max_seconds",
        "supervisor.shutdown_timeout",
        "workers.heartbeat_interval",
        "workers.heartbeat_timeout",
    ],
)
@pytest.mark.parametrize("value", [0, -1.5])
def test_durations_must_be_positive(
    config_file: Callable[[str], str], key: str, value: float
) -> None:
    """Every duration must be > 0: a zero timeout or window makes no sense."""
    section, name = key.split(".")
    message = error_from_file(config_file, f"[{section}]\n{name} = {value}")
    assert message == f"config.toml:2: {key} must be a number > 0, got {value}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[workers]\nheartbeat_interval = 2.0\nheartbeat_timeout = 2.0",
            "config.toml:3: workers.heartbeat_timeout must be greater than heartbeat_interval"
            " (2.0), got 2.0",
        ),
        (
            "[supervisor.backoff]\ninitial = 1.0\nmax = 0.5",
            "config.toml:3: supervisor.backoff.max must be >= initial (1.0), got 0.5",
        ),
        (
            "[supervisor.backoff]\nmultiplier = 0.5",
            "config.toml:2: supervisor.backoff.multiplier must be a number >= 1, got 0.5",
        ),
        (
            "[supervisor.backoff]\ninitial = -0.1",
            "config.toml:2: supervisor.backoff.initial must be a number >= 0, got -0.1",
        ),
        (
            "[supervisor.backoff]\njitter = -0.1",
            "config.toml:2: supervisor.backoff.jitter must be a number between 0 and 1, got -0.1",
        ),
        (
            "[supervisor.backoff]\njitter = 1.5",
            "config.toml:2: supervisor.backoff.jitter must be a number between 0 and 1, got 1.5",
        ),
    ],
)
def test_backoff_and_heartbeat_constraints(
    config_file: Callable[[str], str], text: str, message: str
) -> None:
    """Cross-field rules (timeout > interval, max >= initial) and backoff ranges are enforced."""
    assert error_from_file(config_file, text) == message


def test_cross_field_error_blames_the_file_that_set_the_other_key(
    config_file: Callable[[str], str],
) -> None:
    """A default heartbeat_timeout broken by the file's interval is reported against the file."""
    message = error_from_file(config_file, "[workers]\nheartbeat_interval = 40")
    assert message == (
        "config.toml:2: workers.heartbeat_timeout must be greater than heartbeat_interval (40.0),"
        " got 30.0"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[server]\nmax_head_size = 100",
            "config.toml:2: server.max_head_size must be an integer in 1024..1048576, got 100",
        ),
        (
            "[server]\nmax_head_size = 2097152",
            "config.toml:2: server.max_head_size must be an integer in 1024..1048576, got 2097152",
        ),
        (
            '[server]\nrequest_timeout = "10s"',
            'config.toml:2: server.request_timeout must be a number > 0 and <= 600, got "10s"',
        ),
        (
            "[server]\nrequest_timeout = 0",
            "config.toml:2: server.request_timeout must be a number > 0 and <= 600, got 0",
        ),
        (
            "[server]\nrequest_timeout = 3600",
            "config.toml:2: server.request_timeout must be a number > 0 and <= 600, got 3600",
        ),
        (
            "[server]\nmax_body_size = -1",
            "config.toml:2: server.max_body_size must be an integer in 0..1073741824, got -1",
        ),
        (
            "[server]\nmax_body_size = 1.5",
            "config.toml:2: server.max_body_size must be an integer in 0..1073741824, got 1.5",
        ),
        (
            "[server]\nmax_pending_handshakes = 0",
            "config.toml:2: server.max_pending_handshakes must be an integer >= 1, got 0",
        ),
        (
            "[server]\nmax_head_sise = 4096",
            'config.toml:2: unknown key "server.max_head_sise" (did you mean "max_head_size"?)',
        ),
    ],
)
def test_request_limits_are_checked(
    config_file: Callable[[str], str], text: str, message: str
) -> None:
    """The request limits read by the acceptor (or the one process) are checked up front."""
    assert error_from_file(config_file, text) == message


def test_request_limits_reach_the_handshake_limits(config_file: Callable[[str], str]) -> None:
    """Every request limit of ``[server]`` is among what ``HandshakeLimits`` is built from."""
    from axeom.trio_runtime import HandshakeLimits

    text = (
        "[server]\nmax_pending_handshakes = 8\nmax_pending_handshakes_per_address = 2\n"
        "max_head_size = 2048\nrequest_timeout = 1.5\nmax_body_size = 0\n"
    )
    server = Config.build(APP, file=config_file(text)).server
    assert HandshakeLimits(**server.handshake_limits()) == HandshakeLimits(
        max_head_size=2048, timeout=1.5, max_pending=8, max_pending_per_address=2, max_body_size=0
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # Deeper in a real file, after comments, blank lines and other sections.
        ('# axeom\n\n[server]\nport = 8000\n\n[workers]\nrestart = "always"\n', 7),
        # A dotted key at the top level, and an indented one with a comment.
        ('server.port = "80"\n', 1),
        ('[server]\n  port = "80"   # the port\n', 2),
        # Inside an inline table: the line that holds it.
        ("[server]\nport = 1\n[supervisor]\nbackoff = { initial = -1.0 }\n", 4),
        # A table header spelt with spaces.
        ("[ supervisor . backoff ]\njitter = 2\n", 2),
        # A multi-line string that looks like TOML is not read as keys.
        ('[server]\nhost = """\nport = 1\n"""\nport = "x"\n', 5),
    ],
)
def test_errors_name_the_line_of_the_key(
    config_file: Callable[[str], str], text: str, line: int
) -> None:
    """The line number in a message is the line the user wrote the bad key on."""
    message = error_from_file(config_file, text)
    assert message.startswith(f"config.toml:{line}: "), message


def test_cross_field_error_from_overrides() -> None:
    """A too-small heartbeat_timeout given as an override is blamed on the overrides."""
    with pytest.raises(ConfigError) as caught:
        Config.build(APP, heartbeat_timeout=0.5)
    assert str(caught.value) == (
        "overrides: workers.heartbeat_timeout must be greater than heartbeat_interval (1.0),"
        " got 0.5"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[supervisor]\nstrategy = "one_for_none"',
            'config.toml:2: supervisor.strategy must be one of "one_for_one", "one_for_all",'
            ' got "one_for_none" (did you mean "one_for_one"?)',
        ),
        (
            '[workers]\nrestart = "always"',
            'config.toml:2: workers.restart must be one of "permanent", "transient", "temporary",'
            ' got "always"',
        ),
        (
            '[server]\nlog_level = "INFO"',
            'config.toml:2: server.log_level must be one of "critical", "error", "warning", "info",'
            ' "debug", got "INFO" (did you mean "info"?)',
        ),
        (
            "[server]\nlog_level = 20",
            'config.toml:2: server.log_level must be one of "critical", "error", "warning", "info",'
            ' "debug", got 20',
        ),
    ],
)
def test_enum_errors_list_the_choices(
    config_file: Callable[[str], str], text: str, message: str
) -> None:
    """Enumerated knobs list every accepted value and suggest the closest one."""
    assert error_from_file(config_file, text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[supervisor]\nmax_restart = 3",
            'config.toml:2: unknown key "supervisor.max_restart" (did you mean "max_restarts"?)',
        ),
        (
            "[server]\nbananas = 1",
            'config.toml:2: unknown key "server.bananas"',
        ),
        (
            "[supervisor]\nbackoff = { maximum = 3.0 }",
            'config.toml:2: unknown key "supervisor.backoff.maximum" (did you mean "max"?)',
        ),
        (
            "[server.tls]\ncert = 'x'",
            'config.toml:1: unknown key "server.tls"',
        ),
        (
            "port = 8000",
            'config.toml:1: unknown key "port" (did you mean "server.port"?)',
        ),
    ],
)
def test_unknown_keys(config_file: Callable[[str], str], text: str, message: str) -> None:
    """A key the schema does not have is rejected, with a difflib suggestion when one is close."""
    assert error_from_file(config_file, text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[sever]\nport = 1",
            'config.toml:1: unknown section "sever" (did you mean "server"?)',
        ),
        (
            "[logging]\nlevel = 'info'",
            'config.toml:1: unknown section "logging"',
        ),
        (
            "workers = 4",
            'config.toml:1: workers must be a table, got 4 (did you mean "server.workers"?)',
        ),
        (
            "[supervisor]\nbackoff = 2",
            "config.toml:2: supervisor.backoff must be a table, got 2",
        ),
    ],
)
def test_unknown_sections_and_misplaced_tables(
    config_file: Callable[[str], str], text: str, message: str
) -> None:
    """Unknown sections are rejected, and a scalar where a table belongs is explained."""
    assert error_from_file(config_file, text) == message


def test_first_error_in_file_order_is_reported(config_file: Callable[[str], str]) -> None:
    """With several unknown keys, the message is about the first one in the file."""
    message = error_from_file(config_file, "[server]\nprot = 1\nhots = 'x'")
    assert message == 'config.toml:2: unknown key "server.prot" (did you mean "port"?)'


# ----------------------------------------------------------------------------- the file itself


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that does not exist is named in the error, with the OS reason."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        Config.build(APP, file="missing.toml")
    assert str(caught.value) == "missing.toml: cannot read config file: No such file or directory"
    assert caught.value.source == "missing.toml"


def test_directory_instead_of_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path that cannot be read as a file (here a directory) is a ConfigError, not OSError."""
    monkeypatch.chdir(tmp_path)
    Path("conf.d").mkdir()
    with pytest.raises(ConfigError, match=r"^conf\.d: cannot read config file: Is a directory$"):
        load_config_file("conf.d")


def test_toml_syntax_error_has_line_and_column(config_file: Callable[[str], str]) -> None:
    """A syntax error keeps tomllib's message, which locates it by line and column."""
    text = "[server]\nport = = 3\n"
    with pytest.raises(tomllib.TOMLDecodeError) as parse:
        tomllib.loads(text)
    message = error_from_file(config_file, text)
    assert message == f"config.toml: invalid TOML: {parse.value}"
    assert "line 2, column" in message


def test_file_that_is_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes that are not UTF-8 give a ConfigError naming the file and the offset."""
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_bytes(b"[server]\nhost = '\xff'\n")
    with pytest.raises(ConfigError) as caught:
        Config.build(APP, file="config.toml")
    assert str(caught.value) == "config.toml: not valid UTF-8 (at byte 17)"


# ----------------------------------------------------------------------------- the objects


def test_direct_construction_is_validated_too() -> None:
    """A dataclass built in Python is checked as well; the error then has no source."""
    with pytest.raises(ConfigError) as caught:
        SupervisorConfig(max_restarts=-1)
    assert str(caught.value) == "max_restarts must be an integer >= 0, got -1"
    assert (caught.value.key, caught.value.source) == ("max_restarts", None)


def test_app_must_be_an_import_string() -> None:
    """An empty app string is rejected before anything tries to import it."""
    with pytest.raises(ConfigError) as caught:
        Config.build("")
    assert str(caught.value) == 'app must be an import string like "package.module:app", got ""'


def test_config_error_parts_and_pickling() -> None:
    """ConfigError exposes its parts and survives pickling (it may cross process boundaries)."""
    error = ConfigError("must be an integer >= 0, got -1", "server.workers", "config.toml", line=3)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "config.toml:3: server.workers must be an integer >= 0, got -1"
    assert (copy.detail, copy.key, copy.source, copy.line) == (
        "must be an integer >= 0, got -1",
        "server.workers",
        "config.toml",
        3,
    )
    assert isinstance(copy, Exception)


def test_config_module_does_not_import_trio() -> None:
    """axeom.config must stay importable without trio (it is loaded standalone, by path)."""
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cfg', {_config.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['cfg'] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert 'trio' not in sys.modules, 'trio was imported'\n"
        "assert not any(name.startswith('axeom') for name in sys.modules), 'axeom was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
