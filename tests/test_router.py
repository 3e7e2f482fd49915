"""Tests for axeom._router: precedence, backtracking, decoding, wildcards and conflicts."""

from __future__ import annotations

import itertools

import pytest

from axeom._router import MethodMismatch, RouteConflict, RouteMatch, Router

PRECEDENCE_ROUTES = [("/users/me", "static"), ("/users/:id", "param"), ("/users/*", "wildcard")]


def _router(*routes: tuple[str, str], method: str = "GET") -> Router[str]:
    router: Router[str] = Router()
    for pattern, endpoint in routes:
        router.add(method, pattern, endpoint)
    return router


def _match(router: Router[str], path: str, method: str = "GET") -> RouteMatch[str]:
    found = router.match(method, path)
    assert isinstance(found, RouteMatch), f"{method} {path} gave {found!r}"
    return found


@pytest.mark.parametrize("order", list(itertools.permutations(PRECEDENCE_ROUTES)))
def test_static_beats_param_beats_wildcard_in_any_registration_order(
    order: tuple[tuple[str, str], ...],
) -> None:
    """Static wins over a parameter, which wins over the wildcard, whatever the order."""
    router = _router(*order)
    assert _match(router, "/users/me").endpoint == "static"
    found = _match(router, "/users/42")
    assert (found.endpoint, found.params) == ("param", {"id": "42"})
    found = _match(router, "/users/42/posts")
    assert (found.endpoint, found.params) == ("wildcard", {"*": "42/posts"})


@pytest.mark.parametrize("reverse", [False, True])
def test_static_beats_param_when_registered_in_either_order(reverse: bool) -> None:
    """Registering the param route first or last does not change which one a static path hits."""
    routes = [("/a/:x", "param"), ("/a/b", "static")]
    router = _router(*(reversed(routes) if reverse else routes))
    assert _match(router, "/a/b").endpoint == "static"
    assert _match(router, "/a/c").endpoint == "param"


def test_backtracks_from_dead_end_static_branch_to_param_branch() -> None:
    """A static branch that leads nowhere gives way to the parameter branch."""
    router = _router(("/a/b/other", "static"), ("/a/:x/end", "param"))
    found = _match(router, "/a/b/end")
    assert found.endpoint == "param"
    assert found.params == {"x": "b"}
    assert found.pattern == "/a/:x/end"


def test_backtracks_from_dead_end_param_branch_to_wildcard_without_leaking_params() -> None:
    """When the param branch dead-ends, the wildcard matches and no stale param is reported."""
    router = _router(("/a/:x/b", "param"), ("/a/*", "wildcard"))
    found = _match(router, "/a/q/c")
    assert found.endpoint == "wildcard"
    assert found.params == {"*": "q/c"}


def test_static_path_without_the_method_falls_back_to_a_param_route_with_it() -> None:
    """POST /users/me reaches POST /users/:id when /users/me only exists for GET (no bogus 405)."""
    router: Router[str] = Router()
    router.add("GET", "/users/me", "me")
    router.add("POST", "/users/:id", "by-id")
    found = router.match("POST", "/users/me")
    assert isinstance(found, RouteMatch), f"expected the POST param route, got {found!r}"
    assert found.endpoint == "by-id"
    assert found.params == {"id": "me"}


def test_params_are_percent_decoded_after_matching() -> None:
    """An encoded slash stays inside its parameter and is decoded only afterwards."""
    router = _router(("/files/:name", "file"))
    found = _match(router, "/files/a%2Fb%20c")
    assert found.params == {"name": "a/b c"}
    assert router.match("GET", "/files/a/b") is None


def test_multiple_params_are_named_by_position() -> None:
    """Each parameter gets its own decoded value under its own name."""
    router = _router(("/rooms/:room/users/:user", "x"))
    assert _match(router, "/rooms/r%C3%A9d/users/ann").params == {"room": "réd", "user": "ann"}


def test_trailing_wildcard_captures_the_rest_under_star() -> None:
    """A trailing '*' captures every remaining segment, joined by '/', under the key '*'."""
    router = _router(("/static/*", "assets"), ("/u/:id/*", "user-rest"))
    assert _match(router, "/static/css/site/main.css").params == {"*": "css/site/main.css"}
    assert _match(router, "/u/7/a/b").params == {"id": "7", "*": "a/b"}


def test_root_route_matches_slash() -> None:
    """The '/' pattern matches the root path."""
    router = _router(("/", "root"))
    assert _match(router, "/").endpoint == "root"
    assert router.match("GET", "/x") is None


def test_unknown_path_gives_none() -> None:
    """A path no route covers gives None (a 404), not a mismatch."""
    router = _router(("/a", "a"))
    assert router.match("GET", "/b") is None
    assert router.match("GET", "/a/b") is None


def test_method_mismatch_lists_allowed_methods() -> None:
    """A path registered for other methods gives MethodMismatch with those methods, sorted."""
    router: Router[str] = Router()
    router.add("POST", "/items", "create")
    router.add("GET", "/items", "list")
    found = router.match("DELETE", "/items")
    assert isinstance(found, MethodMismatch)
    assert found.allowed == ["GET", "POST"]


def test_same_path_different_methods_is_not_a_conflict() -> None:
    """One path may carry one endpoint per method."""
    router: Router[str] = Router()
    router.add("GET", "/x/:id", "get")
    router.add("PUT", "/x/:id", "put")
    assert _match(router, "/x/1", "PUT").endpoint == "put"
    assert _match(router, "/x/1", "GET").endpoint == "get"


@pytest.mark.parametrize(
    ("first", "second", "fragment"),
    [
        ("/a/b", "/a/b", "conflicts with GET '/a/b'"),
        ("/a/:id", "/a/:id", "conflicts with GET '/a/:id'"),
        ("/a/*", "/a/*", "conflicts with GET '/a/*'"),
        ("/a/:id", "/a/:name", "parameter ':name' conflicts with ':id'"),
        ("/a/:id/x", "/a/:name/y", "parameter ':name' conflicts with ':id'"),
    ],
)
def test_conflicting_registrations_raise(first: str, second: str, fragment: str) -> None:
    """Routes the router could not tell apart are rejected at registration, naming both."""
    router: Router[str] = Router()
    router.add("GET", first, "one")
    with pytest.raises(RouteConflict) as info:
        router.add("GET", second, "two")
    assert fragment in str(info.value)
    assert second in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("/a/*/b", "'*' is only allowed as the last segment"),
        ("a/b", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a//b", "has an empty segment"),
        ("/a/:1x", "is not an identifier"),
        ("/a/:", "is not an identifier"),
    ],
)
def test_malformed_patterns_raise(pattern: str, fragment: str) -> None:
    """Malformed patterns raise RouteConflict with a message saying what is wrong."""
    router: Router[str] = Router()
    with pytest.raises(RouteConflict) as info:
        router.add("GET", pattern, "x")
    assert fragment in str(info.value)
    assert repr(pattern) in str(info.value)


def test_route_conflict_is_a_value_error() -> None:
    """RouteConflict subclasses ValueError so generic handlers catch it."""
    assert issubclass(RouteConflict, ValueError)
