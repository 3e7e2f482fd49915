"""Axeom as an ASGI 3 application: the same app on uvicorn, hypercorn,
granian, daphne, or mounted inside FastAPI and Starlette.

``Axeom.__call__`` delegates here, so ``uvicorn app:app`` serves an app as
written. The handshake and the HTTP routes go through the engine
(``app.handle``); an accepted socket runs the same actor as the native
runtime (``ws/_actor.py``), under a ``Connection`` that speaks ASGI
messages (``_connection.py``). The server owns framing, compression, pings
and the transport; the README has a table of what each server decides.
"""

from ._connection import ASGIConnection
from ._redis import use_redis
from ._serve import MAX_BODY_SIZE, serve_asgi

__all__ = ["MAX_BODY_SIZE", "ASGIConnection", "serve_asgi", "use_redis"]
