"""The trio socket runtime: socket actors on trio, the in-process server, and
the pieces the acceptor and worker processes build on.

Everything that awaits trio lives here; the engine and the socket actor
above it stay free of any event loop. The asyncio runtime
(``axeom.asyncio_runtime``) sits beside this package with the same shape.
"""

from .._http1 import serialize_response
from .._listener import bind_listener
from ._control import (
    SINGLE_PROCESS_COMMANDS,
    SingleProcess,
    handle_request,
    publish_arguments,
    remove_ipc_file,
    serve_control,
)
from ._handshake import (
    Accepted,
    HandshakeCounters,
    HandshakeLimits,
    PendingHead,
    PendingHeads,
    answer_handshake,
    reject,
)
from ._runtime import SocketRuntime, open_socket_runtime
from ._serve import accept_forever, serve, serve_connection, serve_listener
from ._tls import TLSTransport
from ._transport import SocketTransport, StreamTransport

__all__ = [
    "SINGLE_PROCESS_COMMANDS",
    "Accepted",
    "HandshakeCounters",
    "HandshakeLimits",
    "PendingHead",
    "PendingHeads",
    "SingleProcess",
    "SocketRuntime",
    "SocketTransport",
    "StreamTransport",
    "TLSTransport",
    "accept_forever",
    "answer_handshake",
    "bind_listener",
    "handle_request",
    "open_socket_runtime",
    "publish_arguments",
    "reject",
    "remove_ipc_file",
    "serialize_response",
    "serve",
    "serve_connection",
    "serve_control",
    "serve_listener",
]
