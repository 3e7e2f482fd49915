"""Tests for the WebSocket handshake through ``app.handle``: RFC 6455 rules, negotiation,
``ws.data`` checks, handler registration and per-route options."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest

from axeom import Axeom, Context, Headers, Request, Response
from axeom.ws import Handlers, WSOptions, WSRoute, ws_plugin
from axeom.ws._handshake import accept_key, parse_extensions, select_subprotocol

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request(
    target: str = "/ws",
    *,
    method: str = "GET",
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    add: list[tuple[str, str]] | None = None,
) -> Request:
    """A handshake request: the valid BASE headers minus ``drop``, with ``replace``/``add``."""
    replace = {k.lower(): v for k, v in (replace or {}).items()}
    dropped = {d.lower() for d in drop}
    items = [
        (name, replace.get(name.lower(), value))
        for name, value in BASE
        if name.lower() not in dropped
    ]
    items += list(add or [])
    return Request(method, target, Headers(items), ("203.0.113.9", 4242))


def on_message(ws: Any, msg: Any) -> None:
    return None


def make_app(**options: Any) -> Axeom:
    app = Axeom().use(ws_plugin())
    app.ws("/ws", message=on_message, **options)
    return app


async def handshake(app: Axeom, req: Request) -> Response:
    response = await app.handle(req)
    if response.status == 101:
        assert response.upgrade is not None
    else:
        assert response.upgrade is None
    return response


def test_accept_key_matches_rfc_6455_example() -> None:
    """The accept value for the RFC 6455 sample key is the RFC's sample answer."""
    assert accept_key(KEY) == ACCEPT


async def test_valid_upgrade_gives_101_with_accept_and_metadata() -> None:
    """A valid upgrade answers 101 with the right headers and the socket's metadata."""
    app = Axeom().use(ws_plugin(subprotocols=["chat"]))
    app.ws("/rooms/:room", message=on_message)
    req = request("/rooms/a%20b?token=x&n=1", add=[("Sec-WebSocket-Protocol", "other, chat")])
    response = await handshake(app, req)
    assert response.status == 101
    assert response.body == b""
    assert response.header("Sec-WebSocket-Accept") == ACCEPT
    assert response.header("upgrade") == "websocket"
    assert response.header("connection") == "Upgrade"
    assert response.header("sec-websocket-protocol") == "chat"
    assert response.header("sec-websocket-extensions") is None
    upgrade = response.upgrade
    assert upgrade is not None
    assert isinstance(upgrade.route, WSRoute)
    assert upgrade.route.pattern == "/rooms/:room"
    assert upgrade.path == "/rooms/a%20b"
    assert upgrade.params == {"room": "a b"}
    assert upgrade.query == {"token": "x", "n": "1"}
    assert upgrade.subprotocol == "chat"
    assert upgrade.extensions is None
    assert upgrade.deflate_offer is None
    assert upgrade.data == {}
    assert upgrade.remote_address == ("203.0.113.9", 4242)
    assert upgrade.headers["host"] == "example.com"
    assert upgrade.route.handlers.message is on_message


async def test_header_tokens_are_case_insensitive() -> None:
    """'Upgrade: WebSocket' and 'Connection: keep-alive, Upgrade' are accepted."""
    req = request(replace={"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"})
    assert (await handshake(make_app(), req)).status == 101


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_wrong_method_gives_405_allow_get(method: str) -> None:
    """A non-GET upgrade is 405 with Allow: GET."""
    response = await handshake(make_app(), request(method=method))
    assert response.status == 405
    assert response.header("allow") == "GET"


@pytest.mark.parametrize(
    ("case", "kwargs", "reason"),
    [
        ("missing", {"drop": ("Sec-WebSocket-Key",)}, b"missing Sec-WebSocket-Key"),
        (
            "repeated",
            {"add": [("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")]},
            b"repeated Sec-WebSocket-Key",
        ),
        ("not-base64", {"replace": {"Sec-WebSocket-Key": "not base64!!"}}, b"16 bytes"),
        ("too-short", {"replace": {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAA="}}, b"16 bytes"),
        ("too-long", {"replace": {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAAA"}}, b"16 bytes"),
        ("empty", {"replace": {"Sec-WebSocket-Key": ""}}, b"16 bytes"),
    ],
)
async def test_bad_key_gives_400(case: str, kwargs: dict[str, Any], reason: bytes) -> None:
    """A missing, repeated or malformed Sec-WebSocket-Key is 400 with a reason saying which."""
    response = await handshake(make_app(), request(**kwargs))
    assert response.status == 400
    assert reason in response.body


@pytest.mark.parametrize(
    "kwargs",
    [
        {"replace": {"Sec-WebSocket-Version": "8"}},
        {"replace": {"Sec-WebSocket-Version": "14"}},
        {"drop": ("Sec-WebSocket-Version",)},
        {"add": [("Sec-WebSocket-Version", "13")]},
    ],
    ids=["v8", "v14", "missing", "repeated"],
)
async def test_unsupported_version_gives_426_with_version_13(kwargs: dict[str, Any]) -> None:
    """A version other than a single 13 is 426 with sec-websocket-version: 13."""
    response = await handshake(make_app(), request(**kwargs))
    assert response.status == 426
    assert response.header("sec-websocket-version") == "13"
    assert b"13" in response.body


async def test_plain_get_on_ws_route_gives_426() -> None:
    """A GET without Upgrade on a WebSocket route is 426 telling the client how to upgrade."""
    response = await handshake(make_app(), request(drop=("Upgrade", "Connection")))
    assert response.status == 426
    assert response.header("upgrade") == "websocket"
    assert response.header("sec-websocket-version") == "13"


async def test_upgrade_to_other_protocol_gives_426() -> None:
    """An Upgrade header naming another protocol is 426."""
    response = await handshake(make_app(), request(replace={"Upgrade": "h2c"}))
    assert response.status == 426


async def test_connection_without_upgrade_gives_400() -> None:
    """Connection without the 'upgrade' token is 400."""
    response = await handshake(make_app(), request(replace={"Connection": "keep-alive"}))
    assert response.status == 400
    assert b"Connection" in response.body


@pytest.mark.parametrize(
    ("add", "reason"),
    [
        ([("Content-Length", "5")], b"Content-Length"),
        ([("Content-Length", "0"), ("Content-Length", "7")], b"Content-Length"),
        ([("Transfer-Encoding", "chunked")], b"Transfer-Encoding"),
        ([("Transfer-Encoding", "identity"), ("Content-Length", "0")], b"Transfer-Encoding"),
    ],
)
async def test_upgrade_with_a_body_gives_400(add: list[tuple[str, str]], reason: bytes) -> None:
    """An upgrade request announcing a body is refused: its bytes would be read as frames."""
    response = await handshake(make_app(), request(add=add))
    assert response.status == 400
    assert reason in response.body


async def test_upgrade_with_content_length_0_is_accepted() -> None:
    """``Content-Length: 0`` announces no body (some devices send it): accepted."""
    response = await handshake(make_app(), request(add=[("Content-Length", "0")]))
    assert response.status == 101


async def test_plain_http_route_tolerates_content_length() -> None:
    """The body rule is for upgrades: a GET with Content-Length to an HTTP route is answered
    (the server never reads a body and closes after a plain response)."""
    app = make_app()
    app.get("/health", lambda ctx: "ok")
    add = [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]
    response = await app.handle(request("/health", drop=("Upgrade", "Connection"), add=add))
    assert response.status == 200


async def test_unknown_path_gives_404() -> None:
    """An upgrade to a path with no route is 404."""
    response = await handshake(make_app(), request("/nope"))
    assert response.status == 404


async def test_protocol_checks_run_before_user_hooks() -> None:
    """An invalid upgrade is rejected before on_request and derive run."""
    app = make_app()
    calls: list[str] = []
    app.on_request(lambda ctx: calls.append("on_request"))
    app.derive(lambda ctx: calls.append("derive"))
    response = await handshake(app, request(drop=("Sec-WebSocket-Key",)))
    assert response.status == 400
    assert calls == []


@pytest.mark.parametrize(
    "add", [[("Origin", "https://evil.example")], []], ids=["other-origin", "no-origin"]
)
async def test_origin_not_allowed_gives_403(add: list[tuple[str, str]]) -> None:
    """With allowed_origins set, another or a missing Origin is 403."""
    app = make_app(allowed_origins=["https://good.example"])
    response = await handshake(app, request(add=add))
    assert response.status == 403


async def test_allowed_origin_is_accepted() -> None:
    """A listed Origin passes the origin check."""
    app = make_app(allowed_origins=["https://good.example"])
    response = await handshake(app, request(add=[("Origin", "https://good.example")]))
    assert response.status == 101


@pytest.mark.parametrize(
    ("supported", "offered", "expected"),
    [
        (["v2", "v1"], "v1, v2", "v2"),
        (["v1", "v2"], "v2, v1", "v1"),
        (["v1", "v2"], "v2", "v2"),
        (["v1", "v2"], "v3, v4", None),
        ([], "v1", None),
    ],
)
async def test_subprotocol_follows_server_preference(
    supported: list[str], offered: str, expected: str | None
) -> None:
    """The first subprotocol in server order that the client offered wins; none without overlap."""
    app = make_app(subprotocols=supported)
    response = await handshake(app, request(add=[("Sec-WebSocket-Protocol", offered)]))
    assert response.status == 101
    assert response.upgrade is not None
    assert response.upgrade.subprotocol == expected
    assert response.header("sec-websocket-protocol") == expected


def test_subprotocol_offers_across_repeated_headers() -> None:
    """Offers split over several Sec-WebSocket-Protocol headers are all considered."""
    headers = Headers([("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b")])
    assert select_subprotocol(headers, ["b", "a"]) == "b"


async def test_compression_on_negotiates_permessage_deflate() -> None:
    """compression=True with a client offer answers Sec-WebSocket-Extensions and keeps the offer."""
    app = make_app(compression=True)
    offer = "permessage-deflate; client_max_window_bits"
    response = await handshake(app, request(add=[("Sec-WebSocket-Extensions", offer)]))
    assert response.status == 101
    extensions = response.header("sec-websocket-extensions")
    assert extensions is not None
    assert extensions.startswith("permessage-deflate")
    assert response.upgrade is not None
    assert response.upgrade.extensions == extensions
    assert response.upgrade.deflate_offer == [("client_max_window_bits", None)]


async def test_compression_skips_unknown_extensions() -> None:
    """Only the permessage-deflate offer is answered when others are offered first."""
    app = make_app(compression=True)
    offers = "x-unknown; a=1, permessage-deflate"
    response = await handshake(app, request(add=[("Sec-WebSocket-Extensions", offers)]))
    assert response.header("sec-websocket-extensions") == "permessage-deflate; " + (
        "server_max_window_bits=12"
    )
    assert response.upgrade is not None
    assert response.upgrade.deflate_offer == []


# (Sec-WebSocket-Extensions headers sent, response header expected, offer kept).
# RFC 7692 section 7.1: the server may add server_max_window_bits (ours is 12)
# and echo the no_context_takeover flags; it answers client_max_window_bits
# only when the client offered it, and never with an invalid offer.
DEFLATE_OFFERS = [
    (["permessage-deflate"], "permessage-deflate; server_max_window_bits=12", []),
    (
        ["permessage-deflate; client_max_window_bits"],
        "permessage-deflate; server_max_window_bits=12",
        [("client_max_window_bits", None)],
    ),
    (
        ["permessage-deflate; client_max_window_bits=10"],
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        [("client_max_window_bits", "10")],
    ),
    (
        ["permessage-deflate; server_max_window_bits=10"],
        "permessage-deflate; server_max_window_bits=10",
        [("server_max_window_bits", "10")],
    ),
    (
        ["permessage-deflate; server_no_context_takeover"],
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        [("server_no_context_takeover", None)],
    ),
    (
        ["permessage-deflate; client_no_context_takeover"],
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
        [("client_no_context_takeover", None)],
    ),
    (
        ["permessage-deflate; x-unknown=1, permessage-deflate"],
        "permessage-deflate; server_max_window_bits=12",
        [],
    ),
    (
        ["permessage-deflate; server_max_window_bits=16", "permessage-deflate"],
        "permessage-deflate; server_max_window_bits=12",
        [],
    ),
    (
        [
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; client_max_window_bits",
        ],
        "permessage-deflate; server_max_window_bits=12",
        [("client_max_window_bits", None)],
    ),
]

# Offers that cannot be accepted: the handshake succeeds without compression.
INVALID_DEFLATE_OFFERS = [
    "permessage-deflate; x-unknown=1",
    "permessage-deflate; server_max_window_bits",  # requires a value
    "permessage-deflate; server_max_window_bits=8",  # zlib cannot honour 8
    "permessage-deflate; client_max_window_bits=abc",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
]


@pytest.mark.parametrize(("offers", "expected", "offer"), DEFLATE_OFFERS)
async def test_deflate_offers_negotiate_per_rfc_7692(
    offers: list[str], expected: str, offer: list[tuple[str, str | None]]
) -> None:
    """Bare, browser-style, takeover and multiple offers (one header or several) are
    answered with parameters RFC 7692 allows; the offer answered is kept as is."""
    app = make_app(compression=True)
    added = [("Sec-WebSocket-Extensions", value) for value in offers]
    response = await handshake(app, request(add=added))
    assert response.header("sec-websocket-extensions") == expected
    assert response.upgrade is not None
    assert response.upgrade.deflate_offer == offer


@pytest.mark.parametrize("value", INVALID_DEFLATE_OFFERS)
async def test_invalid_deflate_offer_is_declined_not_failed(value: str) -> None:
    """An offer with an unknown, repeated or invalid parameter gets no compression
    (and no 400): the socket then never sees a compressed frame it cannot read."""
    app = make_app(compression=True)
    response = await handshake(app, request(add=[("Sec-WebSocket-Extensions", value)]))
    assert response.status == 101
    assert response.header("sec-websocket-extensions") is None
    assert response.upgrade is not None
    assert response.upgrade.deflate_offer is None


async def test_compression_off_ignores_the_offer() -> None:
    """compression=False (the default) ignores a client's permessage-deflate offer."""
    app = make_app()
    offer = "permessage-deflate; client_max_window_bits"
    response = await handshake(app, request(add=[("Sec-WebSocket-Extensions", offer)]))
    assert response.status == 101
    assert response.header("sec-websocket-extensions") is None
    assert response.upgrade is not None
    assert response.upgrade.extensions is None
    assert response.upgrade.deflate_offer is None


async def test_compression_on_without_offer_negotiates_nothing() -> None:
    """compression=True without a client offer sends no extension header."""
    response = await handshake(make_app(compression=True), request())
    assert response.status == 101
    assert response.header("sec-websocket-extensions") is None


def test_parse_extensions_handles_params_and_quotes() -> None:
    """Extension offers parse into (name, params), quoted values unquoted, names lower-cased."""
    headers = Headers(
        [("Sec-WebSocket-Extensions", 'Permessage-Deflate; client_max_window_bits, x-a; b="12"')]
    )
    assert parse_extensions(headers) == [
        ("permessage-deflate", [("client_max_window_bits", None)]),
        ("x-a", [("b", "12")]),
    ]


def test_quoted_extension_parameter_is_unescaped() -> None:
    """A backslash escape inside a quoted parameter value stands for the character
    after it (RFC 7230 quoted-pair): ``"1\\0"`` is ``10``, and deflate is negotiated."""
    offer = 'permessage-deflate; client_max_window_bits="1\\0"'
    headers = Headers([("Sec-WebSocket-Extensions", offer)])
    assert parse_extensions(headers) == [("permessage-deflate", [("client_max_window_bits", "10")])]


async def test_escaped_quoted_parameter_negotiates_deflate() -> None:
    """Through the handshake, the escaped offer above is answered, not declined."""
    offer = 'permessage-deflate; client_max_window_bits="1\\0"'
    response = await handshake(
        make_app(compression=True), request(add=[("Sec-WebSocket-Extensions", offer)])
    )
    assert response.header("sec-websocket-extensions") == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
    )


@pytest.mark.parametrize(
    "value",
    [
        'x-a; b="1,2"',  # a quoted value must be a token once unquoted (RFC 6455 9.1)
        'x-a; b="\\"", permessage-deflate',  # an escaped quote does not end the string
        'x-a; b="1, permessage-deflate',  # an unterminated quoted string
        "permessage-deflate; client_max_window_bits=1 0",
        '"permessage-deflate"',
    ],
)
async def test_extension_offer_the_grammar_refuses_gives_400(value: str) -> None:
    """An offer RFC 6455 section 9.1's grammar does not allow is 400 naming the header,
    not read as some other offer."""
    app = make_app(compression=True)
    response = await handshake(app, request(add=[("Sec-WebSocket-Extensions", value)]))
    assert response.status == 400
    assert b"Sec-WebSocket-Extensions" in response.body


@pytest.mark.parametrize("value", ["chat v2", '"chat"', "chat;v=2"])
async def test_malformed_subprotocol_header_gives_400(value: str) -> None:
    """A Sec-WebSocket-Protocol that is not a list of tokens is 400 on a route that
    negotiates subprotocols (it is not read at all on one that does not)."""
    response = await handshake(
        make_app(subprotocols=["chat"]), request(add=[("Sec-WebSocket-Protocol", value)])
    )
    assert response.status == 400
    assert b"Sec-WebSocket-Protocol" in response.body
    ignored = await handshake(make_app(), request(add=[("Sec-WebSocket-Protocol", value)]))
    assert ignored.status == 101


@pytest.mark.parametrize(
    ("name", "value"),
    [("Upgrade", "web socket"), ("Connection", "Upgrade;x"), ("Connection", "")],
)
async def test_malformed_upgrade_or_connection_gives_400(name: str, value: str) -> None:
    """An Upgrade or Connection header that is not a token list is 400 naming it."""
    response = await handshake(make_app(), request(replace={name: value}))
    assert response.status == 400
    assert name.encode() in response.body


@pytest.mark.parametrize(
    "split",
    [
        [("Connection", "keep-alive"), ("Connection", "UPGRADE")],
        [("Upgrade", "h2c"), ("Upgrade", "WebSocket")],
        [("Sec-WebSocket-Extensions", "x-a"), ("Sec-WebSocket-Extensions", "Permessage-Deflate")],
    ],
)
async def test_lists_split_over_header_lines_are_one_list(split: list[tuple[str, str]]) -> None:
    """A list header sent as several lines (RFC 9110 section 5.3) reads as one list,
    tokens compared without regard to case."""
    names = {name.lower() for name, _ in split}
    req = request(drop=tuple(n for n in ("Upgrade", "Connection") if n.lower() in names), add=split)
    response = await handshake(make_app(compression=True), req)
    assert response.status == 101
    if "sec-websocket-extensions" in names:
        assert response.header("sec-websocket-extensions") is not None


async def test_malformed_extension_offer_gives_400() -> None:
    """A malformed Sec-WebSocket-Extensions offer is 400 when compression is on."""
    app = make_app(compression=True)
    bad = "permessage-deflate; =1"
    response = await handshake(app, request(add=[("Sec-WebSocket-Extensions", bad)]))
    assert response.status == 400


async def test_unserializable_ws_data_gives_500_and_logs_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ws.data that msgpack cannot pack fails the handshake with 500, naming the key in the log."""
    app = make_app()
    app.derive(lambda ctx: {"user": "ann", "conn": object()})
    with caplog.at_level(logging.ERROR):
        response = await handshake(app, request())
    assert response.status == 500
    assert b"object" not in response.body
    messages = [r.getMessage() for r in caplog.records if r.name == "axeom.ws"]
    assert len(messages) == 1
    assert "ws.data['conn']" in messages[0]
    assert "/ws" in messages[0]
    assert "'user'" not in messages[0]


async def test_serializable_ws_data_passes() -> None:
    """Plain data (str, int, float, bool, None, bytes, list, dict) is accepted as ws.data."""
    app = make_app()
    data = {"s": "x", "i": 1, "f": 1.5, "b": True, "n": None, "raw": b"\x00", "l": [1], "d": {}}
    app.derive(lambda ctx: data)
    response = await handshake(app, request())
    assert response.status == 101
    assert response.upgrade is not None
    assert response.upgrade.data == data


# -- handlers ----------------------------------------------------------------


def on_open(ws: Any) -> None:
    return None


def on_close(ws: Any, code: int, reason: str) -> None:
    return None


class Room:
    """A class-based handler: one instance per socket."""

    def __init__(self) -> None:
        self.count = 0

    def open(self, ws: Any) -> None:
        return None

    async def message(self, ws: Any, msg: Any) -> None:
        self.count += 1


async def test_handlers_as_dict() -> None:
    """Handlers given as a dict end up in upgrade.route.handlers."""
    app = Axeom().use(ws_plugin())
    app.ws("/ws", {"open": on_open, "message": on_message, "close": on_close})
    upgrade = (await handshake(app, request())).upgrade
    assert upgrade is not None
    handlers = upgrade.route.handlers
    assert (handlers.open, handlers.message, handlers.close) == (on_open, on_message, on_close)
    assert handlers.drain is None
    assert handlers.factory is None


async def test_handlers_as_kwargs() -> None:
    """Handlers given as keyword arguments end up in upgrade.route.handlers."""
    app = Axeom().use(ws_plugin())
    route = app.ws("/ws", open=on_open, message=on_message, idle_timeout=5)
    upgrade = (await handshake(app, request())).upgrade
    assert upgrade is not None
    assert upgrade.route is route
    assert upgrade.route.handlers.open is on_open
    assert upgrade.route.handlers.message is on_message
    assert upgrade.route.options.idle_timeout == 5


async def test_handlers_as_decorated_class_bind_fresh_instances() -> None:
    """A decorated class registers its methods; each bind() gets a fresh instance."""
    app = Axeom().use(ws_plugin())
    decorated = app.ws("/ws", idle_timeout=7)(Room)
    assert decorated is Room
    upgrade = (await handshake(app, request())).upgrade
    assert upgrade is not None
    handlers = upgrade.route.handlers
    assert handlers.factory is Room
    assert upgrade.route.options.idle_timeout == 7
    first, second = handlers.bind(), handlers.bind()
    assert first.message is not None and second.message is not None
    assert first.open is not None
    assert first.message.__self__ is not second.message.__self__
    assert isinstance(first.message.__self__, Room)
    await first.message(None, "hi")
    assert first.message.__self__.count == 1
    assert second.message.__self__.count == 0
    assert first.close is None


async def test_class_given_positionally() -> None:
    """A class passed as the handlers argument registers like the decorator."""
    app = Axeom().use(ws_plugin())
    app.ws("/ws", Room)
    upgrade = (await handshake(app, request())).upgrade
    assert upgrade is not None
    assert upgrade.route.handlers.factory is Room


async def test_decorated_function_is_the_message_handler() -> None:
    """@app.ws(path) on a function registers it as the message handler."""
    app = Axeom().use(ws_plugin())

    @app.ws("/ws")
    def echo(ws: Any, msg: Any) -> None:
        return None

    upgrade = (await handshake(app, request())).upgrade
    assert upgrade is not None
    assert upgrade.route.handlers.message is echo


def test_bind_of_function_handlers_returns_them() -> None:
    """bind() of function handlers returns the same callables every time."""
    handlers = Handlers.from_mapping({"open": on_open, "message": on_message})
    bound = handlers.bind()
    assert (bound.open, bound.message, bound.close) == (on_open, on_message, None)


def _register(app: Axeom, *args: Any, **kwargs: Any) -> Any:
    return app.ws("/ws", *args, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (({"opne": on_open},), {}, "unknown WebSocket handler 'opne' (did you mean 'open'?)"),
        (
            (),
            {"message": on_message, "idle_timout": 3},
            "unknown handler or option 'idle_timout' (did you mean 'idle_timeout'?)",
        ),
        (
            (),
            {"messages": on_message},
            "unknown handler or option 'messages' (did you mean 'message'?)",
        ),
        ((), {"message": lambda ws: None}, "must accept 2 positional argument(s)"),
        ((), {"open": lambda ws, extra: None}, "must accept 1 positional argument(s)"),
        ((), {"close": lambda ws, code: None}, "must accept 3 positional argument(s)"),
        ((), {"message": "not callable"}, "must be callable"),
        (({"open": on_open},), {"message": on_message}, "not both"),
        ((on_message,), {}, "for one handler, app.ws(path, message=f)"),
        ((), {"message": on_message, "subprotocols": "chat"}, "list of strings"),
        ((), {"message": on_message, "compression": "yes"}, "compression must be True or False"),
    ],
)
def test_bad_registrations_raise_type_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str
) -> None:
    """Unknown handler names, unknown options and wrong arity fail at registration."""
    app = Axeom().use(ws_plugin())
    with pytest.raises(TypeError) as info:
        _register(app, *args, **kwargs)
    assert fragment in str(info.value)
    assert app.routes == []


def test_handler_with_optional_extra_args_or_varargs_is_accepted() -> None:
    """Defaults beyond the arity and *args are fine."""
    app = Axeom().use(ws_plugin())
    app.ws("/a", message=lambda ws, msg, extra=None: None)
    app.ws("/b", message=lambda *args: None)
    assert len(app.routes) == 2


def test_bad_class_handlers_raise_type_error() -> None:
    """A class with no handlers, with a constructor needing args, or bad arity is rejected."""
    app = Axeom().use(ws_plugin())

    class Empty:
        pass

    class NeedsArgs:
        def __init__(self, x: int) -> None:
            self.x = x

        def message(self, ws: Any, msg: Any) -> None:
            return None

    class BadArity:
        def message(self, ws: Any) -> None:
            return None

    with pytest.raises(TypeError, match="defines none of"):
        app.ws("/a", Empty)
    with pytest.raises(TypeError, match="constructible without arguments"):
        app.ws("/b", NeedsArgs)
    with pytest.raises(TypeError, match="must accept 3 positional"):
        app.ws("/c", BadArity)
    with pytest.raises(TypeError, match="decorates a class or a message function"):
        app.ws("/d")(42)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_message_size", 0),
        ("max_message_size", True),
        ("idle_timeout", -1),
        ("ping_timeout", None),
        ("close_timeout", 0),
    ],
)
def test_bad_option_values_raise_value_error(option: str, value: Any) -> None:
    """Out-of-range option values are rejected at registration."""
    app = Axeom().use(ws_plugin())
    with pytest.raises(ValueError, match=option):
        app.ws("/ws", message=on_message, **{option: value})


def test_plugin_defaults_and_route_overrides() -> None:
    """ws_plugin defaults apply to every route; route options override them for that route."""
    app = Axeom().use(ws_plugin(idle_timeout=30, max_message_size=1024, subprotocols=["a"]))
    plain = app.ws("/plain", message=on_message)
    custom = app.ws("/custom", message=on_message, idle_timeout=5, subprotocols=["b", "c"])
    assert plain.options.idle_timeout == 30
    assert plain.options.max_message_size == 1024
    assert plain.options.subprotocols == ("a",)
    assert custom.options.idle_timeout == 5
    assert custom.options.max_message_size == 1024
    assert custom.options.subprotocols == ("b", "c")
    assert WSOptions().idle_timeout == 120.0


def test_misspelled_handler_keyword_lists_handlers_too() -> None:
    """`messages=` is named as a handler-or-option mistake, and both lists are shown."""
    app = Axeom().use(ws_plugin())
    with pytest.raises(TypeError) as info:
        app.ws("/ws", messages=on_message)
    message = str(info.value)
    assert "handlers: open, message, drain, close, error" in message
    assert "backpressure_limit" in message


def test_misspelled_handler_method_warns_at_the_users_line() -> None:
    """A class method close to a missing handler name warns, with did-you-mean, at the
    registration line; helpers with other names, and _private names, do not."""
    app = Axeom().use(ws_plugin())

    class Room:
        def open(self, ws: Any) -> None:
            return None

        def mesage(self, ws: Any, msg: Any) -> None:
            return None

        def send_message(self, ws: Any) -> None:
            return None

        def _mesage(self) -> None:
            return None

    with pytest.warns(UserWarning) as caught:
        app.ws("/ws", Room)
    assert len(caught) == 1
    assert "'mesage' is not a handler" in str(caught[0].message)
    assert "did you mean 'message'?" in str(caught[0].message)
    assert caught[0].filename == __file__


def test_helper_methods_beside_their_handler_do_not_warn() -> None:
    """A method resembling a handler the class does define is a helper, not a typo."""
    app = Axeom().use(ws_plugin())

    class Room:
        def message(self, ws: Any, msg: Any) -> None:
            return None

        def messages(self) -> list[str]:
            return []

        def reopen(self) -> None:
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.ws("/ws", Room)


def test_class_with_only_a_misspelled_handler_says_which() -> None:
    """A class whose only handler is misspelled names the near miss in its error."""
    app = Axeom().use(ws_plugin())

    class Room:
        def mesage(self, ws: Any, msg: Any) -> None:
            return None

    with pytest.raises(TypeError, match="'mesage': did you mean 'message'"):
        app.ws("/ws", Room)


def test_plugin_rejects_unknown_default() -> None:
    """An unknown option given to ws_plugin raises TypeError."""
    with pytest.raises(TypeError, match="unknown WebSocket option"):
        ws_plugin(bogus=1)


async def test_route_options_drive_the_handshake() -> None:
    """Per-route compression and subprotocols override the plugin defaults in the 101."""
    app = Axeom().use(ws_plugin(compression=True, subprotocols=["a"]))
    app.ws("/on", message=on_message)
    app.ws("/off", message=on_message, compression=False, subprotocols=["b"])
    add = [("Sec-WebSocket-Extensions", "permessage-deflate"), ("Sec-WebSocket-Protocol", "a, b")]
    on = await handshake(app, request("/on", add=add))
    off = await handshake(app, request("/off", add=add))
    assert on.header("sec-websocket-extensions") is not None
    assert on.header("sec-websocket-protocol") == "a"
    assert off.header("sec-websocket-extensions") is None
    assert off.header("sec-websocket-protocol") == "b"


async def test_derive_sees_params_on_ws_route() -> None:
    """derive on a ws route sees the route's params and query via ctx."""
    app = Axeom().use(ws_plugin())
    app.ws("/rooms/:room", message=on_message)

    @app.derive
    def who(ctx: Context) -> dict[str, Any]:
        return {"room": ctx.params["room"], "token": ctx.query.get("token")}

    response = await handshake(app, request("/rooms/r1?token=t"))
    assert response.upgrade is not None
    assert response.upgrade.data == {"room": "r1", "token": "t"}
