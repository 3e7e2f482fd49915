"""The security plugin's logic with plain calls and the test kit: connection
limits (token bucket, caps, a bounded table), the origin policy and how it
meets a route's ``allowed_origins``, the headers, and message rate options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from axeom import Axeom, Request, Response
from axeom._headers import Headers
from axeom.security import (
    ConnectionLimits,
    connection_limits,
    limits_hit,
    security_plugin,
)
from axeom.testing import HandshakeRejected, TestClient
from axeom.ws import ws_plugin
from axeom.ws._origin import OriginPolicy

# A bound for polling a condition that follows a close (a few loop turns).
SETTLE = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_app(**plugin: object) -> Axeom:
    app = Axeom().use(ws_plugin()).use(security_plugin(**plugin))  # type: ignore[arg-type]
    app.ws("/echo", message=lambda ws, msg: ws.send(msg))
    app.get("/health", lambda ctx: "ok")
    return app


def upgrade(origin: str | None = None, host: str = "testserver") -> Headers:
    headers = Headers(
        {
            "host": host,
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
        }
    )
    if origin is not None:
        headers.add("origin", origin)
    return headers


# -- connection limits ------------------------------------------------------------


def test_per_address_cap_counts_open_sockets_and_frees_on_close() -> None:
    """Two open per address: the third is 429 until one closes; another
    address is not affected; a close never counted changes nothing."""
    limits = ConnectionLimits(max_connections_per_ip=2)
    assert limits.admit("a") is None and limits.admit("a") is None
    refused = limits.admit("a")
    assert refused is not None
    assert (refused.status, refused.limit, refused.headers) == (
        429,
        "max_connections_per_ip",
        [("retry-after", "5")],
    )
    assert limits.admit("b") is None
    limits.closed("a")
    assert limits.admit("a") is None
    limits.closed("never-seen")
    limits.closed("b", 5)
    assert (limits.open_count("a"), limits.open_count("b"), limits.open_total) == (2, 0, 2)
    assert limits.hits == {"max_connections_per_ip": 1}


def test_node_cap_is_503() -> None:
    limits = ConnectionLimits(max_connections=2)
    assert limits.admit("a") is None and limits.admit(None) is None
    refused = limits.admit("b")
    assert refused is not None and (refused.status, refused.limit) == (503, "max_connections")
    limits.closed(None)
    assert limits.admit("b") is None


def test_handshake_rate_is_a_token_bucket() -> None:
    """(2, 10): a burst of two, then one more every 5 s; Retry-After says when."""
    clock = Clock()
    limits = ConnectionLimits(handshake_rate_per_ip=(2, 10.0), clock=clock)
    assert limits.admit("a") is None and limits.admit("a") is None
    refused = limits.admit("a")
    assert refused is not None and (refused.status, refused.retry_after) == (429, 5)
    clock.now += 4.0
    refused = limits.admit("a")
    assert refused is not None and refused.retry_after == 1
    clock.now += 1.0
    assert limits.admit("a") is None
    assert limits.admit("b") is None  # each address has its own bucket


def test_bucket_table_stays_bounded() -> None:
    """Past ``max_tracked`` addresses the least recently used bucket goes:
    memory does not grow with the number of addresses."""
    clock = Clock()
    limits = ConnectionLimits(handshake_rate_per_ip=(1, 100.0), clock=clock, max_tracked=3)
    for address in ("a", "b", "c"):
        assert limits.admit(address) is None
        limits.closed(address)
    assert limits.admit("a") is not None  # a's bucket is used again: now the newest
    for address in ("d", "e"):
        assert limits.admit(address) is None
    assert limits.tracked_addresses == 3
    assert limits.admit("a") is not None  # b and c went, not a
    assert limits.admit("b") is None  # a fresh bucket
    assert limits.tracked_addresses == 3


def test_admission_releases_once() -> None:
    limits = ConnectionLimits(max_connections=1)
    assert limits.admit("a") is None
    admission = limits.admission("a")
    admission.release()
    admission.release()
    assert limits.open_total == 0


async def test_engine_admits_and_the_server_releases() -> None:
    """With the limits turned on by a server, an admitted handshake carries
    its reservation; over the cap the answer is 429 with Retry-After and the
    security headers, before any hook runs."""
    app = make_app(max_connections_per_ip=1)
    derived = []
    app.derive(lambda ctx: derived.append(1))
    limits = connection_limits(app)
    assert limits is not None
    first = Request("GET", "/echo", upgrade(), ("1.2.3.4", 1))
    assert (await app.handle(first)).status == 101
    assert first.admission is not None and limits.open_count("1.2.3.4") == 1
    refused = await app.handle(Request("GET", "/echo", upgrade(), ("1.2.3.4", 2)))
    assert refused.status == 429
    assert refused.header("retry-after") == "5"
    assert refused.header("x-content-type-options") == "nosniff"
    assert len(derived) == 1
    first.admission.release()
    assert (await app.handle(Request("GET", "/echo", upgrade(), ("1.2.3.4", 3)))).status == 101
    assert limits_hit(app) == {"max_connections_per_ip": 1}


async def test_limits_are_off_until_a_server_holds_them() -> None:
    """An app whose limits no server holds (an ASGI server) reserves nothing."""
    app = make_app(max_connections_per_ip=1)
    for port in range(3):
        request = Request("GET", "/echo", upgrade(), ("1.2.3.4", port))
        assert (await app.handle(request)).status == 101
        assert request.admission is None


async def test_test_kit_holds_the_limits_and_a_close_frees_a_place() -> None:
    app = make_app(max_connections_per_ip=1)
    async with TestClient(app) as client:
        async with client.websocket("/echo") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
            with pytest.raises(HandshakeRejected) as refused:
                async with client.websocket("/echo"):
                    raise AssertionError("opened over the cap")
            assert refused.value.status == 429
        limits = connection_limits(app)
        assert limits is not None
        with trio.fail_after(SETTLE):
            while limits.open_total:
                await trio.sleep(0.01)
        async with client.websocket("/echo") as ws:
            await ws.send("again")
            assert await ws.receive() == "again"


def test_bad_limits_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="max_connections_per_ip must be a positive integer"):
        security_plugin(max_connections_per_ip=0)
    with pytest.raises(ValueError, match=r"handshake_rate_per_ip must be \(handshakes, seconds\)"):
        security_plugin(handshake_rate_per_ip=(10, 0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"headers": {"X-A\r\nSet-Cookie": "v"}}, r"security header name 'X-A\\r\\nSet-Cookie'"),
        ({"headers": {"X A": "v"}}, "security header name 'X A'"),
        ({"headers": {"": "v"}}, "security header name ''"),
        ({"headers": {5: "v"}}, "security header name 5"),
        ({"hsts": 31536000}, "security header 'strict-transport-security' must be a one-line"),
        ({"hsts": "max-age=1\r\nX: 1"}, "security header 'strict-transport-security'"),
    ],
)
def test_bad_headers_fail_at_construction(options: dict[str, object], message: str) -> None:
    """A header the serializer would refuse (a name with a line break or a
    space, an HSTS value that is no string) is an error where the plugin is
    made, not a 500 on every response."""
    with pytest.raises(ValueError, match=message):
        security_plugin(**options)  # type: ignore[arg-type]


# -- origin policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("https://app.example.com", "elsewhere", True),  # listed exactly
        ("https://app.example.com:443", "elsewhere", True),  # the default port written
        ("https://a.b.example.com", "elsewhere", True),  # wildcard, any depth
        ("https://example.com", "elsewhere", False),  # not the bare domain
        ("http://a.example.com", "elsewhere", False),  # another scheme
        ("https://a.example.com:8443", "elsewhere", False),  # another port
        ("https://evil.example", "elsewhere", False),
        ("https://host.test", "host.test", True),  # same origin
        ("http://host.test:8000", "host.test:8000", True),
        ("http://host.test:8000", "host.test:9000", False),
        ("http://host.test:8000", "host.test", False),
        ("null", "host.test", False),
        ("not an origin", "host.test", False),
    ],
)
def test_origin_policy(origin: str, host: str, allowed: bool) -> None:
    policy = OriginPolicy(
        ["https://app.example.com", "https://*.example.com"],
        same_origin=True,
        require_origin=False,
    )
    assert (policy.refusal(upgrade(origin, host)) is None) is allowed


def test_origin_policy_without_origin_and_wildcards() -> None:
    assert OriginPolicy(same_origin=True, require_origin=False).refusal(upgrade()) is None
    strict = OriginPolicy(same_origin=True, require_origin=True)
    assert strict.refusal(upgrade()) == "a handshake without Origin is not allowed"
    anyone = OriginPolicy(["*"], same_origin=False, require_origin=False)
    assert anyone.refusal(upgrade("https://evil.example")) is None
    sandboxed = OriginPolicy(["null"], same_origin=False, require_origin=False)
    assert sandboxed.refusal(upgrade("null")) is None


@pytest.mark.parametrize("entry", ["example.com", "https://x.com/path", "https://a.*.com", 3])
def test_bad_origin_entries_fail_at_registration(entry: object) -> None:
    with pytest.raises((ValueError, TypeError), match="allowed_origins"):
        security_plugin(allowed_origins=[entry])  # type: ignore[list-item]
    app = Axeom().use(ws_plugin())
    with pytest.raises((ValueError, TypeError), match="allowed_origins"):
        app.ws("/x", message=print, allowed_origins=[entry])


async def test_route_list_replaces_the_plugins_under_its_rules() -> None:
    """With the plugin, a route's ``allowed_origins`` replaces the plugin's
    list for that route; same-origin and a missing Origin follow the plugin.
    Refusals are 403 with the reason, counted under "origin"."""
    app = make_app(allowed_origins=["https://plugin.example"])
    app.ws("/own", message=print, allowed_origins=["https://route.example"])

    async def status(path: str, origin: str | None, host: str = "testserver") -> int:
        return (await app.handle(Request("GET", path, upgrade(origin, host)))).status

    assert await status("/echo", "https://plugin.example") == 101
    assert await status("/echo", "https://route.example") == 403
    assert await status("/own", "https://route.example") == 101
    assert await status("/own", "https://plugin.example") == 403
    assert await status("/own", "http://testserver") == 101  # same origin
    assert await status("/own", None) == 101
    refused = await app.handle(Request("GET", "/echo", upgrade("https://evil.example")))
    assert refused.body == b"origin 'https://evil.example' is not allowed\n"
    assert limits_hit(app) == {"origin": 3}


async def test_route_list_alone_without_the_plugin_is_strict() -> None:
    """Without the plugin, only the route's list: Origin must be there and listed
    (wildcards too); same-origin is not enough."""
    app = Axeom().use(ws_plugin())
    app.ws("/own", message=print, allowed_origins=["https://*.route.example"])

    async def status(origin: str | None) -> int:
        return (await app.handle(Request("GET", "/own", upgrade(origin, "a.test")))).status

    assert await status("https://x.route.example") == 101
    assert await status(None) == 403
    assert await status("http://a.test") == 403


async def test_require_origin_refuses_a_handshake_without_one() -> None:
    app = make_app(require_origin=True)
    response = await app.handle(Request("GET", "/echo", upgrade()))
    assert (response.status, response.body) == (403, b"a handshake without Origin is not allowed\n")


# -- headers ----------------------------------------------------------------------


async def test_headers_on_http_responses_and_refusals_not_on_101() -> None:
    app = make_app()
    expected = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "SAMEORIGIN",
        "referrer-policy": "no-referrer",
    }
    for response in (
        await app.handle(Request("GET", "/health", Headers({"host": "x"}))),
        await app.handle(Request("GET", "/nowhere", Headers({"host": "x"}))),
        await app.handle(Request("GET", "/echo", upgrade("https://evil.example"))),
    ):
        assert {name: response.header(name) for name in expected} == expected
        assert response.header("strict-transport-security") is None
    accepted = await app.handle(Request("GET", "/echo", upgrade()))
    assert accepted.status == 101
    assert accepted.header("x-content-type-options") is None


async def test_hsts_only_over_tls_and_each_header_configurable() -> None:
    app = make_app(
        frame_options="DENY",
        referrer_policy=None,
        hsts="max-age=60",
        headers={"Content-Security-Policy": "default-src 'none'"},
    )
    app.get("/own", lambda ctx: Response(200, [("X-Frame-Options", "ALLOWALL")], b""))
    plain = await app.handle(Request("GET", "/health", Headers({"host": "x"})))
    assert plain.header("x-frame-options") == "DENY"
    assert plain.header("referrer-policy") is None
    assert plain.header("content-security-policy") == "default-src 'none'"
    assert plain.header("strict-transport-security") is None
    secure = await app.handle(Request("GET", "/health", Headers({"host": "x"}), secure=True))
    assert secure.header("strict-transport-security") == "max-age=60"
    own = await app.handle(Request("GET", "/own", Headers({"host": "x"})))
    assert own.header("x-frame-options") == "ALLOWALL"  # the app's own wins


# -- message rate options -----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": (0, 1)}, r"rate_limit must be \(messages, seconds\)"),
        ({"rate_limit": (5, -1)}, r"rate_limit must be \(messages, seconds\)"),
        ({"rate_limit": 5}, r"rate_limit must be \(messages, seconds\)"),
        ({"byte_rate_limit": (1.5, 1)}, r"byte_rate_limit must be \(bytes, seconds\)"),
        ({"on_rate_limit": "kick"}, "on_rate_limit must be 'close' or 'drop'"),
    ],
)
def test_bad_rate_options_fail_at_registration(options: dict[str, object], message: str) -> None:
    app = Axeom().use(ws_plugin())
    with pytest.raises(ValueError, match=message):
        app.ws("/x", message=print, **options)


async def test_message_limits_are_counted_per_route() -> None:
    """Drops and closes are counted by limit name; a route without limits
    keeps its handler as given (nothing wraps it)."""
    app = Axeom().use(ws_plugin())
    app.ws("/drop", message=lambda ws, m: ws.send(m), rate_limit=[1, 600], on_rate_limit="drop")

    def plain(ws, message):  # type: ignore[no-untyped-def]
        ws.send(message)

    route = app.ws("/plain", message=plain)
    assert route.handlers.bind().message is plain
    async with TestClient(app) as client, client.websocket("/drop") as ws:
        await ws.send("a")
        await ws.send("b")
        await ws.send("c")
        assert await ws.receive() == "a"
        with trio.fail_after(SETTLE):
            while limits_hit(app).get("rate_limit", 0) < 2:
                await trio.sleep(0.01)
    assert limits_hit(app) == {"rate_limit": 2}


# -- the public surface ---------------------------------------------------------------


def test_security_exports_exist_and_stay_sans_io(tmp_path: Path) -> None:
    """Every name of ``axeom.security.__all__`` exists, and importing it (engine
    code: the plugin runs in ``app.handle``) leaves trio unimported."""
    import axeom.security

    assert [n for n in axeom.security.__all__ if not hasattr(axeom.security, n)] == []
    code = "import sys, axeom.security\nprint('trio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr
