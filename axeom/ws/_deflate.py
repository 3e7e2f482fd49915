"""permessage-deflate (RFC 7692): negotiate at the handshake, rebuild anywhere.

Negotiation is a pure function of the client's offer and the server's
settings, so the process that runs the socket can rebuild the exact same
extension from the offer alone (compression state itself cannot move
between processes). Both sides call ``negotiate`` with the same settings.
"""

from __future__ import annotations

from websockets.exceptions import NegotiationError
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.headers import build_extension
from websockets.typing import ExtensionName

from ._handshake import ExtensionOffer

__all__ = ["DeflateOffer", "negotiate", "rebuild"]

DeflateOffer = list[tuple[str, str | None]]

_NAME = ExtensionName("permessage-deflate")

# Same trade-off as the websockets library's defaults: a 4 KiB window and a
# small memLevel keep zlib's per-socket memory modest at little ratio cost.
_FACTORY = ServerPerMessageDeflateFactory(
    server_max_window_bits=12, compress_settings={"memLevel": 5}
)


def negotiate(offers: list[ExtensionOffer]) -> tuple[str, DeflateOffer] | None:
    """Pick the first acceptable permessage-deflate offer.

    Returns the ``Sec-WebSocket-Extensions`` response value and the offer it
    answered (what a worker needs to rebuild the extension), or ``None``.
    """
    for name, params in offers:
        if name != _NAME:
            continue
        try:
            response, _ = _FACTORY.process_request_params(params, [])
        except NegotiationError:
            continue
        return build_extension([(_NAME, response)]), list(params)
    return None


def rebuild(offer: DeflateOffer) -> Extension:
    """The extension object for an offer that ``negotiate`` accepted."""
    _, extension = _FACTORY.process_request_params(offer, [])
    return extension
