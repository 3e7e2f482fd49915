"""``ws_plugin()``: adds ``app.ws(path, handlers, **options)`` to an app."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._handlers import HANDLER_NAMES, Handlers, did_you_mean
from ._options import WSOptions
from ._route import WSRoute
from ._typed import TYPING_OPTIONS, RouteTyping

if TYPE_CHECKING:
    from .._app import Axeom, _Registrar

__all__ = ["WSPlugin", "WSRegistrar", "ws_plugin"]


def ws_plugin(**defaults: Any) -> WSPlugin:
    """The WebSocket plugin; ``defaults`` are ``WSOptions`` for every route.

    >>> app = Axeom().use(ws_plugin(max_message_size=64 * 1024))
    """
    return WSPlugin(WSOptions().with_overrides(defaults))


class WSPlugin:
    """Holds the plugin-wide defaults; installed as ``app.extensions["ws"]``."""

    def __init__(self, defaults: WSOptions) -> None:
        self.defaults = defaults

    def __call__(self, app: Axeom) -> None:
        app.extensions["ws"] = self

    def registrar(self, target: _Registrar) -> WSRegistrar:
        return WSRegistrar(self, target)


class WSRegistrar:
    """The callable behind ``app.ws``.

    Three spellings register the same thing::

        app.ws("/a", {"open": on_open, "message": on_message}, idle_timeout=30)
        app.ws("/a", open=on_open, message=on_message, idle_timeout=30)

        @app.ws("/a", idle_timeout=30)
        class Room:                       # one instance per socket
            async def message(self, ws, msg): ...

    Typed routes (``_typed``): ``query=``, ``params=``, ``headers=``,
    ``body=``, ``send=``, ``events=``, ``discriminator=``, ``on_invalid=``,
    ``binary=``. With one of them and no handlers, ``app.ws`` registers the
    route at once and returns it: ``route.on(Type)`` adds an event handler,
    and the route used as a decorator takes a handler class or function.
    """

    def __init__(self, plugin: WSPlugin, target: _Registrar) -> None:
        self._plugin = plugin
        self._target = target

    def __call__(
        self,
        path: str,
        handlers: Mapping[str, Callable[..., Any]] | type | None = None,
        /,
        **kwargs: Any,
    ) -> Any:
        given = {name: kwargs.pop(name) for name in HANDLER_NAMES if name in kwargs}
        typed = {name: kwargs.pop(name) for name in TYPING_OPTIONS if name in kwargs}
        _check_keywords(kwargs)
        options = self._plugin.defaults.with_overrides(kwargs)
        typing = RouteTyping(typed) if typed else None
        if handlers is None and not given:
            if typing is not None:
                return self._register(path, Handlers(), options, typing)
            return lambda target: self._decorated(path, target, options)
        if handlers is not None and given:
            raise TypeError(
                "give handlers either as a dict/class or as keyword arguments, not both"
            )
        if isinstance(handlers, type):
            resolved = Handlers.from_class(handlers, events=bool(typing and typing.events))
        elif isinstance(handlers, Mapping):
            resolved = Handlers.from_mapping(handlers)
        elif handlers is not None:
            # app.ws("/a", on_message) read as "this function handles it": say how
            # to spell it instead of "'function' object is not iterable".
            raise TypeError(
                f"app.ws takes a dict of handlers or a handler class after the path, "
                f"not {type(handlers).__name__} {handlers!r}; for one handler, "
                f"app.ws(path, message=f)"
            )
        else:
            resolved = Handlers.from_mapping(given)
        return self._register(path, resolved, options, typing)

    def _decorated(self, path: str, target: Any, options: WSOptions) -> Any:
        if isinstance(target, type):
            self._register(path, Handlers.from_class(target), options)
        elif callable(target):
            self._register(path, Handlers.from_mapping({"message": target}), options)
        else:
            raise TypeError(f"@app.ws decorates a class or a message function, not {target!r}")
        return target

    def _register(
        self, path: str, handlers: Handlers, options: WSOptions, typing: RouteTyping | None = None
    ) -> WSRoute:
        route = WSRoute(self._target._prefix + path, handlers, options, typing)
        self._target.add_endpoint("GET", path, route)
        return route


def _check_keywords(keywords: Mapping[str, Any]) -> None:
    """Refuse a keyword that is neither a handler nor an option, naming the nearest of both.

    ``app.ws("/a", messages=f)`` must read as the misspelled handler it is, not as an
    unknown option with a list of options that leaves out the handler names.
    """
    unknown = sorted(set(keywords) - WSOptions.names())
    if not unknown:
        return
    options = sorted(WSOptions.names() | TYPING_OPTIONS)
    names = [*HANDLER_NAMES, *options]
    raise TypeError(
        f"app.ws: unknown handler or option {unknown[0]!r}{did_you_mean(unknown[0], names)}; "
        f"handlers: {', '.join(HANDLER_NAMES)}; options: {', '.join(options)}"
    )
