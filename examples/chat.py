"""A chat room per path parameter; the user's name comes from `derive`.

    axeom run examples/chat.py:app
    # then connect two clients to ws://127.0.0.1:8000/chat/lobby with header x-user

Everyone in a room sees every message posted to it.
"""

from collections import defaultdict

from axeom import Axeom, Unauthorized
from axeom.ws import ws_plugin

app = Axeom().use(ws_plugin())

rooms: dict[str, set] = defaultdict(set)


@app.derive
async def who(ctx):
    """Handshake phase: runs before the upgrade; its result lands in ws.data."""
    user = ctx.headers.get("x-user") or ctx.query.get("user")
    if not user:
        raise Unauthorized("send an x-user header or ?user= to join")
    return {"user": user}


@app.ws("/chat/:room")
class Chat:
    def open(self, ws):
        room = ws.params["room"]
        rooms[room].add(ws)
        self.broadcast(room, f"* {ws.data['user']} joined {room}")

    def message(self, ws, msg):
        self.broadcast(ws.params["room"], f"{ws.data['user']}: {msg}")

    def close(self, ws, code, reason):
        room = ws.params["room"]
        rooms[room].discard(ws)
        self.broadcast(room, f"* {ws.data['user']} left")

    @staticmethod
    def broadcast(room, text):
        for member in rooms[room]:
            member.send(text)
