"""App for the pub/sub tests: every socket of /sub/:topic is subscribed to
its topic and obeys small commands; command replies start with "R:".

``make_app()`` builds a fresh one (in-process tests get their own, so no
state crosses from one test to the next); ``app`` is the one a server
process imports."""

import os
import time

from axeom import Axeom
from axeom.ws import ws_plugin


def make_app() -> Axeom:
    app = Axeom().use(ws_plugin())

    def on_open(ws):
        ws.subscribe(ws.params["topic"])

    def on_message(ws, msg):
        topic = ws.params["topic"]
        command, _, arg = msg.partition(":")
        if command == "pid":
            ws.send(f"R:{os.getpid()}")
        elif command == "id":
            ws.send(f"R:{ws.id}")
        elif command == "pub":
            ws.publish(topic, arg)
        elif command == "app-pub":
            app.publish(topic, arg)
        elif command == "unsub":
            ws.unsubscribe(topic)
            ws.send(f"R:unsubscribed {ws.is_subscribed(topic)}")
        elif command == "count":
            ws.send(f"R:{app.subscriber_count(topic)}")
        elif command == "send":
            target, _, text = arg.partition(":")
            app.send(target, text)

    app.ws("/sub/:topic", open=on_open, message=on_message)
    app.ws("/echo-self/:topic", open=on_open, message=on_message, publish_to_self=True)

    def on_publisher_message(ws, msg):
        ws.publish(ws.params["topic"], msg)

    app.ws("/pub/:topic", message=on_publisher_message)

    async def on_join_open(ws):
        subscribed = ws.subscribe(ws.params["topic"])
        if ws.query.get("await") == "1":
            await subscribed
        ws.send(f"ready {os.getpid()}")
        await ws.drained()
        # Busy right after: this worker's link to the hub sends nothing meanwhile,
        # so only an acknowledged subscription is sure to be in effect elsewhere.
        time.sleep(0.2)

    def on_announce_open(ws):
        ws.publish(ws.params["topic"], "joined")
        ws.send(f"announced {os.getpid()}")

    app.ws("/joins/:topic", open=on_join_open)
    app.ws("/announce/:topic", open=on_announce_open)
    return app


app = make_app()
