"""The trio runtime: sockets, the per-socket task loop, the in-process server.

Everything that awaits trio lives here; the engine and the socket actor
above it stay free of any event loop.
"""
