"""The workbench endpoints through httpx.ASGITransport: Motia's shapes, versions, errors, safety."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import motia_state as ms
from motia_state.web import entry_version, workbench_app

BASE = "http://127.0.0.1:3000"
J = {"content-type": "application/json"}


@pytest.fixture(params=["memory", "file", "redis", "redis-cluster"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ms.StateManager]:
    adapter: ms.StateAdapter
    if request.param == "memory":
        adapter = ms.MemoryStateAdapter()
    elif request.param == "file":
        adapter = ms.FileStateAdapter(str(tmp_path / "store"))
    elif request.param == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")  # skips without redis-server outside CI
        url = f"redis://127.0.0.1:{cluster.port}/0"
        adapter = ms.RedisStateAdapter(url, cluster=True, key_prefix=request.getfixturevalue("redis_prefix"))
    else:
        server = request.getfixturevalue("redis_server")  # skips without redis-server outside CI
        adapter = ms.RedisStateAdapter(server.url, key_prefix=request.getfixturevalue("redis_prefix"))
    async with ms.StateManager(adapter) as manager:
        yield manager


def client_for(state: Any, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=workbench_app(state, **options)), base_url=BASE)


@pytest.fixture
async def client(state: ms.StateManager) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(state) as c:
        yield c


async def post(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    return await client.post(path, content=json.dumps(body), headers=J)


# -- listing: Motia's bare array -----------------------------------------------------------


async def test_list_is_motias_bare_array_ordered_by_group_then_key(
    state: ms.StateManager, client: httpx.AsyncClient
) -> None:
    await state.set("b", "x", [1])
    await state.set("a", "z", {"n": 1})
    await state.set("a", "y", None)
    await state.set("a:b", "c", "s")
    r = await client.get("/__motia/state")
    assert r.status_code == 200
    assert [(e["groupId"], e["key"], e["type"]) for e in r.json()] == [
        ("a", "y", "null"),
        ("a", "z", "object"),
        ("a:b", "c", "string"),
        ("b", "x", "array"),
    ]
    assert r.json()[1] == {
        "groupId": "a",
        "key": "z",
        "type": "object",
        "value": {"n": 1},
        "version": entry_version({"n": 1}),
    }
    assert "link" not in r.headers
    only = await client.get("/__motia/state", params={"groupId": "a"})
    assert [e["key"] for e in only.json()] == ["y", "z"]


async def test_list_pages_with_a_link_to_the_next_page(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    for g in range(3):
        for k in range(4):
            await state.set(f"g{g}", f"k{k}", g * 10 + k)
    seen: list[int] = []
    url: str | None = "/__motia/state?limit=5"
    pages = 0
    while url:
        r = await client.get(url)
        seen += [e["value"] for e in r.json()]
        pages += 1
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        if link:
            assert link.endswith('rel="next"') and "limit=5" in link
    assert seen == [g * 10 + k for g in range(3) for k in range(4)]
    assert pages == 3


async def test_list_filters_with_the_predicate_language_and_motias_value_key(
    state: ms.StateManager, client: httpx.AsyncClient
) -> None:
    await state.set("users", "a", {"score": 5, "name": "ann"})
    await state.set("users", "b", {"score": 50, "name": "bob"})
    await state.set("users", "c", 7)
    pred = {"op": "gte", "value": 10, "path": "/score"}
    r = await client.get("/__motia/state", params={"filter": json.dumps(pred)})
    assert [e["key"] for e in r.json()] == ["b"]
    motia = {"valueKey": "name", "op": "startsWith", "value": "a"}
    r = await client.get("/__motia/state", params={"filter": json.dumps(motia)})
    assert [e["key"] for e in r.json()] == ["a"]
    # Motia's own client sends a list of {valueKey, operation, value} that must all hold.
    motia_list = [
        {"valueKey": "score", "operation": "gt", "value": 1},
        {"valueKey": "name", "operation": "endsWith", "value": "b"},
    ]
    r = await client.get("/__motia/state", params={"filter": json.dumps(motia_list)})
    assert [e["key"] for e in r.json()] == ["b"]
    bad = await client.get("/__motia/state", params={"filter": json.dumps({"op": "nope"})})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_ARGUMENT"


async def test_list_search_matches_group_or_key_text(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    await state.set("orders", "o-1", 1)
    await state.set("users", "alice", 2)
    await state.set("users", "bob", 3)
    r = await client.get("/__motia/state", params={"search": "ALI"})
    assert [e["key"] for e in r.json()] == ["alice"]
    r = await client.get("/__motia/state", params={"search": "order"})
    assert [e["key"] for e in r.json()] == ["o-1"]


async def test_bad_listing_parameters_are_invalid_argument(client: httpx.AsyncClient) -> None:
    for params in ({"limit": "0"}, {"limit": "10001"}, {"limit": "x"}, {"cursor": "@@"}, {"filter": "{"}):
        r = await client.get("/__motia/state", params=params)
        assert r.status_code == 400, params
        assert r.json()["code"] == "INVALID_ARGUMENT"
        assert "Traceback" not in r.text


# -- sets, versions, conflicts ----------------------------------------------------------------


async def test_set_returns_value_and_version(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    r = await post(client, "/__motia/state", {"groupId": "g", "key": "k", "value": {"a": 1, "b": [2]}})
    assert r.status_code == 200
    assert r.json() == {
        "groupId": "g",
        "key": "k",
        "value": {"a": 1, "b": [2]},
        "version": entry_version({"b": [2], "a": 1}),
    }
    assert await state.get("g", "k") == {"a": 1, "b": [2]}


async def test_guarded_set_conflict_answers_409_with_current_and_stores_nothing(
    state: ms.StateManager, client: httpx.AsyncClient
) -> None:
    first = (await post(client, "/__motia/state", {"groupId": "g", "key": "k", "value": 1})).json()["version"]
    ok = await post(client, "/__motia/state", {"groupId": "g", "key": "k", "value": 2, "expectedVersion": first})
    assert ok.status_code == 200 and ok.json()["value"] == 2
    stale = await post(client, "/__motia/state", {"groupId": "g", "key": "k", "value": 3, "expectedVersion": first})
    assert stale.status_code == 409
    body = stale.json()
    assert body["code"] == "CONFLICT"
    assert body["current"] == {"value": 2, "version": entry_version(2)}
    assert await state.get("g", "k") == 2
    await state.delete("g", "k")
    gone = await post(client, "/__motia/state", {"groupId": "g", "key": "k", "value": 4, "expectedVersion": first})
    assert gone.status_code == 409 and gone.json()["current"] is None
    assert not await state.exists("g", "k")


async def test_version_changes_with_the_value_and_not_with_key_order() -> None:
    assert entry_version({"a": 1, "b": 2}) == entry_version({"b": 2, "a": 1})
    assert entry_version(1) != entry_version("1") != entry_version(True)
    assert entry_version(None) != entry_version([])


# -- operations with Motia's argument objects ------------------------------------------------------


async def op(client: httpx.AsyncClient, key: str, operation: str, value: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"groupId": "g", "key": key, "operation": operation}
    if value is not None:
        body["value"] = value
    return await post(client, "/__motia/state", body)


async def test_every_operation_with_motias_shapes(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    async def result(key: str, operation: str, value: Any = None) -> Any:
        r = await op(client, key, operation, value)
        assert r.status_code == 200, r.text
        assert r.json()["operation"] == operation and r.json()["groupId"] == "g" and r.json()["key"] == key
        return r.json()["result"]

    assert await result("n", "increment", {"delta": 5}) == 5
    assert await result("n", "increment", {"delta": 0}) == 5  # a delta of 0 is 0
    assert await result("n", "decrement", {"delta": 0}) == 5
    assert await result("n", "increment", {}) == 6
    assert await result("n", "decrement", {"delta": 2}) == 4
    assert await result("a", "push", {"items": [1, 2]}) == [1, 2]
    assert await result("a", "unshift", {"items": [0]}) == [0, 1, 2]
    assert await result("a", "pop", {}) == 2
    assert await result("a", "shift") == 0
    assert await result("o", "setField", {"field": "x", "fieldValue": 1}) == {"x": 1}
    assert await result("o", "deleteField", {"field": "x"}) == {}
    assert await result("o", "exists", {}) is True
    assert await result("missing", "exists", {}) is False
    assert await result("o", "compareAndSwap", {"expected": {}, "newValue": 9}) is True
    assert await result("o", "compareAndSwap", {"expected": {}, "newValue": 10}) is False
    assert await result("o", "get", {}) == 9
    assert await result("o", "delete", {}) == 9
    assert not await state.exists("g", "o")


async def test_transaction_failure_is_200_with_failed_index(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    await state.set("g", "stock", 0)
    records = [
        {"type": "check", "key": "stock", "op": "gte", "value": 1},
        {"type": "decrement", "key": "stock"},
    ]
    r = await op(client, "ignored", "transaction", {"operations": records})
    assert r.status_code == 200
    res = r.json()["result"]
    assert res["success"] is False and res["failedIndex"] == 0 and res["code"] == "CONFLICT"
    assert await state.get("g", "stock") == 0
    b = await op(
        client,
        "ignored",
        "batch",
        {
            "operations": [
                {"type": "increment", "key": "stock", "id": "a"},
                {"type": "push", "key": "stock", "items": [1]},
            ]
        },
    )
    items = b.json()["result"]["results"]
    assert items[0] == {"id": "a", "value": 1}
    assert items[1]["code"] == "TYPE_MISMATCH"


async def test_operation_errors_carry_their_code_and_status(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    await state.set("g", "s", "text")
    r = await op(client, "s", "increment", {"delta": 1})
    assert r.status_code == 422 and r.json()["code"] == "TYPE_MISMATCH"
    r = await op(client, "s", "increment", {"delta": True})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT"
    r = await op(client, "s", "frobnicate", {})
    assert r.status_code == 400 and "frobnicate" in r.json()["error"]
    r = await op(client, "s", "setField", {"field": "x"})
    assert r.status_code == 400 and "fieldValue" in r.json()["error"]
    r = await client.post("/__motia/state", content=b"{not json", headers=J)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT"
    big = '{"groupId": "g", "key": "k", "value": "' + "x" * (9 * 1024 * 1024) + '"}'
    r = await client.post("/__motia/state", content=big, headers=J)
    assert r.status_code == 413 and r.json()["code"] == "LIMIT_EXCEEDED"


# -- deleting, with Motia's ids --------------------------------------------------------------------


async def test_delete_items_and_motias_ids(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    await state.set("g", "a", 1)
    await state.set("g", "b:c", 2)
    await state.set("h", "x", 3)
    r = await post(client, "/__motia/state/delete", {"items": [{"groupId": "g", "key": "a"}]})
    assert r.status_code == 204 and not await state.exists("g", "a")
    r = await post(client, "/__motia/state/delete", {"ids": ["g:b:c", "h:x"]})
    assert r.status_code == 204
    assert await state.groups() == []


async def test_delete_ambiguous_id_is_409_and_deletes_nothing(
    state: ms.StateManager, client: httpx.AsyncClient
) -> None:
    await state.set("a", "b:c", 1)
    await state.set("a:b", "c", 2)
    await state.set("z", "z", 3)
    r = await post(client, "/__motia/state/delete", {"ids": ["z:z", "a:b:c"]})
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
    assert "'a:b'" in r.json()["error"]
    assert await state.get("a", "b:c") == 1 and await state.get("a:b", "c") == 2 and await state.get("z", "z") == 3


# -- reserved groups ----------------------------------------------------------------------------------


async def test_reserved_groups_are_hidden_and_refused(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    # Planted through the adapter's reserved-group handle, as the runtime's own bookkeeping writes it.
    internal = state.adapter.internal
    await internal.set("__motia/positions", "t", 1)
    await state.set("g", "k", 1)
    assert [e["groupId"] for e in (await client.get("/__motia/state")).json()] == ["g"]
    for body in (
        {"groupId": "__motia/positions", "key": "t", "value": 2},
        {"groupId": "__motia/x", "key": "t", "operation": "increment", "value": {"delta": 1}},
    ):
        r = await post(client, "/__motia/state", body)
        assert r.status_code == 400 and "reserved" in r.json()["error"]
    r = await post(client, "/__motia/state/delete", {"items": [{"groupId": "__motia/positions", "key": "t"}]})
    assert r.status_code == 400
    r = await client.get("/__motia/state", params={"groupId": "__motia/positions"})
    assert r.status_code == 400
    assert await internal.get("__motia/positions", "t") == 1


# -- safety --------------------------------------------------------------------------------------------


async def test_writes_need_a_json_content_type(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    body = json.dumps({"groupId": "g", "key": "k", "value": 1})
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        r = await client.post("/__motia/state", content=body, headers=headers)
        assert r.status_code == 415, headers
    assert not await state.exists("g", "k")
    r = await client.post("/__motia/state", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


async def test_foreign_host_and_origin_are_403(state: ms.StateManager) -> None:
    async with client_for(state, allowed_hosts=["box.lan"]) as c:
        body = json.dumps({"groupId": "g", "key": "k", "value": 1})
        r = await c.get("/__motia/state", headers={"host": "evil.example:3000"})
        assert r.status_code == 403
        r = await c.post("/__motia/state", content=body, headers={**J, "origin": "http://evil.example"})
        assert r.status_code == 403
        r = await c.post("/__motia/state", content=body, headers={**J, "origin": "http://127.0.0.1:3001"})
        assert r.status_code == 403
        assert not await state.exists("g", "k")
        for host in ("localhost:3000", "[::1]:3000", "box.lan:8080"):
            r = await c.get("/__motia/state", headers={"host": host, "origin": f"http://{host}"})
            assert r.status_code == 200, host
        r = await c.post("/__motia/state", content=body, headers={**J, "origin": BASE})
        assert r.status_code == 200


async def test_token_as_bearer_or_session_cookie(state: ms.StateManager) -> None:
    async with client_for(state, token="s3cret") as c:
        r = await c.get("/__motia/state")
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
        r = await c.get("/__motia/state", headers={"authorization": "Bearer nope"})
        assert r.status_code == 401
        r = await c.get("/__motia/state", headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200
        for header in ("bearer s3cret", "BEARER  s3cret", "Bearer s3cret "):  # the scheme ignores case
            assert (await c.get("/__motia/state", headers={"authorization": header})).status_code == 200, header
        for header in ("Bearer", "Bearer ", "Basic s3cret", "Bearers3cret", "s3cret"):
            assert (await c.get("/__motia/state", headers={"authorization": header})).status_code == 401, header
        page = await c.get("/__motia/")
        assert page.status_code == 200 and "<html" in page.text  # the page itself holds no data
        bad = await post(c, "/__motia/session", {"token": "nope"})
        assert bad.status_code == 401 and "motia_session" not in bad.headers.get("set-cookie", "")
        ok = await post(c, "/__motia/session", {"token": "s3cret"})
        assert ok.status_code == 204
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "s3cret" not in cookie
        r = await c.get("/__motia/state")  # the client keeps the cookie
        assert r.status_code == 200


# -- history and the change stream ------------------------------------------------


async def test_history_and_feed_unavailable_answer_503_without_a_feed(state: ms.StateManager) -> None:
    class NoFeed:
        def __init__(self, inner: ms.StateManager) -> None:
            self.adapter = inner.adapter

    async with client_for(NoFeed(state)) as c:
        r = await c.get("/__motia/state/history", params={"groupId": "g", "key": "k"})
        assert r.status_code == 503 and r.json()["code"] == "UNAVAILABLE"
        r = await c.get("/__motia/state/changes")
        assert r.status_code == 503


async def test_history_newest_first(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    await state.set("g", "k", 1)
    await state.increment("g", "k", 2)
    r = await client.get("/__motia/state/history", params={"groupId": "g", "key": "k"})
    changes = r.json()["changes"]
    assert [c["newValue"] for c in changes] == [3, 1]
    assert changes[0]["op"] == "increment" and changes[1]["event"] == "created"


# -- steps and triggers without an app ---------------------------------------------------------------------


async def test_steps_and_triggers_without_an_app(client: httpx.AsyncClient) -> None:
    assert (await client.get("/__motia/steps")).json() == []
    assert (await client.get("/__motia/triggers")).json() == {"triggers": [], "running": False}
    r = await post(client, "/__motia/steps/x/invoke", {"data": 1})
    assert r.status_code == 503 and r.json()["code"] == "UNAVAILABLE"


class FakeApp:
    """The App surface the workbench uses: steps, invoke, event dead letters."""

    def __init__(self) -> None:
        self.steps = {
            "Greeter": type(
                "R", (), {"config": type("C", (), {"file": "steps/greet.step.py", "triggers": (), "flows": ("f",)})()}
            )()
        }
        self.dead = [{"id": "d1", "topic": "t", "error": "boom", "attempts": 3}]
        self.retried: list[str] = []

    async def invoke(self, name: str, data: Any = None, *, trace_id: str | None = None) -> Any:
        if data == "fail":
            raise ms.StepFailedError("handler raised ValueError: no")
        return {"hello": data, "trace": trace_id}

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.dead

    async def retry_dead_letter(self, dead_id: str) -> bool:
        self.retried.append(dead_id)
        self.dead = [d for d in self.dead if d["id"] != dead_id]
        return True

    def drop_dead_letter(self, dead_id: str) -> None:
        if not any(d["id"] == dead_id for d in self.dead):
            raise ms.NotFoundError(f"no dead letter {dead_id}")
        self.dead = [d for d in self.dead if d["id"] != dead_id]


async def test_steps_invoke_and_event_dead_letters_over_an_app(state: ms.StateManager) -> None:
    app = FakeApp()
    async with client_for(state, app=app) as c:
        steps = (await c.get("/__motia/steps")).json()
        assert steps[0]["name"] == "Greeter" and steps[0]["language"] == "python" and steps[0]["flows"] == ["f"]
        r = await post(c, "/__motia/steps/Greeter/invoke", {"data": "ann", "traceId": "t1"})
        assert r.json() == {"result": {"hello": "ann", "trace": "t1"}, "logs": []}
        r = await post(c, "/__motia/steps/Greeter/invoke", {"data": "fail"})
        assert r.status_code == 500 and r.json()["code"] == "STEP_FAILED"
        r = await post(c, "/__motia/steps/Nope/invoke", {})
        assert r.status_code == 404
        triggers = (await c.get("/__motia/triggers")).json()["triggers"]
        assert triggers == [{"name": "events", "kind": "events", "dead": app.dead}]
        r = await c.post("/__motia/triggers/events/dead/d1/retry", headers=J)
        assert r.status_code == 200 and app.retried == ["d1"]
        r = await c.request("DELETE", "/__motia/triggers/events/dead/zz", headers=J)
        assert r.status_code == 404


class FramedFeed:
    """A store whose feed yields two given records: pins the event-stream framing and the start position."""

    def __init__(self, inner: ms.StateManager) -> None:
        self.adapter = inner.adapter
        self.calls: list[tuple[Any, Any, bool]] = []

    def changes(
        self, after: Any = None, *, groups: Any = None, keys: Any = None, follow: bool = True
    ) -> AsyncIterator[Any]:
        self.calls.append((after, groups, follow))

        async def gen() -> AsyncIterator[dict[str, Any]]:
            for n in (1, 2):
                yield {"cursor": f"m.{n}", "group": "g", "key": "k", "op": "set", "event": "updated", "newValue": n}

        return gen()


async def test_change_stream_frames_events_and_resumes_from_last_event_id(state: ms.StateManager) -> None:
    feed = FramedFeed(state)
    async with client_for(feed) as c:
        r = await c.get("/__motia/state/changes")
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [block for block in r.text.split("\n\n") if block.startswith("event:")]
        assert events[0].splitlines()[:2] == ["event: change", "id: m.1"]
        assert json.loads(events[1].splitlines()[2].removeprefix("data: "))["newValue"] == 2
        await c.get("/__motia/state/changes", params={"after": "m.7"})
        await c.get("/__motia/state/changes", params={"after": "m.7"}, headers={"last-event-id": "m.9"})
    # Without a position the stream starts now; Last-Event-ID wins over ?after.
    assert [call[0] for call in feed.calls] == ["now", "m.7", "m.9"]


async def test_list_one_entry_by_group_and_key(state: ms.StateManager, client: httpx.AsyncClient) -> None:
    await state.set("g", "k", None)
    await state.set("g", "k2", 1)
    r = await client.get("/__motia/state", params={"groupId": "g", "key": "k"})
    assert r.json() == [{"groupId": "g", "key": "k", "type": "null", "value": None, "version": entry_version(None)}]
    assert (await client.get("/__motia/state", params={"groupId": "g", "key": "nope"})).json() == []
    assert (await client.get("/__motia/state", params={"key": "k"})).status_code == 400


async def test_a_wildcard_bind_with_a_token_accepts_any_host_but_still_checks_origin(state: ms.StateManager) -> None:
    auth = {"authorization": "Bearer t"}
    async with client_for(state, token="t", allowed_hosts=["0.0.0.0"]) as c:
        r = await c.get("/__motia/state", headers={**auth, "host": "box.lan:3000"})
        assert r.status_code == 200
        r = await c.get("/__motia/state", headers={**auth, "host": "box.lan:3000", "origin": "http://evil.example"})
        assert r.status_code == 403
    async with client_for(state, allowed_hosts=["0.0.0.0"]) as c:  # no token: loopback names only
        assert (await c.get("/__motia/state", headers={"host": "box.lan:3000"})).status_code == 403


class FakeTriggerRunner:
    """TriggerRunner's status, dead_letters, retry and drop, as FEED.md names them."""

    def __init__(self) -> None:
        self.dead = {
            "promote": [
                {
                    "id": "7",
                    "trigger": "promote",
                    "error": "boom",
                    "attempts": 3,
                    "change": {"group": "u", "key": "score", "op": "set"},
                }
            ]
        }
        self.calls: list[tuple[str, str, str]] = []

    def status(self) -> dict[str, dict[str, Any]]:
        return {"promote": {"position": "m.9", "behind": 2, "oldestPendingAge": 1.5, "dead": len(self.dead["promote"])}}

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        return self.dead[name]

    async def retry(self, name: str, dead_id: str) -> bool:
        self.calls.append(("retry", name, dead_id))
        return True

    async def drop(self, name: str, dead_id: str) -> None:
        if not any(d["id"] == dead_id for d in self.dead[name]):
            raise ms.NotFoundError(f"no dead letter {dead_id}")
        self.calls.append(("drop", name, dead_id))
        self.dead[name] = []


async def test_state_triggers_lag_dead_letters_retry_and_drop(state: ms.StateManager) -> None:
    runner = FakeTriggerRunner()
    async with client_for(state, triggers=runner) as c:
        body = (await c.get("/__motia/triggers")).json()
        assert body["running"] is True
        [trigger] = body["triggers"]
        assert trigger["name"] == "promote" and trigger["kind"] == "state"
        assert (trigger["position"], trigger["behind"], trigger["oldestPendingAge"]) == ("m.9", 2, 1.5)
        assert trigger["dead"][0]["change"]["key"] == "score"
        r = await c.post("/__motia/triggers/promote/dead/7/retry", headers=J)
        assert r.json() == {"retried": True, "succeeded": True}
        assert (await c.request("DELETE", "/__motia/triggers/promote/dead/7", headers=J)).status_code == 204
        assert (await c.request("DELETE", "/__motia/triggers/promote/dead/7", headers=J)).status_code == 404
        assert (await c.post("/__motia/triggers/nope/dead/7/retry", headers=J)).status_code == 404
        assert runner.calls == [("retry", "promote", "7"), ("drop", "promote", "7")]


async def test_json_nested_past_the_parsers_depth_is_limit_exceeded_not_internal() -> None:
    deep = "[" * 5000 + "]" * 5000
    async with client_for(ms.StateManager(ms.MemoryStateAdapter())) as c:
        body = '{"groupId": "g", "key": "k", "value": ' + deep + "}"
        r = await c.post("/__motia/state", content=body, headers=J)
        assert r.status_code == 413 and r.json()["code"] == "LIMIT_EXCEEDED", r.text
        r = await c.get("/__motia/state", params={"filter": deep})
        assert r.status_code == 413 and r.json()["code"] == "LIMIT_EXCEEDED", r.text
        assert (await c.get("/__motia/state")).json() == []


async def test_an_unknown_path_or_method_is_a_json_error_too(tmp_path: Path) -> None:
    from motia_state.app import App

    async with client_for(ms.StateManager(ms.MemoryStateAdapter())) as c:
        r = await c.get("/__motia/nothing")
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        r = await c.put("/__motia/state", headers=J)
        assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED" and "GET" in r.headers["allow"]
    (tmp_path / "a.step.py").write_text(
        'config = {"name": "A", "triggers": [{"type": "api", "method": "POST", "path": "/a"}]}\n'
        "def handler(req, ctx):\n    return 1\n"
    )
    async with App.from_directory(tmp_path, state=ms.MemoryStateAdapter()) as app:
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            for r, status in ((await c.get("/__motia/nothing"), 404), (await c.get("/a"), 405)):
                assert r.status_code == status and r.json()["code"] in ("NOT_FOUND", "METHOD_NOT_ALLOWED")


async def test_a_bad_group_name_is_reported_as_the_groupId_it_was_sent_as() -> None:
    async with client_for(ms.StateManager(ms.MemoryStateAdapter())) as c:
        r = await c.post(
            "/__motia/state", content=json.dumps({"groupId": "g\u0000", "key": "k", "value": 1}), headers=J
        )
        assert r.status_code == 400 and r.json()["error"].startswith("groupId "), r.json()


async def test_the_page_refuses_to_be_framed_by_another_site() -> None:
    # Framed by another site, the page's own requests would pass the Origin check (clickjacking).
    async with client_for(ms.StateManager(ms.MemoryStateAdapter())) as c:
        r = await c.get("/__motia/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
