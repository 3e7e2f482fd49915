"""The AsyncAPI 3.0 document: what it says about each route, that it passes the
official 3.0.0 JSON Schema, and the three ways to get it (``app.asyncapi()``,
``axeom asyncapi``, an HTTP route)."""

from __future__ import annotations

import dataclasses
import json
import sys
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import jsonschema
import msgspec
import pydantic
import pytest
import yaml

from axeom import Axeom
from axeom.asyncapi import asyncapi_document, channel_address, to_yaml
from axeom.testing import TestClient
from axeom.ws import ws_plugin
from tests._processes import run_axeom

SPEC = Path(__file__).resolve().parent / "asyncapi" / "asyncapi-3.0.0.json"


@cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text()))


def assert_valid(document: dict[str, Any]) -> None:
    """``document`` passes the AsyncAPI 3.0.0 JSON Schema (every error listed if not)."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors)


def _untyped_app() -> Axeom:
    app = Axeom().use(ws_plugin())
    app.ws("/chat/:room", message=lambda ws, msg: ws.send(msg), subprotocols=["chat.v2", "chat.v1"])
    app.ws("/files/*", message=lambda ws, msg: None)
    app.ws("/", message=lambda ws, msg: None)
    app.get("/health", lambda ctx: "ok")
    return app


def test_untyped_app_document_is_valid_asyncapi() -> None:
    """Routes without types appear, each a channel with one message of unknown payload."""
    document = _untyped_app().asyncapi(title="Chat", version="2.1.0")
    assert_valid(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {"title": "Chat", "version": "2.1.0"}
    assert document["servers"] == {"default": {"host": "127.0.0.1:8000", "protocol": "ws"}}
    assert sorted(document["channels"]) == ["chat_room", "files_rest", "root"]
    chat = document["channels"]["chat_room"]
    assert chat["address"] == "/chat/{room}"
    assert list(chat["parameters"]) == ["room"]
    assert "payload" not in chat["messages"]["message"]
    assert chat["bindings"]["ws"] == {
        "method": "GET",
        "x-subprotocols": ["chat.v2", "chat.v1"],
        "bindingVersion": "0.1.0",
    }
    assert {op["action"] for op in document["operations"].values()} == {"send", "receive"}


def test_channel_addresses() -> None:
    """``:name`` becomes ``{name}``; a trailing ``*`` becomes ``{rest}``."""
    assert channel_address("/a/:b/c/:d") == ("/a/{b}/c/{d}", ["b", "d"])
    assert channel_address("/files/*") == ("/files/{rest}", ["rest"])
    assert channel_address("/") == ("/", [])


def test_channel_keys_stay_unique() -> None:
    """Two patterns that read alike get two channels, not one overwritten."""
    app = Axeom().use(ws_plugin())
    app.ws("/a/:b", message=lambda ws, msg: None)
    app.ws("/a/b", message=lambda ws, msg: None)
    document = app.asyncapi()
    assert_valid(document)
    assert [c["address"] for c in document["channels"].values()] == ["/a/{b}", "/a/b"]


def test_behaviour_app_document_is_valid() -> None:
    """The behaviour suite's app (every kind of route and option) passes validation."""
    from tests.apps.behaviour_app import make_app

    document = make_app(None).asyncapi()
    assert_valid(document)
    assert "room_topic" in document["channels"]


def test_mounted_routes_and_host_argument() -> None:
    """A mounted app's routes are described; ``host``/``protocol`` name the server."""
    inner = _untyped_app()
    outer = Axeom().use(ws_plugin()).use(inner)
    document = asyncapi_document(outer, host="chat.example:443", protocol="wss")
    assert_valid(document)
    assert document["servers"]["default"] == {"host": "chat.example:443", "protocol": "wss"}
    assert len(document["channels"]) == 3


async def test_asyncapi_route_serves_json_with_the_request_host() -> None:
    """``app.asyncapi_route()``: GET returns the document as application/json,
    its server the host the request named."""
    app = _untyped_app().asyncapi_route("/asyncapi.json", title="Chat")
    async with TestClient(app) as client:
        response = await client.request("GET", "/asyncapi.json", {"host": "api.example:9000"})
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    document = json.loads(response.body)
    assert_valid(document)
    assert document["info"]["title"] == "Chat"
    assert document["servers"]["default"]["host"] == "api.example:9000"


def test_yaml_without_pyyaml_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """YAML output without PyYAML: an ImportError saying what to install."""
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match=r"axeom\[asyncapi\]"):
        to_yaml({"asyncapi": "3.0.0"})


def test_cli_prints_json_and_yaml(tmp_path: Path) -> None:
    """`axeom asyncapi IMPORT` prints JSON; --yaml YAML; -o writes the file."""
    result = run_axeom("asyncapi", "examples/chat.py:app", "--port", "9001")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert_valid(document)
    assert document["servers"]["default"]["host"] == "127.0.0.1:9001"
    result = run_axeom("asyncapi", "examples/chat.py:app", "--yaml", "--port", "9001")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == document
    target = tmp_path / "chat.yaml"
    result = run_axeom("asyncapi", "examples/chat.py:app", "--yaml", "-o", str(target))
    assert result.returncode == 0 and result.stdout == ""
    assert yaml.safe_load(target.read_text())["channels"] == document["channels"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:app", 'Could not import module "no_such_module"'),
        ("tests/apps/broken.py:app", "no_such_dependency_for_axeom_tests"),
        ("examples/chat.py:nope", 'Attribute "nope" not found'),
    ],
)
def test_cli_import_errors_are_one_line(target: str, message: str) -> None:
    """An app that cannot be loaded: one line naming why, exit status 3, no traceback."""
    result = run_axeom("asyncapi", target)
    assert result.returncode == 3
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_unwritable_output_is_one_line(tmp_path: Path) -> None:
    """-o into a missing folder: one line and exit 1, no traceback."""
    result = run_axeom("asyncapi", "examples/chat.py:app", "-o", str(tmp_path / "no" / "x.json"))
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


# -- typed routes, one per schema library ------------------------------------


class StructItem(msgspec.Struct):
    sku: str
    qty: int


class StructOrder(msgspec.Struct, tag="order"):
    items: list[StructItem]


class ModelItem(pydantic.BaseModel):
    sku: str
    qty: int


class ModelOrder(pydantic.BaseModel):
    type: Literal["order"]
    items: list[ModelItem]


@dataclasses.dataclass
class DataItem:
    sku: str
    qty: int


@dataclasses.dataclass
class DataOrder:
    items: list[DataItem]


class DictOrder(TypedDict):
    items: list[str]


SCHEMA_ORDER = {
    "title": "SchemaOrder",
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
    "required": ["items"],
    "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
}


class Parsed:
    """Any object with a ``parse`` method (and, here, a schema of its own)."""

    __name__ = "Parsed"

    def parse(self, value: Any) -> Any:
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object"}


LIBRARIES = {
    "msgspec": (StructOrder, "StructItem"),
    "pydantic": (ModelOrder, "ModelItem"),
    "dataclass": (DataOrder, "DataItem"),
    "typeddict": (DictOrder, None),
    "jsonschema": (SCHEMA_ORDER, "Item"),
    "parser": (Parsed(), None),
}


class Token(pydantic.BaseModel):
    token: str


class Agent(pydantic.BaseModel):
    x_agent: str


class Ping(msgspec.Struct, tag="ping"):
    n: int


class Pong(msgspec.Struct):
    n: int


class Note(pydantic.BaseModel):  # no discriminator field: the envelope adds it
    text: str


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_body_typed_by_each_library(library: str) -> None:
    """``body=`` and ``send=`` of each library: messages whose payloads are that
    library's JSON Schema, nested types hoisted into components, valid AsyncAPI."""
    order, nested = LIBRARIES[library]
    app = Axeom().use(ws_plugin())
    app.ws("/orders", message=lambda ws, msg: None, body=order, send=order, query=Token)
    document = app.asyncapi()
    assert_valid(document)
    channel = document["channels"]["orders"]
    schemas = document["components"]["schemas"]
    [name] = [n for n in channel["messages"] if n != "error"]
    payload = channel["messages"][name]["payload"]
    assert payload["$ref"].startswith("#/components/schemas/")
    assert payload["$ref"].rsplit("/", 1)[1] in schemas
    if nested is not None:
        assert nested in schemas
        assert "$defs" not in json.dumps(schemas)
    assert document["operations"]["orders.receive"]["messages"] == [
        {"$ref": f"#/channels/orders/messages/{name}"}
    ]
    sent = document["operations"]["orders.send"]["messages"]
    assert {"$ref": "#/channels/orders/messages/error"} in sent
    assert channel["bindings"]["ws"]["query"]["properties"]["token"]["type"] == "string"


def test_events_with_class_handlers_and_replies() -> None:
    """Events handled by a class: one operation each; a reply where the
    handler's return annotation names a type; header fields named as headers."""
    app = Axeom().use(ws_plugin())

    @app.ws("/rpc", events={"ping": Ping, "note": Note}, headers=Agent, on_invalid="close")
    class Rpc:
        def on_ping(self, ws: Any, ping: Ping) -> Pong:
            return Pong(ping.n)

        def on_note(self, ws: Any, note: Note) -> None:
            return None

    document = app.asyncapi()
    assert_valid(document)
    operations = document["operations"]
    reply = operations["rpc.receive.ping"]["reply"]
    assert reply["messages"] == [{"$ref": "#/channels/rpc/messages/ping.reply"}]
    assert "reply" not in operations["rpc.receive.note"]
    channel = document["channels"]["rpc"]
    note = channel["messages"]["note"]["payload"]
    assert note["allOf"][1]["properties"]["type"] == {"const": "note"}
    assert "error" not in channel["messages"]  # on_invalid="close" sends nothing
    assert "1007" in channel["description"]
    headers = channel["bindings"]["ws"]["headers"]
    assert list(headers["properties"]) == ["x-agent"] and headers["required"] == ["x-agent"]


def test_schemas_shared_and_clashing_names() -> None:
    """One type used by two routes is one component; another type with the
    same name gets ``Name_2``; a pydantic tagged union keeps its mapping as
    ``x-discriminator`` (AsyncAPI's ``discriminator`` is a string)."""

    class Cat(pydantic.BaseModel):
        kind: Literal["cat"]

    class Dog(pydantic.BaseModel):
        kind: Literal["dog"]

    class Pet(pydantic.BaseModel):
        pet: Annotated[Cat | Dog, pydantic.Field(discriminator="kind")]

    other = {"title": "Pet", "type": "object", "properties": {"legs": {"type": "integer"}}}
    app = Axeom().use(ws_plugin())
    app.ws("/a", message=lambda ws, msg: None, body=Pet)
    app.ws("/b", message=lambda ws, msg: None, body=Pet)
    app.ws("/c", message=lambda ws, msg: None, body=other)
    document = app.asyncapi()
    assert_valid(document)
    schemas = document["components"]["schemas"]
    assert {"Pet", "Pet_2", "Cat", "Dog"} <= set(schemas)
    union = schemas["Pet"]["properties"]["pet"]
    assert union["x-discriminator"]["mapping"]["cat"] == "#/components/schemas/Cat"
    payloads = [
        document["channels"][c]["messages"]["Pet"]["payload"]["$ref"] for c in ("a", "b", "c")
    ]
    assert payloads == ["#/components/schemas/Pet"] * 2 + ["#/components/schemas/Pet_2"]


def test_params_schema_describes_the_address_parameters() -> None:
    """``params=``: each address parameter's description and enum from its field."""

    class Room(pydantic.BaseModel):
        room: Literal["lobby", "dev"] = pydantic.Field(description="Which room")

    app = Axeom().use(ws_plugin())
    app.ws("/chat/:room", message=lambda ws, msg: None, params=Room)
    document = app.asyncapi()
    assert_valid(document)
    assert document["channels"]["chat_room"]["parameters"]["room"] == {
        "description": "Which room",
        "enum": ["lobby", "dev"],
    }


def test_cli_server_from_the_config_file_of_axeom_run(tmp_path: Path) -> None:
    """--config: the [server] host and port `axeom run` would use name the server
    (--port still wins); a bad file is one line and exit status 2."""
    config = tmp_path / "axeom.toml"
    config.write_text('[server]\nhost = "10.0.0.5"\nport = 9100\n')
    result = run_axeom("asyncapi", "examples/chat.py:app", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["servers"]["default"]["host"] == "10.0.0.5:9100"
    result = run_axeom(
        "asyncapi", "examples/chat.py:app", "--config", str(config), "--port", "9200"
    )
    assert json.loads(result.stdout)["servers"]["default"]["host"] == "10.0.0.5:9200"
    config.write_text('[server]\nport = "x"\n')
    result = run_axeom("asyncapi", "examples/chat.py:app", "--config", str(config))
    assert result.returncode == 2
    assert "server.port" in result.stderr and "Traceback" not in result.stderr
