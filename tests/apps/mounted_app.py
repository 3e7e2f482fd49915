"""A sub-app mounted with ``use``: its handlers publish and count through the
sub-app object itself, the way a module of a bigger app would."""

from axeom import Axeom
from axeom.ws import ws_plugin

rooms = Axeom().use(ws_plugin())


async def on_open(ws):
    await ws.subscribe(ws.params["room"])
    ws.send("ready")


async def on_message(ws, msg):
    room = ws.params["room"]
    if msg == "count":
        ws.send(f"count {rooms.subscriber_count(room)}")
    elif msg.startswith("to:"):
        target, _, text = msg[3:].partition(":")
        await rooms.send(target, text)
    elif msg == "id":
        ws.send(f"id {ws.id}")
    else:
        delivered = await rooms.publish(room, msg)
        ws.send(f"published {delivered}")


rooms.ws("/rooms/:room", open=on_open, message=on_message)

app = Axeom().use(ws_plugin()).use(rooms)
