"""A FastAPI app with an HTTP API, and Axeom's chat routes mounted under /rt.

    uvicorn fastapi_mount:app            (from this folder; or --app-dir examples)

Chat: ws://127.0.0.1:8000/rt/chat/lobby with an ``x-user`` header (or ?user=ann).
API:  POST /api/rooms/lobby/announce {"text": "..."} -> every socket in the room
      GET  /api/rooms/lobby                          -> {"room": ..., "members": N}

The API and the sockets share one process, so an HTTP handler reaches the
sockets through Axeom's pub/sub (``chat.publish``): within this process, or
across processes and machines once the app has a Redis bridge.
"""

from fastapi import FastAPI
from pydantic import BaseModel

from axeom import Axeom, Unauthorized
from axeom.ws import ws_plugin

chat = Axeom().use(ws_plugin())


@chat.derive
async def who(ctx):
    """Handshake phase: runs before the upgrade; its result lands in ws.data."""
    user = ctx.headers.get("x-user") or ctx.query.get("user")
    if not user:
        raise Unauthorized("send an x-user header or ?user= to join")  # 401, never a 101
    return {"user": user}


@chat.ws("/chat/:room", publish_to_self=True)
class Room:
    def open(self, ws):
        room = ws.params["room"]
        ws.subscribe(room)
        ws.publish(room, f"* {ws.data['user']} joined {room}")

    def message(self, ws, msg):
        ws.publish(ws.params["room"], f"{ws.data['user']}: {msg}")

    def close(self, ws, code, reason):
        ws.publish(ws.params["room"], f"* {ws.data['user']} left")


class Announcement(BaseModel):
    text: str


# The parent passes its startup and shutdown on to the mounted app's
# on_start / on_stop functions (a mounted app gets no lifespan events of its own).
app = FastAPI(title="chat API", lifespan=chat.lifespan)


@app.post("/api/rooms/{room}/announce")
async def announce(room: str, announcement: Announcement) -> dict[str, int]:
    """Every socket in ``room`` gets the text; returns how many here did."""
    delivered = await chat.publish(room, f"[announcement] {announcement.text}")
    return {"delivered": delivered}


@app.get("/api/rooms/{room}")
async def members(room: str) -> dict[str, object]:
    return {"room": room, "members": chat.subscriber_count(room)}


app.mount("/rt", chat)
