"""WebSockets for Axeom: the plugin, the socket object and its options."""

from ._handlers import Handlers
from ._options import WSOptions
from ._plugin import WSPlugin, ws_plugin
from ._route import WSRoute
from ._socket import Closing, SendResult, SendStatus, WebSocket, socket_id_prefix
from ._upgrade import Upgrade

__all__ = [
    "Closing",
    "Handlers",
    "SendResult",
    "SendStatus",
    "Upgrade",
    "WSOptions",
    "WSPlugin",
    "WSRoute",
    "WebSocket",
    "socket_id_prefix",
    "ws_plugin",
]
