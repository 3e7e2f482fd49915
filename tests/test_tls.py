"""TLS (``wss://``) through a real ``axeom run``: a certificate made here
(trustme), real ``wss://`` clients (the websockets library's), on every way
a node serves TLS: one trio process, a tree whose workers run TLS (the
acceptor places connections before their handshake), one asyncio process."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from tests._processes import ROOT, Server, run_axeom, running_axeom, running_command

APP = "tests/apps/tls_app.py:app"
# A short request timeout and a small cap of unfinished heads, so that the
# slowloris test sees both act within seconds.
CONFIG = """\
[server]
request_timeout = 1.0
max_pending_handshakes = 8
"""
# Deadline of any one client exchange: generous for a loaded 2-core machine.
EXCHANGE_TIMEOUT = 10.0
# By then a connection that never finished its handshake must be closed: the
# request timeout (1 s) plus a wide margin for load.
CUT_WITHIN = 8.0
MODES = {
    "trio-w0": ("--workers", "0"),
    "trio-w2": ("--workers", "2"),
    "asyncio-w0": ("--workers", "0", "--loop", "asyncio"),
}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    """Certificate and key files for 127.0.0.1, and a client context trusting them."""
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = folder / "cert.pem", folder / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return cert, key, client


@pytest.fixture(scope="module", params=list(MODES))
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    certificate: tuple[Path, Path, ssl.SSLContext],
) -> Iterator[Server]:
    cert, key, _ = certificate
    config = tmp_path_factory.mktemp("tls-config") / "axeom.toml"
    config.write_text(CONFIG)
    args = ["--port", "0", "--config", str(config), "--ssl-certfile", str(cert)]
    with running_axeom(APP, *args, "--ssl-keyfile", str(key), *MODES[request.param]) as running:
        yield running


@pytest.fixture
def client_context(certificate: tuple[Path, Path, ssl.SSLContext]) -> ssl.SSLContext:
    return certificate[2]


def url(server: Server, path: str) -> str:
    return f"wss://127.0.0.1:{server.port}{path}"


def exchange(address: str, context: ssl.SSLContext, message: str | None) -> tuple[str, list[str]]:
    """Connect, send ``message`` (if any), return the first message received
    and the extensions negotiated."""

    async def run() -> tuple[str, list[str]]:
        async with asyncio.timeout(EXCHANGE_TIMEOUT):
            async with connect(address, ssl=context, max_size=None) as ws:
                if message is not None:
                    await ws.send(message)
                received = await ws.recv()
                assert isinstance(received, str)
                return received, [ext.name for ext in ws.protocol.extensions]

    return asyncio.run(run())


def test_echo_over_tls(server: Server, client_context: ssl.SSLContext) -> None:
    """A wss:// client is served, and the app knows the handshake came over TLS."""
    assert exchange(url(server, "/echo"), client_context, "hi")[0] == "hi"
    assert exchange(url(server, "/scheme"), client_context, None)[0] == "wss True"


def test_permessage_deflate_over_tls(server: Server, client_context: ssl.SSLContext) -> None:
    """Compression is negotiated and works inside TLS, on a message of many records."""
    message = "compressible " * 20000
    echoed, extensions = exchange(url(server, "/z"), client_context, message)
    assert extensions == ["permessage-deflate"]
    assert echoed == message


def test_a_refused_handshake_over_tls(server: Server, client_context: ssl.SSLContext) -> None:
    """A route's rejection reaches the client over TLS with its status."""
    with pytest.raises(InvalidStatus) as refused:
        exchange(url(server, "/refused"), client_context, None)
    assert refused.value.response.status_code == 403
    assert b"not you" in refused.value.response.body


def test_a_plaintext_client_on_the_tls_port(server: Server, client_context: ssl.SSLContext) -> None:
    """A client speaking plain HTTP to the TLS port is closed cleanly (no hang),
    and the server serves the next TLS client."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=EXCHANGE_TIMEOUT) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n")
        assert read_until_closed(sock, EXCHANGE_TIMEOUT)
    assert exchange(url(server, "/echo"), client_context, "still")[0] == "still"


def test_a_slowloris_over_tls_is_cut(server: Server, client_context: ssl.SSLContext) -> None:
    """Connections that never finish their TLS handshake, or their head inside
    TLS, are cut by the request timeout and the cap of unfinished heads, and a
    prompt client is served meanwhile: the process that holds them (the one
    process, or a worker) is not pinned."""
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(12)]
    slow_head = client_context.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=EXCHANGE_TIMEOUT),
        server_hostname="127.0.0.1",
    )
    try:
        slow_head.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        assert exchange(url(server, "/echo"), client_context, "served")[0] == "served"
        started = time.monotonic()
        for sock in [*silent, slow_head]:
            sock.settimeout(max(0.1, CUT_WITHIN - (time.monotonic() - started)))
            assert read_until_closed(sock, CUT_WITHIN), f"connection {sock} not cut in time"
    finally:
        for sock in [*silent, slow_head]:
            sock.close()


def read_until_closed(sock: socket.socket, timeout: float) -> bool:
    """True once the peer closed the connection (EOF or reset) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
    return False


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("--ssl-certfile {missing}", "--ssl-certfile (or AXEOM_SSL_CERTFILE): "),
        ("--ssl-certfile {cert} --ssl-keyfile {other}", "does not match"),
        ("--ssl-certfile {cert} --ssl-keyfile {encrypted}", "is encrypted"),
        (
            "--ssl-certfile {cert} --ssl-keyfile {encrypted} --ssl-keyfile-password wrong",
            "--ssl-keyfile-password (or AXEOM_SSL_KEYFILE_PASSWORD): wrong password",
        ),
        ("--ssl-keyfile {key}", "needs ssl_certfile"),
        ("--ssl-certfile {cert} --ssl-keyfile {cert}", "holds no PEM private key"),
        (
            "--ssl-certfile {cert} --ssl-keyfile {key} --workers 2 --loop asyncio",
            'needs loop = "trio"',
        ),
    ],
    ids=["missing", "mismatch", "no-password", "wrong-password", "no-cert", "no-key", "loop"],
)
def test_bad_tls_settings_are_one_line(
    tmp_path: Path,
    certificate: tuple[Path, Path, ssl.SSLContext],
    options: str,
    says: str,
) -> None:
    """A TLS setting that cannot work stops `axeom run` at once: status 2, one
    line naming the option, no traceback, before any process starts."""
    cert, key, _ = certificate
    files = {
        "missing": str(tmp_path / "missing.pem"),
        "cert": str(cert),
        "key": str(key),
        "other": str(other_key(tmp_path)),
        "encrypted": str(encrypted_key(tmp_path, key)),
    }
    args = [option.format(**files) for option in options.split()]
    result = run_axeom("run", APP, "--port", "0", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def other_key(folder: Path) -> Path:
    """The key of another certificate."""
    path = folder / "other.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(path))
    return path


def encrypted_key(folder: Path, key: Path) -> Path:
    """``key`` encrypted with the password "secret"."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(key.read_bytes(), None)
    path = folder / "encrypted.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


def test_an_encrypted_key_with_its_password_serves(
    tmp_path: Path, certificate: tuple[Path, Path, ssl.SSLContext]
) -> None:
    """--ssl-keyfile-password opens an encrypted key (given in the environment here)."""
    cert, key, client = certificate
    args = ["--port", "0", "--ssl-certfile", str(cert)]
    args += ["--ssl-keyfile", str(encrypted_key(tmp_path, key))]
    with running_axeom(APP, *args, env={"AXEOM_SSL_KEYFILE_PASSWORD": "secret"}) as server:
        assert exchange(url(server, "/echo"), client, "opened")[0] == "opened"


def readme_tls_command() -> list[str]:
    """The README's TLS quick start command (the line that names --ssl-certfile)."""
    readme = (Path(ROOT) / "README.md").read_text()
    lines = [line.strip() for line in readme.splitlines()]
    found = [line for line in lines if line.startswith("axeom run") and "--ssl-certfile" in line]
    assert found, "the README has no TLS command"
    return shlex.split(found[0])


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_readme_tls_quick_start(
    tmp_path: Path, certificate: tuple[Path, Path, ssl.SSLContext], workers: str
) -> None:
    """The README's TLS command, as written, in a folder holding the example and
    the certificate files it names, serves a wss:// client in both modes."""
    cert, key, client = certificate
    (tmp_path / "examples").mkdir()
    shutil.copy(Path(ROOT) / "examples" / "echo.py", tmp_path / "examples" / "echo.py")
    command = readme_tls_command()
    for option, source in (("--ssl-certfile", cert), ("--ssl-keyfile", key)):
        shutil.copy(source, tmp_path / command[command.index(option) + 1])
    executable = shutil.which("axeom", path=str(Path(sys.executable).parent))
    assert executable is not None
    command = [executable, *command[1:], "--workers", workers]
    with running_command(command, cwd=tmp_path, env={"AXEOM_PORT": "0"}) as server:
        assert exchange(url(server, "/chat"), client, "hi")[0] == "Echo: hi"


def test_bad_tls_settings_in_the_config_file_name_file_and_line(
    tmp_path: Path, certificate: tuple[Path, Path, ssl.SSLContext]
) -> None:
    """A TLS key of the config file that cannot work is reported at its file and line."""
    cert, _, _ = certificate
    config = tmp_path / "axeom.toml"
    config.write_text(f'[server]\nssl_certfile = "{cert}"\nssl_keyfile = "{cert}"\n')
    result = run_axeom("run", APP, "--port", "0", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}:3: server.ssl_keyfile " in result.stderr
    assert "holds no PEM private key" in result.stderr


def test_ssl_ca_certs_requires_a_client_certificate(tmp_path: Path) -> None:
    """With --ssl-ca-certs, a client without a certificate signed by those
    authorities fails the TLS handshake; one with such a certificate is served."""
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1")
    cert, key, bundle = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(bundle))
    anonymous = ssl.create_default_context()
    authority.configure_trust(anonymous)
    known = ssl.create_default_context()
    authority.configure_trust(known)
    authority.issue_cert("client@example.com").configure_cert(known)
    args = ["--port", "0", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with running_axeom(APP, *args, "--ssl-ca-certs", str(bundle)) as server:
        # (TLS 1.3: the server checks the certificate after the client is done:
        # the refusal reaches the client as its handshake response.)
        with pytest.raises((ssl.SSLError, OSError, InvalidMessage)):
            exchange(url(server, "/echo"), anonymous, "who")
        assert exchange(url(server, "/echo"), known, "me")[0] == "me"
