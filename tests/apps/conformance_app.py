"""App for the RFC 6455 / RFC 7692 conformance tests: echo, with a plain-function
handler, with a coroutine handler, and with permessage-deflate."""

from axeom import Axeom
from axeom.ws import ws_plugin

# The default, named: the 1009 cases send one byte more than this.
MAX_MESSAGE_SIZE = 2**20

# No keepalive pings: every frame the server sends is an answer to the case.
app = Axeom().use(ws_plugin(max_message_size=MAX_MESSAGE_SIZE, ping_interval=None))


def echo(ws, msg):
    ws.send(msg)


async def echo_coroutine(ws, msg):
    await ws.send(msg)


app.ws("/echo", message=echo)
app.ws("/coroutine", message=echo_coroutine)
app.ws("/deflate", message=echo, compression=True)
