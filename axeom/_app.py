"""The ``Axeom`` application: routes, plugins, hooks and the request lifecycle.

``await app.handle(request)`` is the whole engine: a request in (its head,
and the body an HTTP route may read), a response out. For a WebSocket route
the response is a ``101`` whose ``upgrade`` carries the handlers and the
socket's data; the adapter that called ``handle`` performs the upgrade.
Nothing here imports an event loop or touches a socket, so every rule is
testable with plain calls.

Lifecycle of one request (hooks run in registration order)::

    on_before_match -> route match -> route checks -> on_request
      -> derive -> on_before_handle -> handler -> on_after_handle
      -> on_response (always, also after an error)

A hook that returns something other than ``None`` ends the request with that
as the response; raising ``HTTPError`` ends it with that status. Other
exceptions pass through ``on_error`` and default to a 500 (logged).

Lifespan: ``on_start`` functions run once per process that runs application
code, before it serves; ``on_stop`` functions once it has drained. The
engine only awaits what they return (``run_on_start``, ``run_on_stop``);
each process awaits those on its own loop.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._call import call_maybe_async
from ._context import Context
from ._importer import describe_error
from ._loops import wrong_loop_hint
from ._messages import Request, Response, to_message
from ._router import MethodMismatch, Router
from .errors import HTTPError, MethodNotAllowed, NotFound
from .pubsub import Published, PubSub, Sent

if TYPE_CHECKING:
    from .ws._plugin import WSRegistrar

__all__ = ["Axeom", "Endpoint", "Group", "OnStartError"]

logger = logging.getLogger("axeom.engine")

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[..., Any]


class OnStartError(Exception):
    """An ``on_start`` function raised: this process must not serve.

    ``str(error)`` is one line naming the function, what it raised and the
    app's line that raised it; the original exception is ``error.error``
    (and ``__cause__``), for a traceback at debug level.
    """

    def __init__(self, hook: Hook, error: BaseException) -> None:
        super().__init__(hook, error)
        self.hook = hook
        self.error = error

    def __str__(self) -> str:
        name = getattr(self.hook, "__qualname__", None) or repr(self.hook)
        return f"on_start function {name} failed: {describe_error(self.error)}"


class Endpoint(Protocol):
    """What a route points at. ``check`` runs right after matching (cheap
    protocol checks, before any user hook); ``handle`` produces the response."""

    def check(self, ctx: Context) -> None: ...

    async def handle(self, ctx: Context) -> Response: ...


class _Scope:
    """Hooks that apply to the routes of one group (and its sub-groups)."""

    __slots__ = ("derive", "on_after_handle", "on_before_handle", "parent")

    def __init__(self, parent: _Scope | None = None) -> None:
        self.parent = parent
        self.derive: list[Hook] = []
        self.on_before_handle: list[Hook] = []
        self.on_after_handle: list[Hook] = []

    def chain(self) -> list[_Scope]:
        """Outermost scope first, so app-wide hooks run before group hooks."""
        scopes: list[_Scope] = []
        scope: _Scope | None = self
        while scope is not None:
            scopes.append(scope)
            scope = scope.parent
        scopes.reverse()
        return scopes


@dataclass(slots=True)
class _Route:
    method: str
    pattern: str
    endpoint: Endpoint
    scope: _Scope


class _HTTPEndpoint:
    """A plain HTTP route: the handler's return value becomes the response."""

    def __init__(self, handler: Hook) -> None:
        self.handler = handler

    def check(self, ctx: Context) -> None:
        return None

    async def handle(self, ctx: Context) -> Response:
        return to_response(await call_maybe_async(self.handler, (ctx,)))


def _debug_default() -> bool:
    """Debug mode unless told otherwise: ``AXEOM_DEBUG`` or ``python -X dev``."""
    flag = os.environ.get("AXEOM_DEBUG", "").strip().lower()
    return flag in ("1", "true", "yes") or bool(sys.flags.dev_mode)


def to_response(value: Any) -> Response:
    """Turn what a hook or handler returned into a ``Response``."""
    if isinstance(value, Response):
        return value
    if isinstance(value, str):
        return Response.text(value)
    if isinstance(value, bytes | bytearray):
        return Response(200, [("content-type", "application/octet-stream")], bytes(value))
    if isinstance(value, dict | list):
        return Response.json(value)
    if value is None:
        return Response(204)
    raise TypeError(f"cannot turn {type(value).__name__} into a response")


class _Registrar:
    """Route registration shared by the app and its groups."""

    _app: Axeom
    _prefix: str
    _scope: _Scope

    def route(self, method: str, path: str, handler: Hook | None = None) -> Any:
        """Register an HTTP handler; usable as ``@app.route("GET", "/x")``."""

        def register(fn: F) -> F:
            self._app._add_route(
                method.upper(), self._prefix + path, _HTTPEndpoint(fn), self._scope
            )
            return fn

        return register if handler is None else register(handler)

    def get(self, path: str, handler: Hook | None = None) -> Any:
        """Register a GET handler (health checks, metrics, small APIs)."""
        return self.route("GET", path, handler)

    def add_endpoint(self, method: str, path: str, endpoint: Endpoint) -> None:
        """Register a prepared endpoint (plugins use this)."""
        self._app._add_route(method, self._prefix + path, endpoint, self._scope)

    @property
    def ws(self) -> WSRegistrar:
        """``ws(path, handlers, **options)``: added by ``ws_plugin()``."""
        plugin = self._app.extensions.get("ws")
        if plugin is None:
            raise AttributeError("app.ws needs the WebSocket plugin: Axeom().use(ws_plugin())")
        return plugin.registrar(self)

    def group(self, prefix: str, build: Callable[[Group], Any]) -> Any:
        """Register routes under ``prefix``; hooks added to the group apply only to them."""
        build(Group(self._app, self._prefix + prefix.rstrip("/"), _Scope(self._scope)))
        return self

    def derive(self, fn: F) -> F:
        """Run ``fn(ctx)`` during the handshake; the dict it returns is merged into
        ``ctx.data`` (``ws.data`` on a WebSocket route)."""
        self._scope.derive.append(fn)
        return fn

    def on_before_handle(self, fn: F) -> F:
        """Run after ``derive``, before the handler; return a response to reject."""
        self._scope.on_before_handle.append(fn)
        return fn

    def on_after_handle(self, fn: F) -> F:
        """Run as ``fn(ctx, response)`` after the handler; return a response to replace it."""
        self._scope.on_after_handle.append(fn)
        return fn


class Group(_Registrar):
    """Routes under a common prefix, with hooks of their own."""

    def __init__(self, app: Axeom, prefix: str, scope: _Scope) -> None:
        self._app = app
        self._prefix = prefix
        self._scope = scope


class Axeom(_Registrar):
    """A WebSocket (and small HTTP) application.

    >>> app = Axeom().use(ws_plugin())
    >>> app.ws("/echo", message=lambda ws, msg: ws.send(msg))

    ``debug``: development checks that cost time per message, such as
    ``ws.send(obj)`` checked against the route's ``send`` type. ``None``
    (the default) reads the ``AXEOM_DEBUG`` environment variable (``1``,
    ``true`` or ``yes``) and Python's development mode (``python -X dev``).
    """

    def __init__(self, *, debug: bool | None = None) -> None:
        self.debug = _debug_default() if debug is None else debug
        # Messages of typed routes that failed validation in this process
        # (``axeom status`` sums them over the workers).
        self.invalid_messages = 0
        self._app = self
        self._prefix = ""
        self._scope = _Scope()
        self._router: Router[_Route] = Router()
        self._routes: list[_Route] = []
        self.extensions: dict[str, Any] = {}
        self.decorations: dict[str, Any] = {}
        self._before_match: list[Hook] = []
        self._on_request: list[Hook] = []
        self._on_error: list[Hook] = []
        self._on_response: list[Hook] = []
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        # True once run_on_start has begun in this process (an ASGI server
        # that sends no lifespan events makes the adapter start it itself).
        self.started = False
        self.pubsub = PubSub()
        self._mounted: list[Axeom] = []

    # -- composition ---------------------------------------------------------

    def use(self, plugin: Callable[[Axeom], Any] | Axeom) -> Axeom:
        """Apply a plugin (a callable taking the app) or mount another app's routes and hooks."""
        if isinstance(plugin, Axeom):
            self._mount(plugin)
        else:
            plugin(self)
        return self

    def decorate(self, **values: Any) -> Axeom:
        """Make values (a database pool, a settings object) readable as ``ctx.name``
        in hooks and ``ws.name`` in socket handlers. Not sent across processes.

        Read at every access, so a call from an ``on_start`` function (after
        the routes were built, once per process) reaches every route, those of
        mounted apps included (they share the decorations of the app they
        are mounted in)."""
        self.decorations.update(values)
        return self

    def _mount(self, other: Axeom) -> None:
        for name, ext in other.extensions.items():
            self.extensions.setdefault(name, ext)
        self.decorations.update(other.decorations)
        other._share_decorations(self.decorations)
        self._before_match += other._before_match
        self._on_request += other._on_request
        self._on_error += other._on_error
        self._on_response += other._on_response
        self._on_start += other._on_start
        self._on_stop += other._on_stop
        other._scope.parent = self._scope
        for route in other._routes:
            self._add_route(route.method, route.pattern, route.endpoint, route.scope)
        self._mounted.append(other)
        other._share_pubsub(self.pubsub)

    def _share_decorations(self, decorations: dict[str, Any]) -> None:
        """One decorations dict per server: ``decorate`` on a mounted app (in
        its own ``on_start``, say) must reach the sockets and contexts, which
        read the decorations of the app that serves them."""
        self.decorations = decorations
        for app in self._mounted:
            app._share_decorations(decorations)

    def _share_pubsub(self, pubsub: PubSub) -> None:
        """One pub/sub per server: a mounted app (and what was mounted in it)
        publishes, sends and counts through the app it is mounted in."""
        self.pubsub = pubsub
        for app in self._mounted:
            app._share_pubsub(pubsub)

    def _add_route(self, method: str, pattern: str, endpoint: Endpoint, scope: _Scope) -> None:
        route = _Route(method, pattern or "/", endpoint, scope)
        self._router.add(method, route.pattern, route)
        self._routes.append(route)

    @property
    def routes(self) -> list[tuple[str, str, Endpoint]]:
        """(method, pattern, endpoint) of every route, in registration order."""
        return [(r.method, r.pattern, r.endpoint) for r in self._routes]

    # -- messages to sockets --------------------------------------------------

    def publish(self, topic: str, data: str | bytes | dict[str, Any] | list[Any]) -> Published:
        """Send ``data`` to every socket subscribed to ``topic``, in every worker
        (and on every node with a Redis bridge). At most once, in publish order
        per publisher. Returns how many sockets of this process got it; awaited
        (``await app.publish(...)``), it first waits while the link to the
        other workers is congested (flow control)."""
        return self.pubsub.publish(topic, to_message(data))

    def send(self, socket_id: str, data: str | bytes | dict[str, Any] | list[Any]) -> Sent:
        """Send ``data`` to the socket with id ``socket_id``, wherever it lives.
        True if the socket is in this process and the message was queued;
        awaitable like ``publish``."""
        return self.pubsub.send(socket_id, to_message(data))

    def subscriber_count(self, topic: str) -> int:
        """Sockets subscribed to ``topic`` across the deployment.

        Eventually consistent: exact for this process, a fraction of a second
        behind for the other workers and nodes.
        """
        return self.pubsub.subscriber_count(topic)

    # -- app-wide hooks ------------------------------------------------------

    def on_before_match(self, fn: F) -> F:
        """Run before routing; may rewrite ``ctx.path`` or return a response."""
        self._before_match.append(fn)
        return fn

    def on_request(self, fn: F) -> F:
        """Run after routing (``ctx.route`` and ``ctx.params`` are set)."""
        self._on_request.append(fn)
        return fn

    def on_error(self, fn: F) -> F:
        """Run as ``fn(ctx, error)`` when anything raised; return a response to use it."""
        self._on_error.append(fn)
        return fn

    def on_response(self, fn: F) -> F:
        """Run as ``fn(ctx, response)`` on every response, errors included; may replace it."""
        self._on_response.append(fn)
        return fn

    # -- lifespan ------------------------------------------------------------

    def on_start(self, fn: F) -> F:
        """Run ``fn()`` (plain or coroutine) once in each process that runs
        application code, on its loop, before it serves: open a pool there and
        ``app.decorate(db=pool)``. Several run in registration order; one that
        raises stops the server (no restart) and the later ones do not run."""
        self._on_start.append(fn)
        return fn

    def on_stop(self, fn: F) -> F:
        """Run ``fn()`` (plain or coroutine) once in each such process after it
        drained (its sockets' ``close`` handlers ran), also on SIGTERM and
        Ctrl-C. Several run in registration order, as Starlette and Litestar
        do; one that raises is logged and the next still runs. Not run when
        an ``on_start`` function failed."""
        self._on_stop.append(fn)
        return fn

    async def run_on_start(self) -> None:
        """Await every ``on_start`` function in order, on the caller's loop.

        Raises:
            OnStartError: for the first one that raised; the rest do not run.
        """
        self.started = True
        for fn in self._on_start:
            try:
                await call_maybe_async(fn, ())
            except Exception as exc:
                raise OnStartError(fn, exc) from exc

    async def run_on_stop(self) -> None:
        """Await every ``on_stop`` function in order; a failure is logged and
        does not stop the others (a process that is stopping has nothing
        better to do with it)."""
        for fn in self._on_stop:
            try:
                await call_maybe_async(fn, ())
            except Exception as exc:
                hint = wrong_loop_hint(exc)
                logger.error(
                    "on_stop function %s raised%s",
                    getattr(fn, "__qualname__", fn),
                    f": {hint}" if hint else "",
                    exc_info=exc,
                )

    @asynccontextmanager
    async def lifespan(self, _parent: object = None) -> AsyncIterator[None]:
        """``on_start`` on entry, ``on_stop`` on exit, on the caller's loop.

        For an app mounted in another ASGI app, which does not pass its
        lifespan events on to mounted apps:
        ``FastAPI(lifespan=axeom_app.lifespan)`` (the parent app is accepted
        and ignored, as Starlette's ``lifespan`` argument passes it).
        """
        await self.run_on_start()
        try:
            yield
        finally:
            await self.run_on_stop()

    # -- AsyncAPI ------------------------------------------------------------

    def asyncapi(self, **info: Any) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of the app's WebSocket routes, as a dict.

        ``info``: ``title``, ``version``, ``description``, ``host``
        (``HOST:PORT`` clients dial, default ``127.0.0.1:8000``) and
        ``protocol`` (``ws`` or ``wss``); see ``axeom.asyncapi``.
        """
        from .asyncapi import asyncapi_document

        return asyncapi_document(self, **info)

    def asyncapi_route(self, path: str = "/asyncapi.json", **info: Any) -> Axeom:
        """Serve the AsyncAPI document as JSON on ``GET path``.

        Built at each request (routes registered later are in it), with the
        request's ``Host`` header as the server's host: the document names
        the address its reader reached. ``info`` as for ``asyncapi`` (a
        ``host`` given there wins over the header).
        """

        def document(ctx: Context) -> Response:
            given = {"host": ctx.headers.get("host") or None, **info}
            return Response.json(self.asyncapi(**{k: v for k, v in given.items() if v}))

        self.get(path, document)
        return self

    # -- ASGI ----------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI 3 entry: ``uvicorn app:app``, ``Mount("/rt", app=app)`` (see ``axeom.asgi``).
        Imported on call, so that the engine itself loads no event loop."""
        from .asgi import serve_asgi

        await serve_asgi(self, scope, receive, send)

    # -- the engine ----------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer one request: an HTTP response, or a 101 carrying an upgrade."""
        ctx = Context(self, request)
        try:
            response = await self._lifecycle(ctx)
        except Exception as exc:
            response = await self._error_response(ctx, exc)
        if ctx.response_headers:
            # A copy: a hook may have returned a shared (module-level) Response.
            response = replace(response, headers=[*response.headers, *ctx.response_headers])
        for hook in self._on_response:
            try:
                replaced = await call_maybe_async(hook, (ctx, response))
                if replaced is not None:
                    response = to_response(replaced)
            except Exception:
                logger.exception("on_response hook %r failed; response kept", hook)
        return response

    async def _lifecycle(self, ctx: Context) -> Response:
        for hook in self._before_match:
            result = await call_maybe_async(hook, (ctx,))
            if result is not None:
                return to_response(result)
        route = self._match(ctx)
        route.endpoint.check(ctx)
        for hook in self._on_request:
            result = await call_maybe_async(hook, (ctx,))
            if result is not None:
                return to_response(result)
        scopes = route.scope.chain()
        for scope in scopes:
            for fn in scope.derive:
                self._merge_derived(ctx, fn, await call_maybe_async(fn, (ctx,)))
        for scope in scopes:
            for hook in scope.on_before_handle:
                result = await call_maybe_async(hook, (ctx,))
                if result is not None:
                    return to_response(result)
        response = await route.endpoint.handle(ctx)
        for scope in scopes:
            for hook in scope.on_after_handle:
                result = await call_maybe_async(hook, (ctx, response))
                if result is not None:
                    response = to_response(result)
        return response

    def _match(self, ctx: Context) -> _Route:
        found = self._router.match(ctx.request.method, ctx.path)
        if found is None:
            raise NotFound(f"no route for {ctx.path}")
        if isinstance(found, MethodMismatch):
            allow = ", ".join(found.allowed)
            raise MethodNotAllowed(
                f"method {ctx.request.method} not allowed here (allowed: {allow})",
                headers=[("allow", allow)],
            )
        ctx.route = found.pattern
        ctx.params = found.params
        return found.endpoint

    @staticmethod
    def _merge_derived(ctx: Context, fn: Hook, derived: Any) -> None:
        if derived is None:
            return
        if not isinstance(derived, dict):
            raise TypeError(
                f"derive function {getattr(fn, '__name__', fn)!r} must return a dict or None, "
                f"got {type(derived).__name__}"
            )
        ctx.data.update(derived)

    async def _error_response(self, ctx: Context, exc: Exception) -> Response:
        for hook in self._on_error:
            try:
                result = await call_maybe_async(hook, (ctx, exc))
                if result is not None:
                    return to_response(result)
            except Exception:
                logger.exception("on_error hook %r failed", hook)
        if isinstance(exc, HTTPError):
            if exc.json is not None:
                response = Response.json(exc.json, exc.status)
                response.headers += exc.headers
                return response
            return Response.error(exc.status, exc.reason, exc.headers)
        hint = wrong_loop_hint(exc)
        logger.error(
            "unhandled error answering %s %s%s",
            ctx.request.method,
            ctx.request.target,
            f": {hint}" if hint else "",
            exc_info=exc,
        )
        return Response.error(500, "Internal Server Error")
