"""WebSockets for Axeom: the plugin, the socket object and its options."""

from ._handlers import Handlers
from ._options import WSOptions
from ._plugin import WSPlugin, ws_plugin
from ._route import WSRoute
from ._socket import Closing, SendResult, SendStatus, WebSocket, socket_id_prefix
from ._typed import Event, RouteTyping, event_method
from ._upgrade import Upgrade

__all__ = [
    "Closing",
    "Event",
    "Handlers",
    "RouteTyping",
    "SendResult",
    "SendStatus",
    "Upgrade",
    "WSOptions",
    "WSPlugin",
    "WSRoute",
    "WebSocket",
    "event_method",
    "socket_id_prefix",
    "ws_plugin",
]
