"""The security plugin's connection limits over TLS, on every way a node
serves TLS. With workers the acceptor places a TLS connection before its
handshake, so it counts the connection by its peer address at accept time
and can only close one over the limit; the worker that served it says when
it ended. In one process the limit answers 429 over TLS, as in plaintext."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests._processes import Server, running_axeom, status, wait_for

APP = "tests/apps/tls_limits_app.py:app"
MODES = {
    "trio-w0": ("--workers", "0"),
    "trio-w2": ("--workers", "2"),
    "asyncio-w0": ("--workers", "0", "--loop", "asyncio"),
}
EXCHANGE_TIMEOUT = 10.0  # any one client exchange, on a loaded 2-core machine
SETTLE = 20.0  # a worker's end report reaching the acceptor, under load


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    folder = tmp_path_factory.mktemp("tls-limits")
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    cert, key = folder / "cert.pem", folder / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return cert, key, client


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(mode: str, certificate: tuple[Path, Path, ssl.SSLContext]) -> Iterator[Server]:
    cert, key, _ = certificate
    tls = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    with running_axeom(APP, "--port", "0", *tls, *MODES[mode]) as running:
        yield running


async def echo(ws: ClientConnection, text: str) -> str:
    await ws.send(text)
    received = await ws.recv()
    assert isinstance(received, str)
    return received


def test_open_sockets_per_address_over_tls(
    mode: str, server: Server, certificate: tuple[Path, Path, ssl.SSLContext]
) -> None:
    """Two sockets from 127.0.0.1 are served; a third is refused (429 in one
    process, a closed connection from the acceptor) without disturbing the
    two; once one ends, its place is free again and the refusal is counted."""
    context = certificate[2]
    address = f"wss://127.0.0.1:{server.port}/echo"
    workers = mode == "trio-w2"

    async def scenario() -> None:
        async with asyncio.timeout(EXCHANGE_TIMEOUT * 4):
            first = await connect(address, ssl=context)
            async with connect(address, ssl=context) as second:
                assert await echo(first, "1") == "1"
                refused = None
                try:
                    async with connect(address, ssl=context, open_timeout=EXCHANGE_TIMEOUT):
                        pass
                except InvalidStatus as exc:
                    refused = exc.response.status_code
                except Exception as exc:  # the acceptor closed it: any failure
                    refused = type(exc).__name__
                assert refused is not None, "a third socket from the address was served"
                if not workers:
                    assert refused == 429
                assert await echo(second, "2") == "2"
                await first.close()
            # Both ended: a new socket is served once the ends were counted.
            deadline = asyncio.get_running_loop().time() + SETTLE
            while True:
                try:
                    async with connect(address, ssl=context) as again:
                        assert await echo(again, "3") == "3"
                    return
                except Exception:  # still counted as open: retry until SETTLE
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.1)

    asyncio.run(scenario())
    wait_for(
        lambda: (
            status(server.port)["totals"].get("limits_hit", {}).get("max_connections_per_ip", 0)
            >= 1
        ),
        SETTLE,
        "the refusal counted in status",
    )
