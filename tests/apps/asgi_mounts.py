"""The ASGI test app mounted under ``/rt`` by FastAPI and by Starlette, next
to routes of their own."""

from asgi_app import app as axeom_app
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

fastapi_app = FastAPI()


@fastapi_app.get("/api/ping")
def ping() -> dict[str, str]:
    return {"pong": "fastapi"}


fastapi_app.mount("/rt", axeom_app)


def starlette_ping(request):
    return PlainTextResponse("starlette")


starlette_app = Starlette(routes=[Route("/api/ping", starlette_ping), Mount("/rt", app=axeom_app)])
