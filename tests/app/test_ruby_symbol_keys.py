"""A Ruby step's Hash with Symbol keys (at any depth) is what the same Hash with String keys is.

Ruby's idiomatic ``{ status: 201, body: { id: 1 } }`` must answer an API
request, come back from a plain invocation and travel as emitted data
exactly as ``{ "status" => 201, "body" => { "id" => 1 } }`` does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import motia_state as ms
from motia_state.runtime import WorkerPool

from ..helpers import step_file
from .devserver import DevServer

CREATE = """
CONFIG = { name: "Create", triggers: [{ type: "api", method: "POST", path: "/things" }], emits: ["made"] }

def handler(req, ctx)
  ctx.emit(topic: "made", data: { id: 1, tags: [{ name: "a", extra: { deep: true } }] })
  { status: 201, body: { id: 1, items: [{ name: "x", more: { n: 2 } }] }, headers: { "x-a" => "1", "x-b": "2" } }
end
"""

# The same answer with String keys: the two must be answered alike.
CREATE_STRINGS = """
CONFIG = { "name" => "CreateS", "triggers" => [{ "type" => "api", "method" => "POST", "path" => "/things-s" }] }

def handler(req, ctx)
  { "status" => 201, "body" => { "id" => 1, "items" => [{ "name" => "x", "more" => { "n" => 2 } }] },
    "headers" => { "x-a" => "1", "x-b" => "2" } }
end
"""

SINK = """
config = {"name": "Sink", "triggers": [{"type": "event", "topic": "made"}]}

async def handler(data, ctx):
    await ctx.state.set("seen", "made", data)
"""

SEEN = """
config = {"name": "Seen", "triggers": [{"type": "api", "method": "GET", "path": "/seen"}]}

async def handler(req, ctx):
    return {"status": 200, "body": {"seen": await ctx.state.get("seen", "made")}}
"""

EXPECTED_BODY = {"id": 1, "items": [{"name": "x", "more": {"n": 2}}]}
EXPECTED_EVENT = {"id": 1, "tags": [{"name": "a", "extra": {"deep": True}}]}


def test_an_api_answer_with_symbol_keys_is_served_as_with_string_keys(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    step_file(root, "create", "rb", CREATE)
    step_file(root, "create_s", "rb", CREATE_STRINGS)
    step_file(root, "sink", "py", SINK)
    step_file(root, "seen", "py", SEEN)
    with DevServer(root).start(tmp_path) as server:
        answers = [server.client.post(path, json={}) for path in ("/things", "/things-s")]
        for answer in answers:
            assert answer.status_code == 201, server.output()
            assert answer.json() == EXPECTED_BODY
            assert answer.headers["x-a"] == "1" and answer.headers["x-b"] == "2"
        # The emitted data reaches the subscriber (it runs after the answer: wait for it).
        seen: Any = None
        deadline = time.monotonic() + 30
        while seen is None and time.monotonic() < deadline:
            seen = server.client.get("/seen").json()["seen"]
            if seen is None:
                time.sleep(0.1)
        assert seen == EXPECTED_EVENT, server.output()


POOLED = """
def handler(data, ctx)
  ctx.emit(topic: "t", data: { a: 1, b: [{ c: { d: nil } }] })
  ctx.emit("t2", { e: { f: 2 } })
  { a: 1, "b" => [{ c: { d: [1, { e: "f" }] } }], g: {} }
end
"""


async def test_an_invoke_result_and_emitted_data_with_symbol_keys_go_as_with_string_keys(tmp_path: Path) -> None:
    path = step_file(tmp_path, "pooled", "rb", POOLED)
    events: list[dict[str, Any]] = []
    async with WorkerPool(ms.StateManager()) as pool:
        result = await pool.call(path, trace_id="t", timeout=60, on_emit=events.append)
    assert result == {"a": 1, "b": [{"c": {"d": [1, {"e": "f"}]}}], "g": {}}
    assert [(e["topic"], e["data"]) for e in events] == [
        ("t", {"a": 1, "b": [{"c": {"d": None}}]}),
        ("t2", {"e": {"f": 2}}),
    ]


CYCLIC = """
def handler(data, ctx)
  case data["case"]
  when "cyclic"
    h = { a: 1 }
    h[:self] = h
    h
  when "symbol-value" then { a: :b }
  when "emit-cyclic"
    h = { a: 1 }
    h[:self] = h
    ctx.emit(topic: "t", data: h)
  end
end
"""


async def test_what_is_not_json_is_still_refused_with_symbol_keys(tmp_path: Path) -> None:
    path = step_file(tmp_path, "cyclic", "rb", CYCLIC)
    async with WorkerPool(ms.StateManager()) as pool:
        messages = {}
        for case in ("cyclic", "symbol-value", "emit-cyclic"):
            try:
                await pool.call(path, data={"case": case}, trace_id="t", timeout=60, on_emit=lambda e: None)
            except ms.StateError as e:
                messages[case] = str(e)
    assert "a cyclic value is not JSON" in messages["cyclic"]
    assert "result.a: a Symbol is not JSON (use a String)" in messages["symbol-value"]
    assert "a cyclic value is not JSON" in messages["emit-cyclic"]
