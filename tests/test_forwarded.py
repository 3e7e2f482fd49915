"""Behind a reverse proxy: whose ``X-Forwarded-For`` / ``Forwarded`` is believed,
and the address it gives ``ws.remote_address`` and ``ctx.client``.

Unit tests of ``axeom._forwarded`` first, then a real nginx in front of
``axeom run`` with and without workers. Every address is a loopback one: the
client, each nginx and Axeom connect from different ``127.0.0.x`` so that
which one a socket was given is visible.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.request
from pathlib import Path

import pytest
import websockets.sync.client as ws_sync
from hypothesis import given, settings
from hypothesis import strategies as st

from axeom._forwarded import MAX_HOPS, Forwarded, TrustedProxies, forwarded_client
from axeom._headers import Headers
from axeom._http1 import parse_request_head
from axeom.config import Config, ConfigError
from axeom.trio_runtime import HandshakeLimits
from tests._asgi_servers import running_asgi
from tests._nginx import running_nginx
from tests._processes import running_axeom

PEER = ("127.0.0.1", 5000)
PROXIES = TrustedProxies("127.0.0.1, 127.1.0.0/16, ::1")


def resolve(*headers: tuple[str, str], peer: tuple[str, int] = PEER) -> Forwarded:
    return forwarded_client(Headers(headers), peer, PROXIES)


def test_x_forwarded_for_from_a_trusted_peer_names_the_client() -> None:
    """One proxy: the address it appended is the client's (port 0: none given)."""
    assert resolve(("X-Forwarded-For", "127.0.0.5")) == Forwarded(("127.0.0.5", 0))


def test_walks_from_the_right_past_trusted_proxies() -> None:
    """What the client wrote itself (leftmost) is never reached: the first
    address from the right that is not a trusted proxy is the client."""
    found = resolve(("X-Forwarded-For", "127.0.0.66, 127.0.0.5, 127.1.0.7, 127.1.2.3"))
    assert found.client == ("127.0.0.5", 0)


def test_repeated_headers_are_one_list_in_order() -> None:
    found = resolve(("X-Forwarded-For", "127.0.0.66, 127.0.0.5"), ("X-Forwarded-For", "127.1.0.9"))
    assert found.client == ("127.0.0.5", 0)


def test_every_hop_trusted_gives_the_leftmost() -> None:
    """As uvicorn: a chain of trusted proxies only, the first one is the client."""
    assert resolve(("X-Forwarded-For", "127.1.0.1, 127.1.0.2")).client == ("127.1.0.1", 0)


def test_untrusted_peer_is_not_believed() -> None:
    """A client straight to the server writes what it likes: ignored."""
    peer = ("127.0.0.5", 4000)
    assert resolve(("X-Forwarded-For", "127.0.0.66"), peer=peer) == Forwarded(peer)
    assert resolve(("Forwarded", "for=127.0.0.66"), peer=peer) == Forwarded(peer)


def test_trusts_nobody_by_default() -> None:
    found = forwarded_client(Headers([("X-Forwarded-For", "127.0.0.5")]), PEER, TrustedProxies())
    assert found == Forwarded(PEER)
    assert not TrustedProxies() and not HandshakeLimits().proxies


def test_star_trusts_every_peer() -> None:
    headers = Headers([("X-Forwarded-For", "127.0.0.66, 127.0.0.5")])
    assert forwarded_client(headers, ("127.9.9.9", 1), TrustedProxies("*")).client == (
        "127.0.0.66",
        0,
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        " , ",
        "127.0.0.5, junk",
        "unknown",
        "127.0.0.5:99999",
        "127.0.0.5:http",
        "[::1",
        "[::1]x",
        "127.0.0.300",
        "\x00",
        "1" * 5000,
    ],
)
def test_malformed_x_forwarded_for_keeps_the_peer(value: str) -> None:
    """A value that cannot be read, from the nearest hop on, is ignored: never an error."""
    assert resolve(("X-Forwarded-For", value)) == Forwarded(PEER)


def test_a_malformed_hop_beyond_the_client_does_not_matter() -> None:
    """What lies left of the client is the client's own writing: not read."""
    assert resolve(("X-Forwarded-For", "junk, 127.0.0.5")).client == ("127.0.0.5", 0)


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("127.0.0.5:8080", ("127.0.0.5", 8080)),
        ("::1", ("::1", 0)),  # trusted, and the only hop: the leftmost
        ("[::1]:443", ("::1", 443)),
        ("::ffff:127.0.0.5", ("127.0.0.5", 0)),  # one spelling per client
        (" 127.0.0.5 ", ("127.0.0.5", 0)),
    ],
)
def test_address_forms(value: str, client: tuple[str, int]) -> None:
    assert resolve(("X-Forwarded-For", value)).client == client


def test_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    """A dual-stack listener sees an IPv4 proxy as ::ffff:a.b.c.d."""
    found = resolve(("X-Forwarded-For", "127.0.0.5"), peer=("::ffff:127.0.0.1", 1))
    assert found.client == ("127.0.0.5", 0)


def test_x_forwarded_proto_is_the_nearest_proxys() -> None:
    found = resolve(("X-Forwarded-For", "127.0.0.5"), ("X-Forwarded-Proto", "http, HTTPS"))
    assert found == Forwarded(("127.0.0.5", 0), "https")
    odd = resolve(("X-Forwarded-For", "127.0.0.5"), ("X-Forwarded-Proto", "gopher"))
    assert odd.scheme is None


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("for=127.0.0.5", Forwarded(("127.0.0.5", 0))),
        ('For="127.0.0.5:80";proto=https', Forwarded(("127.0.0.5", 80), "https")),
        ('for=127.0.0.5;proto=wss, for="[::1]:4711"', Forwarded(("127.0.0.5", 0), "wss")),
        ("for=127.0.0.66, for=127.0.0.5;by=127.1.0.1, for=127.1.0.2", Forwarded(("127.0.0.5", 0))),
        (";;for=127.0.0.5;;, ,", Forwarded(("127.0.0.5", 0))),  # empty list members are allowed
        ('for="127.0.0.\\5"', Forwarded(("127.0.0.5", 0))),  # a quoted-pair
    ],
)
def test_forwarded_header(value: str, found: Forwarded) -> None:
    """RFC 7239: each element's ``for`` is a hop, walked as X-Forwarded-For's."""
    assert resolve(("Forwarded", value)) == found


@pytest.mark.parametrize(
    "value",
    [
        "for=unknown",
        "for=_hidden",
        "by=127.0.0.5",
        "for=127.0.0.5 junk",
        "for=127.0.0.5;for=127.0.0.6",
        'for="127.0.0.5',
        "for=127.0.0.5, proto=https",
        "=",
    ],
)
def test_malformed_forwarded_keeps_the_peer(value: str) -> None:
    assert resolve(("Forwarded", value)) == Forwarded(PEER)


def test_x_forwarded_for_wins_over_forwarded() -> None:
    """nginx sets X-Forwarded-For and passes a client's Forwarded through:
    that one is the client's writing."""
    found = resolve(("Forwarded", "for=127.0.0.66"), ("X-Forwarded-For", "127.0.0.5"))
    assert found.client == ("127.0.0.5", 0)


def test_a_forged_part_left_of_the_client_is_never_read() -> None:
    """Whatever a client wrote before the address its proxy appended, readable
    or not, is not reached: it cannot make the server fall back to the proxy's
    address (and hide among the proxy's other clients)."""
    for forged in ('for="127.0.0.66', "for=;;=", "for=127.0.0.66;for=127.0.0.67", "junk"):
        found = resolve(("Forwarded", f"{forged}, for=127.0.0.5"))
        assert found.client == ("127.0.0.5", 0), forged


def test_a_long_chain_is_walked_only_so_far() -> None:
    """Past MAX_HOPS trusted proxies the list is a client's writing (walking a
    1 MiB header would cost each request milliseconds): the peer stays."""
    chain = ", ".join(["127.1.0.1"] * (MAX_HOPS - 1))
    assert resolve(("X-Forwarded-For", f"127.0.0.5, {chain}")).client == ("127.0.0.5", 0)
    many = ", ".join(["127.1.0.1"] * 100_000)
    assert resolve(("X-Forwarded-For", f"127.0.0.5, {many}")) == Forwarded(PEER)
    assert resolve(("Forwarded", f"for=127.0.0.5, {many.replace('127', 'for=127')}")) == (
        Forwarded(PEER)
    )


# Pieces of forwarding headers, in any order: addresses, separators, quotes, junk.
PIECES = [*'0123456789abcdef.:[]",; =\t_-', "127.0.0.5", "::1", "for=", "proto=https", "\x00", "é"]
header_text = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.sampled_from(["X-Forwarded-For", "Forwarded", "X-Forwarded-Proto"]),
    st.lists(header_text, min_size=1, max_size=3),
)
def test_any_header_text_gives_an_address_never_an_error(name: str, values: list[str]) -> None:
    """Whatever a header holds: the peer, or an address ``ipaddress`` reads."""
    found = resolve(*[(name, value) for value in values])
    assert found.client == PEER or ipaddress.ip_address(found.client[0])
    assert 0 <= found.client[1] <= 65535
    assert found.scheme in (None, "http", "https", "ws", "wss")


def test_parse_request_head_resolves_the_client_once() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.5\r\n\r\n"
    assert parse_request_head(head, PEER, PROXIES).client == ("127.0.0.5", 0)
    assert parse_request_head(head, PEER).client == PEER


def test_a_trusted_proxys_https_makes_the_request_secure() -> None:
    """TLS ended at the proxy: its X-Forwarded-Proto (or Forwarded proto=)
    makes ``ctx.secure`` true (HSTS, ``wss`` links), only from a trusted peer."""
    start = b"GET / HTTP/1.1\r\nHost: x\r\n"
    tls = start + b"X-Forwarded-For: 127.0.0.5\r\nX-Forwarded-Proto: https\r\n\r\n"
    forwarded = start + b"Forwarded: for=127.0.0.5;proto=wss\r\n\r\n"
    plain = start + b"X-Forwarded-For: 127.0.0.5\r\nX-Forwarded-Proto: http\r\n\r\n"
    assert parse_request_head(tls, PEER, PROXIES).secure
    assert parse_request_head(forwarded, PEER, PROXIES).secure
    assert not parse_request_head(plain, PEER, PROXIES).secure
    assert not parse_request_head(tls, PEER).secure  # nobody trusted
    assert not parse_request_head(tls, ("127.9.9.9", 1), PROXIES).secure  # untrusted peer


def test_trusted_proxies_spec_errors() -> None:
    with pytest.raises(ValueError, match="'localhost' is not an IP address"):
        TrustedProxies("127.0.0.1, localhost")
    assert TrustedProxies(["127.0.0.1", " 127.1.0.0/16 ", ""]).spec == ("127.0.0.1", "127.1.0.0/16")
    assert HandshakeLimits(forwarded_allow_ips=["127.0.0.1"]).forwarded_allow_ips == ("127.0.0.1",)  # type: ignore[arg-type]


def test_config_key_and_override(tmp_path: Path) -> None:
    """``[server] forwarded_allow_ips``: a list or the command line's comma form;
    a bad entry is reported at its file and line."""
    built = Config.build("app:app", forwarded_allow_ips="127.0.0.1, 127.1.0.0/16")
    assert built.server.forwarded_allow_ips == ("127.0.0.1", "127.1.0.0/16")
    assert HandshakeLimits(**built.server.handshake_limits()).proxies.trusts("127.1.2.3")
    config = tmp_path / "axeom.toml"
    config.write_text('[server]\nport = 0\nforwarded_allow_ips = ["127.0.0.1", "nginx"]\n')
    with pytest.raises(
        ConfigError, match=r'axeom.toml:3: server.forwarded_allow_ips .* got "nginx"'
    ):
        Config.build("app:app", str(config))


@pytest.mark.parametrize("entry", ["5", "true", '["127.0.0.1"]', "1.5"])
def test_config_entry_that_is_not_a_string(tmp_path: Path, entry: str) -> None:
    """An entry that is no string (``ipaddress`` takes the int 5 for 0.0.0.5)
    is reported at its file and line, not left for the server to fail on."""
    config = tmp_path / "axeom.toml"
    config.write_text(f"[server]\nport = 0\nforwarded_allow_ips = [{entry}]\n")
    with pytest.raises(ConfigError, match=r"axeom.toml:3: server.forwarded_allow_ips must list"):
        Config.build("app:app", str(config))


# --- live: nginx in front of axeom run ------------------------------------------------

CLIENT = "127.0.0.5"  # where the test's clients connect from
TRUSTED_NGINX = "127.0.0.3"  # the proxy Axeom is told to trust
OTHER_NGINX = "127.0.0.4"  # a proxy it is not told about
SPOOFED = "127.0.0.66"  # what a client claims to be


def who(port: int, headers: dict[str, str] | None = None, source: str = CLIENT) -> tuple[str, int]:
    """The ``ws.remote_address`` the app gives a socket opened from ``source`` to ``port``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    with ws_sync.connect(
        f"ws://127.0.0.1:{port}/who", sock=sock, additional_headers=headers, open_timeout=10
    ) as ws:
        address = json.loads(ws.recv(timeout=10))
        ws.send("still here")  # the socket works after its hand-off
        assert ws.recv(timeout=10) == "still here"
    return address[0], address[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", ["0", "2"])
def test_behind_nginx(workers: str, tmp_path: Path) -> None:
    """Through the trusted nginx the socket gets the client's address, even if
    the client forged X-Forwarded-For; through another proxy, or with a forged
    header straight to Axeom, it gets its TCP peer's."""
    args = ["tests.apps.proxy_app:app", "--port", "0", "--workers", workers]
    with running_axeom(*args, "--forwarded-allow-ips", f"{TRUSTED_NGINX}, 127.1.0.0/16") as server:
        with running_nginx(tmp_path, server.port, [TRUSTED_NGINX, OTHER_NGINX]) as ports:
            trusted, other = ports
            assert who(trusted)[0] == CLIENT
            assert who(trusted, {"X-Forwarded-For": SPOOFED})[0] == CLIENT
            assert who(other)[0] == OTHER_NGINX
            assert who(server.port, {"X-Forwarded-For": SPOOFED})[0] == CLIENT
            with urllib.request.urlopen(f"http://127.0.0.1:{trusted}/client", timeout=10) as r:
                assert json.load(r)["client"][0] == "127.0.0.1"  # urllib binds no source: 127.0.0.1


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args", [["--workers", "2"], ["--workers", "0", "--loop", "asyncio"]], ids=["w2", "asyncio"]
)
def test_forwarded_address_of_another_family(args: list[str]) -> None:
    """An IPv6 client behind an IPv4 proxy: the socket (handed off in w2) still works."""
    with running_axeom(
        "tests.apps.proxy_app:app",
        "--port",
        "0",
        *args,
        env={"AXEOM_FORWARDED_ALLOW_IPS": "127.0.0.5"},
    ) as server:
        assert who(server.port, {"X-Forwarded-For": "::1"}) == ("::1", 0)
        assert who(server.port, {"Forwarded": 'for="[::1]:4711"'}) == ("::1", 4711)


@pytest.mark.timeout(60)
def test_on_an_asgi_server_the_server_decides() -> None:
    """Under uvicorn, ``ws.remote_address`` is the scope's client: what uvicorn
    made of the headers with its own ``--forwarded-allow-ips``."""
    args = ("--forwarded-allow-ips", CLIENT)
    with running_asgi("uvicorn", "proxy_app:app", args=args) as server:
        assert who(server.port, {"X-Forwarded-For": SPOOFED}) == (SPOOFED, 0)
        assert who(server.port, {"X-Forwarded-For": SPOOFED}, source=OTHER_NGINX)[0] == OTHER_NGINX
