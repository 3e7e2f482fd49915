"""Tests for the engine (axeom._app): lifecycle order, short-circuits, errors, derive,
context, groups, mounting and plain HTTP routes, all through ``await app.handle(...)``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from axeom import (
    Axeom,
    BadRequest,
    Context,
    Group,
    Headers,
    HTTPError,
    Request,
    Response,
    RouteConflict,
    Unauthorized,
)
from axeom.ws import ws_plugin

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def ws_request(target: str = "/ws", **extra: str) -> Request:
    """A valid WebSocket upgrade request for ``target``."""
    headers = Headers(
        [
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
            *((name.replace("_", "-"), value) for name, value in extra.items()),
        ]
    )
    return Request("GET", target, headers, ("10.0.0.1", 5555))


def get(target: str, method: str = "GET") -> Request:
    return Request(method, target, Headers([("Host", "example.com")]))


def ws_app() -> Axeom:
    app = Axeom().use(ws_plugin())
    app.ws("/ws", message=lambda ws, msg: None)
    return app


def hook(calls: list[str], name: str, is_async: bool, result: Any = None) -> Callable[..., Any]:
    """A hook that records ``name`` and returns ``result``; sync or async."""
    if is_async:

        async def async_hook(*args: Any) -> Any:
            calls.append(name)
            return result

        return async_hook

    def sync_hook(*args: Any) -> Any:
        calls.append(name)
        return result

    return sync_hook


ORDER = [
    "on_before_match",
    "on_request",
    "derive",
    "on_before_handle",
    "handler",
    "on_after_handle",
    "on_response",
]


def recording_app(calls: list[str], is_async: bool, returns: str | None = None) -> Axeom:
    """An app with one recording hook of every kind; ``returns`` names the hook that answers."""
    app = Axeom()

    def make(name: str) -> Callable[..., Any]:
        result = f"from {name}" if name == returns else None
        return hook(calls, name, is_async, result)

    app.on_response(make("on_response"))
    app.on_after_handle(make("on_after_handle"))
    app.on_before_handle(make("on_before_handle"))
    app.derive(make("derive"))
    app.on_request(make("on_request"))
    app.on_before_match(make("on_before_match"))
    app.get("/x", hook(calls, "handler", is_async, "handled"))
    return app


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_hooks_run_in_lifecycle_order(is_async: bool) -> None:
    """Hooks run before_match, request, derive, before_handle, handler, after_handle, response."""
    calls: list[str] = []
    response = await recording_app(calls, is_async).handle(get("/x"))
    assert calls == ORDER
    assert response.status == 200
    assert response.body == b"handled"


async def test_sync_and_async_hooks_mix() -> None:
    """Sync and async hooks of one kind interleave in registration order."""
    calls: list[str] = []
    app = Axeom()
    app.on_request(hook(calls, "a-sync", False))
    app.on_request(hook(calls, "b-async", True))
    app.on_request(hook(calls, "c-sync", False))
    app.get("/x", hook(calls, "handler", True, "ok"))
    assert (await app.handle(get("/x"))).body == b"ok"
    assert calls == ["a-sync", "b-async", "c-sync", "handler"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("returns", ["on_before_match", "on_request", "on_before_handle"])
async def test_hook_returning_a_value_short_circuits(returns: str, is_async: bool) -> None:
    """A hook that returns a value answers: later hooks and the handler skip, on_response runs."""
    calls: list[str] = []
    response = await recording_app(calls, is_async, returns).handle(get("/x"))
    stop = ORDER.index(returns)
    assert calls == [*ORDER[: stop + 1], "on_response"]
    assert response.status == 200
    assert response.body == f"from {returns}".encode()


async def test_on_after_handle_replaces_the_response() -> None:
    """on_after_handle sees the handler's response and may replace it."""
    app = Axeom()
    seen: list[Response] = []

    @app.on_after_handle
    def replace(ctx: Context, response: Response) -> Any:
        seen.append(response)
        return {"wrapped": response.body.decode()}

    app.get("/x", lambda ctx: "inner")
    response = await app.handle(get("/x"))
    assert seen[0].body == b"inner"
    assert json.loads(response.body) == {"wrapped": "inner"}


async def test_on_response_runs_after_errors_and_may_replace() -> None:
    """on_response sees error responses too and its return value replaces them."""
    app = Axeom()
    statuses: list[int] = []

    @app.on_response
    def swap(ctx: Context, response: Response) -> Any:
        statuses.append(response.status)
        return Response.text("replaced", 418)

    response = await app.handle(get("/missing"))
    assert statuses == [404]
    assert (response.status, response.body) == (418, b"replaced")


async def test_on_response_returning_garbage_keeps_the_response() -> None:
    """An on_response hook returning an unconvertible value is logged; handle still answers."""
    app = Axeom()
    app.get("/x", lambda ctx: "ok")
    app.on_response(lambda ctx, response: object())
    response = await app.handle(get("/x"))
    assert response.status == 200
    assert response.body == b"ok"


async def test_on_error_returning_garbage_still_answers(caplog: pytest.LogCaptureFixture) -> None:
    """An on_error hook returning an unconvertible value does not make handle raise."""
    app = Axeom()
    app.on_error(lambda ctx, error: object())

    @app.get("/x")
    def boom(ctx: Context) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="axeom.engine"):
        response = await app.handle(get("/x"))
    assert response.status == 500


async def test_failing_on_response_hook_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An on_response hook that raises is logged; the response is kept and later hooks run."""
    app = Axeom()
    app.get("/x", lambda ctx: "ok")
    later: list[int] = []

    @app.on_response
    def broken(ctx: Context, response: Response) -> None:
        raise RuntimeError("hook broke")

    app.on_response(lambda ctx, response: later.append(response.status))
    with caplog.at_level(logging.ERROR, logger="axeom.engine"):
        response = await app.handle(get("/x"))
    assert (response.status, response.body) == (200, b"ok")
    assert later == [200]
    assert "on_response hook" in caplog.text


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_derive_raising_unauthorized_gives_401_with_reason(is_async: bool) -> None:
    """Unauthorized('bad token') in derive answers 401 with the reason; the handler never runs."""
    app = Axeom()
    handled: list[str] = []

    if is_async:

        async def auth(ctx: Context) -> dict[str, Any]:
            raise Unauthorized("bad token")
    else:

        def auth(ctx: Context) -> dict[str, Any]:
            raise Unauthorized("bad token")

    app.derive(auth)
    app.get("/x", lambda ctx: handled.append("x"))
    response = await app.handle(get("/x"))
    assert response.status == 401
    assert response.body == b"bad token\n"
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert handled == []


async def test_http_error_with_custom_status_and_headers() -> None:
    """HTTPError(status, reason, headers=...) answers that status, reason and headers."""
    app = Axeom()

    @app.get("/x")
    def limited(ctx: Context) -> None:
        raise HTTPError(429, "slow down", headers=[("retry-after", "3")])

    response = await app.handle(get("/x"))
    assert response.status == 429
    assert response.body == b"slow down\n"
    assert response.header("Retry-After") == "3"


async def test_derive_raising_unauthorized_on_ws_route_rejects_handshake() -> None:
    """A derive rejection on a WebSocket route gives 401 and no upgrade."""
    app = ws_app()
    app.derive(lambda ctx: (_ for _ in ()).throw(Unauthorized("bad token")))
    response = await app.handle(ws_request())
    assert response.status == 401
    assert response.upgrade is None
    assert b"bad token" in response.body


async def test_other_exception_goes_through_on_error_which_answers() -> None:
    """A non-HTTP exception is passed to on_error, whose return value is the response."""
    app = Axeom()
    seen: list[BaseException] = []

    @app.get("/x")
    def boom(ctx: Context) -> None:
        raise KeyError("secret-detail")

    @app.on_error
    async def handle_error(ctx: Context, error: Exception) -> Any:
        seen.append(error)
        return Response.text("handled", 503)

    response = await app.handle(get("/x"))
    assert isinstance(seen[0], KeyError)
    assert (response.status, response.body) == (503, b"handled")


async def test_on_error_returning_none_falls_back_to_500_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without an answering on_error, an exception gives a logged 500 with no exception text."""
    app = Axeom()
    errors: list[BaseException] = []
    app.on_error(lambda ctx, error: errors.append(error))

    @app.get("/x")
    def boom(ctx: Context) -> None:
        raise RuntimeError("secret-detail-xyz")

    with caplog.at_level(logging.ERROR, logger="axeom.engine"):
        response = await app.handle(get("/x"))
    assert response.status == 500
    assert b"secret-detail-xyz" not in response.body
    assert b"RuntimeError" not in response.body
    assert response.body == b"Internal Server Error\n"
    assert len(errors) == 1
    records = [r for r in caplog.records if r.name == "axeom.engine"]
    assert records, "the 500 must be logged"
    assert "GET /x" in records[-1].getMessage()
    assert records[-1].exc_info is not None
    assert "secret-detail-xyz" in caplog.text


async def test_failing_on_error_hook_falls_through_to_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An on_error hook that raises is logged and skipped; the HTTPError still answers."""
    app = Axeom()

    @app.on_error
    def broken(ctx: Context, error: Exception) -> None:
        raise RuntimeError("on_error broke")

    @app.get("/x")
    def bad(ctx: Context) -> None:
        raise BadRequest("nope")

    with caplog.at_level(logging.ERROR, logger="axeom.engine"):
        response = await app.handle(get("/x"))
    assert (response.status, response.body) == (400, b"nope\n")
    assert "on_error hook" in caplog.text


async def test_derive_results_merge_into_ws_data() -> None:
    """Every derive's dict is merged, in order, into the 101's upgrade.data (ws.data)."""
    app = ws_app()
    app.derive(lambda ctx: {"user": "ann", "role": "guest"})

    @app.derive
    async def second(ctx: Context) -> dict[str, Any]:
        return {"role": "admin", "seen_user": ctx.user}

    app.derive(lambda ctx: None)
    response = await app.handle(ws_request())
    assert response.status == 101
    assert response.upgrade is not None
    assert response.upgrade.data == {"user": "ann", "role": "admin", "seen_user": "ann"}


async def test_derive_returning_non_dict_gives_500(caplog: pytest.LogCaptureFixture) -> None:
    """A derive that returns something other than a dict or None fails the request with 500."""
    app = ws_app()

    def bad_derive(ctx: Context) -> Any:
        return ["not", "a", "dict"]

    app.derive(bad_derive)
    with caplog.at_level(logging.ERROR, logger="axeom.engine"):
        response = await app.handle(ws_request())
    assert response.status == 500
    assert response.upgrade is None
    assert "bad_derive" in caplog.text
    assert "must return a dict" in caplog.text


async def test_context_attribute_access_to_derived_and_decorated_values() -> None:
    """ctx.name reads derived values, then app.decorate values; unknown names raise."""
    app = Axeom().decorate(db="pool", user="decorated-user")
    app.derive(lambda ctx: {"user": "ann"})
    seen: dict[str, Any] = {}

    @app.get("/x")
    def handler(ctx: Context) -> str:
        seen["user"] = ctx.user
        seen["db"] = ctx.db
        with pytest.raises(AttributeError, match="not derived, not decorated"):
            _ = ctx.missing
        return "ok"

    assert (await app.handle(get("/x"))).status == 200
    assert seen == {"user": "ann", "db": "pool"}


async def test_context_exposes_request_parts() -> None:
    """ctx carries method, path, params, route pattern, query, headers and client."""
    app = Axeom()
    seen: dict[str, Any] = {}

    @app.get("/rooms/:room")
    def handler(ctx: Context) -> str:
        seen.update(
            method=ctx.method,
            path=ctx.path,
            params=ctx.params,
            route=ctx.route,
            query=ctx.query,
            host=ctx.headers["HOST"],
            client=ctx.client,
        )
        return "ok"

    request = Request("GET", "/rooms/a%20b?x=1&y=", Headers({"Host": "h"}), ("1.2.3.4", 9))
    await app.handle(request)
    assert seen == {
        "method": "GET",
        "path": "/rooms/a%20b",
        "params": {"room": "a b"},
        "route": "/rooms/:room",
        "query": {"x": "1", "y": ""},
        "host": "h",
        "client": ("1.2.3.4", 9),
    }


async def test_set_header_appears_on_the_101() -> None:
    """Headers added with ctx.set_header are sent on the 101 (and other responses)."""
    app = ws_app()
    app.on_request(lambda ctx: ctx.set_header("x-request-id", "abc"))
    response = await app.handle(ws_request())
    assert response.status == 101
    assert response.header("x-request-id") == "abc"
    rejected = await app.handle(get("/nowhere"))
    assert rejected.status == 404


async def test_set_header_does_not_leak_into_a_shared_response() -> None:
    """ctx.set_header must not mutate a Response object a hook returns on every request."""
    denied = Response.error(403, "denied")
    app = Axeom()
    app.on_request(lambda ctx: ctx.set_header("x-request-id", "abc"))
    app.on_before_handle(lambda ctx: denied)
    app.get("/x", lambda ctx: "ok")
    for _ in range(3):
        response = await app.handle(get("/x"))
        assert response.status == 403
        assert [v for k, v in response.headers if k == "x-request-id"] == ["abc"]
    assert denied.header("x-request-id") is None


async def test_on_before_match_may_rewrite_path() -> None:
    """on_before_match can rewrite ctx.path before routing."""
    app = Axeom()
    app.get("/new", lambda ctx: "new")

    @app.on_before_match
    def rewrite(ctx: Context) -> None:
        if ctx.path == "/old":
            ctx.path = "/new"

    response = await app.handle(get("/old"))
    assert (response.status, response.body) == (200, b"new")


async def test_group_prefix_and_scoped_hooks_apply_only_to_group_routes() -> None:
    """A group's prefix and hooks apply to its routes only; app hooks run first."""
    app = Axeom()
    calls: list[str] = []
    app.derive(lambda ctx: calls.append("app-derive"))

    def build(api: Group) -> None:
        api.derive(lambda ctx: {"scoped": True})
        api.on_before_handle(lambda ctx: calls.append("group-before"))
        api.on_after_handle(lambda ctx, response: calls.append("group-after"))
        api.get("/x", lambda ctx: {"scoped": ctx.data.get("scoped", False)})

    app.group("/api/", build)
    app.get("/x", lambda ctx: {"scoped": ctx.data.get("scoped", False)})

    inside = await app.handle(get("/api/x"))
    assert inside.status == 200
    assert json.loads(inside.body) == {"scoped": True}
    assert calls == ["app-derive", "group-before", "group-after"]

    calls.clear()
    outside = await app.handle(get("/x"))
    assert json.loads(outside.body) == {"scoped": False}
    assert calls == ["app-derive"]


async def test_nested_groups_chain_prefixes_and_hooks() -> None:
    """Nested groups join prefixes, and outer group hooks run before inner ones."""
    app = Axeom()
    calls: list[str] = []

    def inner(group: Group) -> None:
        group.on_before_handle(lambda ctx: calls.append("inner"))
        group.get("/leaf", lambda ctx: "leaf")

    def outer(group: Group) -> None:
        group.on_before_handle(lambda ctx: calls.append("outer"))
        group.group("/b", inner)
        group.get("/mid", lambda ctx: "mid")

    app.group("/a", outer)
    response = await app.handle(get("/a/b/leaf"))
    assert (response.status, response.body) == (200, b"leaf")
    assert calls == ["outer", "inner"]
    calls.clear()
    assert (await app.handle(get("/a/mid"))).body == b"mid"
    assert calls == ["outer"]
    assert (await app.handle(get("/leaf"))).status == 404


async def test_group_ws_route_gets_prefix_and_group_derive() -> None:
    """app.ws inside a group registers under the prefix with the group's derive."""
    app = Axeom().use(ws_plugin())

    def build(group: Group) -> None:
        group.derive(lambda ctx: {"room": ctx.params["room"]})
        group.ws("/:room", message=lambda ws, msg: None)

    app.group("/chat", build)
    response = await app.handle(ws_request("/chat/lobby"))
    assert response.status == 101
    assert response.upgrade is not None
    assert response.upgrade.route.pattern == "/chat/:room"
    assert response.upgrade.data == {"room": "lobby"}


async def test_use_mounts_another_apps_routes_hooks_and_decorations() -> None:
    """app.use(other) serves the other app's routes with its hooks and decorations."""
    other = Axeom().decorate(version="2")
    other.derive(lambda ctx: {"from_other": True})
    other.get("/other", lambda ctx: {"version": ctx.version, "derived": ctx.from_other})
    calls: list[str] = []
    other.on_request(lambda ctx: calls.append("other-on-request"))

    app = Axeom()
    app.get("/main", lambda ctx: "main")
    assert app.use(other) is app

    response = await app.handle(get("/other"))
    assert response.status == 200
    assert json.loads(response.body) == {"version": "2", "derived": True}
    assert calls == ["other-on-request"]
    assert (await app.handle(get("/main"))).body == b"main"
    assert [(m, p) for m, p, _ in app.routes] == [("GET", "/main"), ("GET", "/other")]


async def test_use_mounts_ws_routes_and_the_plugin() -> None:
    """Mounting an app with ws routes carries over the plugin and its routes."""
    other = Axeom().use(ws_plugin())
    other.ws("/sock", message=lambda ws, msg: None)
    app = Axeom().use(other)
    response = await app.handle(ws_request("/sock"))
    assert response.status == 101
    assert "ws" in app.extensions


def test_use_applies_a_callable_plugin() -> None:
    """app.use(fn) calls fn(app) and returns the app for chaining."""
    seen: list[Axeom] = []
    app = Axeom()
    assert app.use(seen.append) is app
    assert seen == [app]


def test_mounting_conflicting_routes_raises() -> None:
    """Mounting an app whose route collides with an existing one raises RouteConflict."""
    other = Axeom()
    other.get("/x", lambda ctx: "b")
    app = Axeom()
    app.get("/x", lambda ctx: "a")
    with pytest.raises(RouteConflict):
        app.use(other)


def test_app_ws_without_plugin_raises_attribute_error_naming_ws_plugin() -> None:
    """Using app.ws without ws_plugin() fails with an AttributeError that says what to add."""
    app = Axeom()
    with pytest.raises(AttributeError, match="ws_plugin"):
        app.ws("/x", message=lambda ws, msg: None)
    assert not hasattr(Axeom(), "ws")


async def test_plain_routes_return_str_dict_list_bytes_response_and_none() -> None:
    """Handler results become text, JSON, bytes, the Response itself, or 204 for None."""
    app = Axeom()
    app.get("/str", lambda ctx: "hello")
    app.get("/dict", lambda ctx: {"a": 1})
    app.get("/list", lambda ctx: [1, 2])
    app.get("/bytes", lambda ctx: b"\x00\x01")
    app.get("/none", lambda ctx: None)
    custom = Response(201, [("x-custom", "1")], b"made")
    app.get("/response", lambda ctx: custom)

    text = await app.handle(get("/str"))
    assert (text.status, text.body) == (200, b"hello")
    assert text.header("content-type") == "text/plain; charset=utf-8"
    data = await app.handle(get("/dict"))
    assert json.loads(data.body) == {"a": 1}
    assert data.header("Content-Type") == "application/json"
    assert json.loads((await app.handle(get("/list"))).body) == [1, 2]
    raw = await app.handle(get("/bytes"))
    assert raw.body == b"\x00\x01"
    assert raw.header("content-type") == "application/octet-stream"
    assert (await app.handle(get("/none"))).status == 204
    assert await app.handle(get("/response")) is custom


async def test_route_decorator_and_methods() -> None:
    """@app.route registers for the given method; other methods on the path get 405."""
    app = Axeom()

    @app.route("post", "/items")
    async def create(ctx: Context) -> Response:
        return Response.json({"created": True}, 201)

    app.get("/items", lambda ctx: "list")
    created = await app.handle(get("/items", "POST"))
    assert created.status == 201
    rejected = await app.handle(get("/items", "DELETE"))
    assert rejected.status == 405
    assert rejected.header("allow") == "GET, POST"
    assert b"allowed: GET, POST" in rejected.body


async def test_unknown_route_is_404() -> None:
    """A path no route covers answers 404."""
    app = Axeom()
    app.get("/x", lambda ctx: "x")
    response = await app.handle(get("/y"))
    assert response.status == 404
    assert b"/y" in response.body


async def test_handler_returning_unconvertible_value_gives_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler result that cannot become a response fails with a logged 500."""
    app = Axeom()
    app.get("/x", lambda ctx: object())
    with caplog.at_level(logging.ERROR, logger="axeom.engine"):
        response = await app.handle(get("/x"))
    assert response.status == 500
    assert "cannot turn object into a response" in caplog.text


def test_duplicate_route_raises_route_conflict() -> None:
    """Registering the same method and path twice raises RouteConflict."""
    app = Axeom()
    app.get("/x", lambda ctx: "a")
    with pytest.raises(RouteConflict, match="registered earlier"):
        app.get("/x", lambda ctx: "b")


def test_http_error_status_must_be_an_error() -> None:
    """HTTPError refuses a status outside 4xx/5xx."""
    with pytest.raises(ValueError, match="4xx or 5xx"):
        HTTPError(302)
    assert str(Unauthorized()) == "401 Unauthorized"


async def test_unsendable_header_from_a_hook_is_a_500() -> None:
    """ctx.set_header with a line break or non-latin-1 value fails as a logged 500."""
    from axeom import Axeom as _Axeom

    app = _Axeom()
    app.on_request(lambda ctx: ctx.set_header("x-room", ctx.query.get("room", "")))
    app.get("/x", lambda ctx: "ok")
    for bad in ("%0d%0aset-cookie:%20a=b", "%E2%9C%93"):
        response = await app.handle(get(f"/x?room={bad}"))
        assert response.status == 500
        assert all(name != "x-room" for name, _ in response.headers)
    assert (await app.handle(get("/x?room=lobby"))).header("x-room") == "lobby"


async def test_a_route_reads_the_body_and_its_json() -> None:
    """``ctx.body`` is the request body; ``ctx.json()`` parses it, and a body
    that is not JSON (or not UTF-8, or empty) is the client's mistake: 400."""
    from axeom.testing import TestClient

    app = Axeom()
    app.route("POST", "/items", lambda ctx: {"item": ctx.json(), "size": len(ctx.body)})
    app.route("PUT", "/raw", lambda ctx: ctx.body[::-1])
    async with TestClient(app) as client:
        created = await client.request("POST", "/items", body=b'{"name": "lamp"}')
        assert json.loads(created.body) == {"item": {"name": "lamp"}, "size": 16}
        assert (await client.request("PUT", "/raw", body=b"abc")).body == b"cba"
        for bad in (b"{nope", b"\xff\xfe", b""):
            refused = await client.request("POST", "/items", body=bad)
            assert (refused.status, refused.body) == (400, b"request body is not valid JSON\n")
