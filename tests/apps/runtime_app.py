"""App for the process-tree tests: reports its pid, records close handlers,
and can block its worker's event loop on request."""

import os
import time

from axeom import Axeom
from axeom.ws import ws_plugin

RECORD = os.environ.get("AXEOM_TEST_RECORD")

app = Axeom().use(ws_plugin())


def on_message(ws, msg):
    if msg == "pid":
        ws.send(str(os.getpid()))
    elif msg == "block":
        time.sleep(3600)  # a handler that never yields: hangs the whole worker
    elif msg == "crash":
        os._exit(17)
    else:
        ws.send(f"Echo: {msg}")


def on_close(ws, code, reason):
    if RECORD:
        with open(RECORD, "a") as record:
            record.write(f"{os.getpid()} {ws.id} {code}\n")


app.ws("/chat", message=on_message, close=on_close)
app.ws("/z", message=lambda ws, msg: ws.send(msg * 2), compression=True)
