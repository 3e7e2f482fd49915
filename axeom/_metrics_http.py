"""The HTTP server of ``/metrics``: ``prometheus_client``'s WSGI app on the
standard library's threaded WSGI server, bounded.

``prometheus_client.start_http_server`` starts a thread per connection and
keeps it for as long as the client keeps the connection open, with no
timeout: on a metrics port reachable from outside (``--host 0.0.0.0``), a
client holding thousands of connections would make thousands of threads in
the supervisor. Here a connection past ``max_connections`` is closed at once,
each one is cut after ``timeout`` seconds of silence, and a client that goes
away mid-request is not reported with a traceback on stderr.
"""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["serve_metrics"]

logger = logging.getLogger("axeom.metrics")


class _ScrapeHandler(WSGIRequestHandler):
    """One scrape: no access line (the library's choice too); ``timeout`` is
    set per server (``StreamRequestHandler`` applies it to the socket)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BoundedServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``slots`` at once."""

    daemon_threads = True  # a scrape in progress does not hold up the exit
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed, no thread for it
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()  # no thread started: its slot is free again
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or went away mid-request: nothing to report
        # beyond a debug line (the standard library prints a traceback).
        logger.debug("metrics: connection from %s ended early", client_address, exc_info=True)


def serve_metrics(
    registry: Any, host: str, port: int, max_connections: int, timeout: float
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` on ``host:port`` from a daemon thread; OSError if
    the port cannot be had. Returns the server (``shutdown``, ``server_close``)
    and its thread."""
    from prometheus_client import make_wsgi_app

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    handler = type("_Handler", (_ScrapeHandler,), {"timeout": timeout})
    server_class = type(
        "_Server",
        (_BoundedServer,),
        {"address_family": family[0], "slots": threading.BoundedSemaphore(max_connections)},
    )
    server: WSGIServer = make_server(
        str(family[4][0]), port, make_wsgi_app(registry), server_class, handler_class=handler
    )
    thread = threading.Thread(target=server.serve_forever, name="axeom-metrics", daemon=True)
    thread.start()
    return server, thread
