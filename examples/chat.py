"""A chat room per path parameter; the user's name comes from `derive`.

    axeom run examples/chat.py:app                      # one process
    axeom run examples/chat.py:app --workers 4          # rooms span the workers
    axeom run examples/chat.py:app --workers 4 --port 8001 --pubsub redis://127.0.0.1:6379/0

Connect to ws://127.0.0.1:8000/chat/lobby with an `x-user` header (or
`?user=ann`). Everyone in a room sees every message posted to it, whichever
worker or node their socket lives on: the room is a pub/sub topic.
"""

from axeom import Axeom, Unauthorized
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())


@app.derive
async def who(ctx):
    """Handshake phase: runs before the upgrade; its result lands in ws.data."""
    user = ctx.headers.get("x-user") or ctx.query.get("user")
    if not user:
        raise Unauthorized("send an x-user header or ?user= to join")
    return {"user": user}


@app.ws("/chat/:room", publish_to_self=True)
class Chat:
    def open(self, ws):
        room = ws.params["room"]
        ws.subscribe(room)
        ws.publish(room, f"* {ws.data['user']} joined {room}")

    def message(self, ws, msg):
        ws.publish(ws.params["room"], f"{ws.data['user']}: {msg}")

    def close(self, ws, code, reason):
        ws.publish(ws.params["room"], f"* {ws.data['user']} left")
