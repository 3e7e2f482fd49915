"""Hypercorn configuration for the behaviour suite (``-c python:tests.apps.hypercorn_pings``):
its ``--websocket-ping-interval`` takes whole seconds, its configuration a float."""

# The keepalive route's ping_interval (behaviour_app.PING_INTERVAL), server-wide.
websocket_ping_interval = 0.1
