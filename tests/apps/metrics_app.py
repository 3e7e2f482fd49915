"""App for the metrics and status tests: routes whose traffic the tests count.

``/echo``: echoes; ``/boom``: its message handler raises (close 1011);
``/room/:topic``: subscribed to its topic, publishes what it receives
(``pid`` answers its process id instead), counted by the app's gauge
``app_room_sockets`` (``livesum``); ``/close/:code``: closes with
that code on its first message; ``/block``: its message handler blocks the
worker's loop for as many seconds as the message says. Every message handled increments the
app-defined counter ``app_messages_total`` (prometheus_client, in the
handler: what an application's own metric looks like).
"""

import os
import time

from prometheus_client import Counter, Gauge

from axeom import Axeom
from axeom.ws import ws_plugin

APP_MESSAGES = Counter("app_messages", "Messages the app's handlers saw.")
# A gauge of live processes only: an exited worker's sockets leave the sum.
ROOM_SOCKETS = Gauge("app_room_sockets", "Sockets in a room.", multiprocess_mode="livesum")

app = Axeom().use(ws_plugin())


def echo(ws, msg):
    APP_MESSAGES.inc()
    ws.send(msg)


def boom(ws, msg):
    APP_MESSAGES.inc()
    raise RuntimeError("boom")


def join(ws):
    ROOM_SOCKETS.inc()
    ws.subscribe(ws.params["topic"])


def leave(ws, code, reason):
    ROOM_SOCKETS.dec()


def room(ws, msg):
    APP_MESSAGES.inc()
    if msg == "pid":
        ws.send(f"pid {os.getpid()}")
    else:
        ws.publish(ws.params["topic"], msg)


def close_with(ws, msg):
    APP_MESSAGES.inc()
    ws.close(int(ws.params["code"]), "asked")


def block(ws, msg):
    time.sleep(float(msg))  # holds the worker's loop: its heartbeats stop


app.ws("/echo", message=echo)
app.ws("/boom", message=boom)
app.ws("/room/:topic", open=join, message=room, close=leave)
app.ws("/close/:code", message=close_with)
app.ws("/block", message=block)
