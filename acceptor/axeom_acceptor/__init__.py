"""The acceptor process of ``axeom run --workers N``: accepts connections on
the listening socket the supervisor passes down, reads request heads, runs
``app.handle``, answers rejections, and hands accepted sockets to workers."""

from ._acceptor import Acceptor, AcceptorSettings

__all__ = ["Acceptor", "AcceptorSettings"]
