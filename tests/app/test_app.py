"""The App: events across languages, retries and dead letters, cron, HTTP through ASGI."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest

import motia_state as ms
from motia_state.app import App, ConfigError, InvocationRecord

from ..helpers import require_tool


def write(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


async def wait_for(check: Any, timeout: float = 20.0) -> Any:
    """Poll an async check until it returns something truthy."""
    with anyio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.05)


CHAIN = {
    "steps/start.step.py": """
        config = {"name": "Start", "triggers": [{"type": "api", "method": "POST", "path": "/start"}], "emits": ["a"]}

        async def handler(req, ctx):
            await ctx.state.push("log", "seen", {"step": "py", "trace": ctx.trace_id})
            await ctx.emit({"topic": "a", "data": req["body"]})
            return {"status": 202, "body": {"traceId": ctx.trace_id}}
    """,
    "steps/relay.step.js": """
        exports.config = { name: 'Relay', triggers: [{ type: 'event', topic: 'a' }], emits: ['b'] }
        exports.handler = async (data, ctx) => {
          await ctx.state.push('log', 'seen', { step: 'js', trace: ctx.traceId, n: data.n })
          await ctx.emit({ topic: 'b', data: { n: data.n + 1 } })
        }
    """,
    "steps/sink.step.rb": """
        CONFIG = { name: "Sink", triggers: [{ type: "event", topic: "b" }] }

        def handler(data, ctx)
          ctx.state.push("log", "seen", { "step" => "rb", "trace" => ctx.trace_id, "n" => data["n"] })
        end
    """,
    "steps/also_step.py": """
        config = {"name": "AlsoSink", "triggers": [{"type": "event", "topic": "b"}]}

        def handler(data, ctx):
            ctx.state.push("log", "seen", {"step": "py2", "trace": ctx.trace_id, "n": data["n"]})
    """,
}


async def test_an_emit_reaches_every_subscriber_across_languages_with_the_same_trace_id(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    root = write(tmp_path, CHAIN)
    records: list[InvocationRecord] = []
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
        app.on_invocation.append(records.append)
        assert sorted(app.steps) == ["AlsoSink", "Relay", "Sink", "Start"]
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.post("/start", json={"n": 1})
        assert response.status_code == 202
        trace = response.json()["traceId"]
        assert app.state is not None
        state = app.state
        seen = await wait_for(lambda: _when(state.get("log", "seen"), lambda v: v if v and len(v) == 4 else None))
        await app.wait_idle()
    assert {s["trace"] for s in seen} == {trace}
    assert sorted((s["step"], s.get("n")) for s in seen) == [("js", 1), ("py", None), ("py2", 2), ("rb", 2)]
    assert {(r.step, r.trigger, r.outcome) for r in records} == {
        ("Start", "api POST /start", "ok"),
        ("Relay", "event a", "ok"),
        ("Sink", "event b", "ok"),
        ("AlsoSink", "event b", "ok"),
    }
    assert {r.trace_id for r in records} == {trace}


async def _when(coro: Any, pick: Any) -> Any:
    return pick(await coro)


FLAKY = {
    "flaky.step.py": """
        config = {"name": "Flaky", "triggers": [{"type": "event", "topic": "go"}]}

        async def handler(data, ctx):
            n = await ctx.state.increment("t", "flaky")
            if n < 2:
                raise RuntimeError("not yet: %d" % n)
            await ctx.state.set("t", "flaky_done", data)
    """,
    "broken.step.js": """
        exports.config = { name: 'Broken', triggers: [{ type: 'event', topic: 'go' }] }
        exports.handler = async (data, ctx) => {
          await ctx.state.increment('t', 'broken')
          throw new Error('always broken')
        }
    """,
}


async def test_a_failing_delivery_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    require_tool("node")
    root = write(tmp_path, FLAKY)
    async with App.from_directory(root, state=ms.MemoryStateAdapter(), backoff=0.01, attempts=3) as app:
        assert app.state is not None
        state = app.state
        assert app.emit("go", {"x": 1}, trace_id="trace-1") == 2
        await wait_for(lambda: _when(state.get("t", "flaky_done"), bool))
        await wait_for(lambda: _value(app.dead_letters()))
        [dead] = app.dead_letters()
        assert dead.delivery.step == "Broken" and dead.delivery.topic == "go"
        assert dead.delivery.data == {"x": 1} and dead.delivery.trace_id == "trace-1"
        assert dead.attempts == 3 and dead.code == "STEP_FAILED" and "always broken" in dead.error
        assert await state.get("t", "flaky") == 2  # the first try failed, the retry succeeded
        assert await state.get("t", "broken") == 3
        transport = httpx.ASGITransport(app=app.asgi)
        # The workbench's endpoints answer only on a loopback Host, and take JSON writes.
        json_ = {"content-type": "application/json"}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            listed = (await client.get("/__motia/dead-letters")).json()
            assert [(d["id"], d["step"], d["attempts"]) for d in listed] == [(dead.id, "Broken", 3)]
            retried = await client.post(f"/__motia/dead-letters/{dead.id}/retry", headers=json_)
            assert retried.json() == {"retried": True, "succeeded": False}
            assert await state.get("t", "broken") == 4
            assert app.dead_letters()[0].attempts == 4
            dropped = await client.delete(f"/__motia/dead-letters/{dead.id}", headers=json_)
            assert dropped.status_code == 204 and dropped.content == b""
            assert (await client.delete(f"/__motia/dead-letters/{dead.id}", headers=json_)).status_code == 404
        assert app.dead_letters() == []


async def _value(value: Any) -> Any:
    return value


async def test_an_event_at_max_depth_triggers_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write(
        tmp_path,
        {
            "loop.step.py": """
                config = {"name": "Loop", "triggers": [{"type": "event", "topic": "loop"}], "emits": ["loop"]}

                async def handler(data, ctx):
                    await ctx.state.increment("t", "loops")
                    await ctx.emit({"topic": "loop", "data": None})
            """
        },
    )
    async with App.from_directory(root, state=ms.MemoryStateAdapter(), max_depth=4) as app:
        assert app.state is not None
        app.emit("loop")  # depth 1, 2, 3 run; the emit at depth 4 is refused

        async def refused() -> bool:
            return any("depth 4" in r.getMessage() and "a loop?" in r.getMessage() for r in caplog.records)

        await wait_for(refused)
        await app.wait_idle()
        assert await app.state.get("t", "loops") == 3


async def test_a_cron_step_fires_on_its_schedule(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "tick.step.py": """
                config = {"name": "Tick", "triggers": [{"type": "cron", "expression": "@every 1s"}]}

                async def handler(data, ctx):
                    await ctx.state.push("t", "ticks", data["scheduledAt"])
            """
        },
    )
    start = time.monotonic()
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
        assert app.state is not None
        state = app.state
        ticks = await wait_for(lambda: _when(state.get("t", "ticks"), lambda v: v if v and len(v) >= 2 else None))
    assert time.monotonic() - start >= 1.9  # one per second, not a burst
    assert all("T" in t and ("+" in t or "-" in t[10:]) for t in ticks)  # ISO-8601 with the local offset


async def test_a_cron_step_in_motias_older_shape_gets_its_context_alone_in_every_language(tmp_path: Path) -> None:
    # Motia calls a cron handler with the context alone; its older config
    # shape keeps that form, so a ported cron step runs unchanged.
    require_tool("node")
    require_tool("ruby")
    root = write(
        tmp_path,
        {
            "py.step.py": """
                config = {"name": "PyAudit", "type": "cron", "cron": "@every 0.2s"}

                async def handler(context):
                    await context.state.push("t", "py", context.trace_id)
            """,
            "js.step.js": """
                exports.config = { name: 'JsAudit', type: 'cron', cron: '@every 0.2s' }
                exports.handler = async ({ state, traceId }) => { await state.push('t', 'js', traceId) }
            """,
            "rb.step.rb": """
                CONFIG = { name: "RbAudit", type: "cron", cron: "@every 0.2s" }.freeze

                def handler(ctx)
                  ctx.state.push("t", "rb", ctx.trace_id)
                end
            """,
            "new.step.py": """
                config = {"name": "NewAudit", "triggers": [{"type": "cron", "expression": "@every 0.2s"}]}

                async def handler(data, ctx):
                    await ctx.state.push("t", "new", data["scheduledAt"])
            """,
        },
    )
    records: list[InvocationRecord] = []
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
        app.on_invocation.append(records.append)
        assert app.state is not None
        state = app.state

        async def all_ran() -> bool:
            return all([await state.exists("t", k) for k in ("py", "js", "rb", "new")])

        await wait_for(all_ran)
        await app.wait_idle()
    assert [r for r in records if r.outcome != "ok"] == []
    for key in ("py", "js", "rb"):
        assert all(isinstance(t, str) and t for t in await state.get("t", key))  # a trace id: ctx came first
    assert all("T" in t for t in await state.get("t", "new"))  # (input, ctx): input is {"scheduledAt"}


HTTP = {
    "users.step.py": """
        config = {"name": "GetUser", "triggers": [{"type": "api", "method": "GET", "path": "/users/:id/items/:item"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": req, "headers": {"x-step": "users"}}
    """,
    "plain.step.py": """
        config = {"name": "Plain", "triggers": [{"type": "api", "method": "POST", "path": "/plain"}]}

        def handler(req, ctx):
            if req["body"] == "fail":
                raise ValueError("asked to fail")
            return {"echo": req["body"], "status": "not an int: a plain body"}
    """,
    "legacy.step.rb": """
        CONFIG = { name: "Legacy", type: "api", method: "PUT", path: "/legacy" }

        def handler(req, _ctx)
          { "status" => 201, "body" => { "got" => req["body"] } }
        end
    """,
}


async def test_http_requests_reach_api_steps_with_motias_input_and_answer_shapes(tmp_path: Path) -> None:
    require_tool("ruby")
    root = write(tmp_path, HTTP)
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            r = await client.get("/users/a%20b/items/7?tag=x&tag=y&one=1", headers={"X-Thing": "T"})
            assert r.status_code == 200 and r.headers["x-step"] == "users"
            req = r.json()
            assert req["pathParams"] == {"id": "a b", "item": "7"}
            assert req["queryParams"] == {"tag": ["x", "y"], "one": "1"}
            assert req["headers"]["x-thing"] == "T" and req["method"] == "GET" and req["body"] is None
            assert req["path"] == "/users/a b/items/7"
            # An encoded slash stays inside its parameter, as in Motia (Express).
            r = await client.get("/users/a%2Fb%2f/items/7")
            assert r.status_code == 200 and r.json()["pathParams"] == {"id": "a/b/", "item": "7"}
            assert (await client.get("/users/a/b/items/7")).status_code == 404

            r = await client.post("/plain", json={"a": [1, 2]})
            assert r.status_code == 200
            assert r.json() == {"echo": {"a": [1, 2]}, "status": "not an int: a plain body"}

            r = await client.post("/plain", json="fail")
            assert r.status_code == 500
            assert r.json()["code"] == "STEP_FAILED" and "asked to fail" in r.json()["error"]
            assert "stack" not in r.json()

            r = await client.post("/plain", content=b"{not json")
            assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT"

            r = await client.put("/legacy", json=[1])
            assert r.status_code == 201 and r.json() == {"got": [1]}

            assert (await client.get("/plain")).status_code == 405
            assert (await client.get("/nowhere")).status_code == 404
            summary = (await client.get("/__motia", headers={"host": "127.0.0.1"})).json()  # a loopback Host
            assert [(x["method"], x["path"]) for x in summary["routes"]] == [
                ("PUT", "/legacy"),
                ("POST", "/plain"),
                ("GET", "/users/:id/items/:item"),
            ]


async def test_the_app_refuses_to_start_on_a_config_error(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "good.step.py": "config = {'name': 'A', 'triggers': []}\ndef handler(d, c): pass\n",
            "steps/bad.step.py": "config = {'name': 'B', 'triggers': [{'type': 'evnt', 'topic': 't'}]}\n",
            "dup.step.py": "config = {'name': 'A', 'triggers': []}\n",
        },
    )
    app = App.from_directory(root, state=ms.MemoryStateAdapter())
    with pytest.raises(ConfigError):
        async with app:
            pass
    assert sorted(str(e) for e in app.registry.errors) == [
        "good.step.py: config.name: the name 'A' is already used by dup.step.py",
        'steps/bad.step.py: config.triggers[0].type: unknown trigger type "evnt" (event, api, cron or state)',
    ]


async def test_state_triggers_are_listed_and_a_warning_says_they_do_not_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write(
        tmp_path,
        {
            "promote.step.py": """
                def promote_when(value, ctx):
                    return value >= 100

                config = {"name": "Promote", "triggers": [
                    {"type": "state", "key": "score", "condition": {"op": "gte", "value": 100}},
                    {"type": "state", "key": "score", "condition": promote_when},
                ]}

                async def handler(data, ctx):
                    pass
            """
        },
    )
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
        assert [(s.name, s.index, s.trigger.native) for s in app.triggers] == [
            ("Promote#0", 0, False),
            ("Promote#1", 1, True),
        ]
        try:
            import motia_state.triggers  # noqa: F401
        except ImportError:
            assert app.trigger_runner is None
            assert any("not installed" in r.getMessage() for r in caplog.records)
        else:
            assert app.trigger_runner is not None


def test_the_app_runs_under_trio(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "api.step.py": """
                config = {"name": "Api", "triggers": [{"type": "api", "method": "POST", "path": "/go"}], "emits": ["e"]}

                async def handler(req, ctx):
                    await ctx.emit({"topic": "e", "data": req["body"]})
                    return {"ok": True}
            """,
            "on_e.step.py": """
                config = {"name": "OnE", "triggers": [{"type": "event", "topic": "e"}]}

                async def handler(data, ctx):
                    await ctx.state.set("t", "got", data)
            """,
        },
    )

    async def main() -> Any:
        async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
            assert app.state is not None
            state = app.state
            transport = httpx.ASGITransport(app=app.asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                r = await client.post("/go", json={"v": 3})
            assert r.json() == {"ok": True}
            return await wait_for(lambda: state.get("t", "got"))

    assert anyio.run(main, backend="trio") == {"v": 3}


async def test_stopping_lets_a_running_cron_invocation_finish(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "slow_cron.step.py": """
                import asyncio

                config = {"name": "SlowCron", "triggers": [{"type": "cron", "expression": "@every 0.2s"}]}

                async def handler(data, ctx):
                    if not await ctx.state.compare_and_swap("t", "started", None, data["scheduledAt"]):
                        return
                    await asyncio.sleep(1.0)
                    await ctx.state.set("t", "finished", True)
            """
        },
    )
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with App.from_directory(root, state=state, grace=10) as app:
        await wait_for(lambda: state.get("t", "started"))
        assert app.summary()["schedules"] == [{"expression": "@every 0.2s", "step": "SlowCron"}]
    assert await state.get("t", "finished") is True


class FakeTriggerRunner:
    """Stands in for motia_state.triggers.TriggerRunner: records what the app registers."""

    instances: ClassVar[list[FakeTriggerRunner]] = []

    def __init__(self, state: Any, pool: Any, *, on_emit: Any = None) -> None:
        self.state, self.pool, self.on_emit = state, pool, on_emit
        self.added: list[tuple[str, dict[str, Any], str]] = []
        self.entered = self.exited = False
        FakeTriggerRunner.instances.append(self)

    async def __aenter__(self) -> FakeTriggerRunner:
        self.entered = True
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.exited = True

    async def add(self, name: str, trigger: dict[str, Any], step_path: str) -> None:
        self.added.append((name, trigger, step_path))


async def test_state_triggers_are_registered_with_a_trigger_runner_when_one_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    fake = types.ModuleType("motia_state.triggers")
    fake.TriggerRunner = FakeTriggerRunner  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "motia_state.triggers", fake)
    FakeTriggerRunner.instances.clear()
    root = write(
        tmp_path,
        {
            "promote.step.py": """
                config = {"name": "Promote", "emits": ["promoted"], "triggers": [
                    {"type": "state", "key": "score", "group": "users", "condition": {"op": "gte", "value": 100}},
                ]}

                async def handler(data, ctx):
                    pass
            """,
            "on_promoted.step.py": """
                config = {"name": "OnPromoted", "triggers": [{"type": "event", "topic": "promoted"}]}

                async def handler(data, ctx):
                    await ctx.state.set("t", "promoted", {"data": data, "trace": ctx.trace_id})
            """,
        },
    )
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
        [runner] = FakeTriggerRunner.instances
        assert app.trigger_runner is runner and runner.entered and runner.pool is app.pool
        assert runner.added == [
            (
                "Promote",
                {
                    "type": "state",
                    "key": "score",
                    "from": "now",
                    "group": "users",
                    "condition": {"op": "gte", "value": 100},
                },
                str(root / "promote.step.py"),
            )
        ]
        # What the runner's invocations emit goes through the app's router.
        assert runner.on_emit == app.route_emit
        assert runner.on_emit({"topic": "promoted", "data": 7, "traceId": "tr"}, depth=2, step="Promote") == 1
        assert app.state is not None
        state = app.state
        assert await wait_for(lambda: state.get("t", "promoted")) == {"data": 7, "trace": "tr"}
        assert app.summary()["stateTriggersRunning"] is True
    assert runner.exited


async def test_max_workers_bounds_how_many_invocations_of_a_step_run_at_once(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "one_at_a_time.step.py": """
                import asyncio

                config = {"name": "OneAtATime", "maxWorkers": 1, "triggers": [{"type": "event", "topic": "go"}]}

                async def handler(data, ctx):
                    await ctx.state.push("t", "running", await ctx.state.increment("t", "now"))
                    await asyncio.sleep(0.2)
                    await ctx.state.decrement("t", "now")
            """,
            "two_at_a_time.step.py": """
                import asyncio

                config = {"name": "TwoAtATime", "maxWorkers": 2, "triggers": [{"type": "event", "topic": "go2"}]}

                async def handler(data, ctx):
                    await ctx.state.push("t2", "running", await ctx.state.increment("t2", "now"))
                    # Hold on until a second one runs (however long its worker
                    # takes to start), or every one has started.
                    for _ in range(500):
                        if await ctx.state.get("t2", "now") >= 2 or len(await ctx.state.get("t2", "running")) >= 3:
                            break
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.3)
                    await ctx.state.decrement("t2", "now")
            """,
        },
    )
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with App.from_directory(root, state=state) as app:
        for _ in range(3):
            app.emit("go")
            app.emit("go2")
        await wait_for(lambda: _when(state.get("t", "running"), lambda v: v and len(v) == 3))
        await wait_for(lambda: _when(state.get("t2", "running"), lambda v: v and len(v) == 3))
    assert await state.get("t", "running") == [1, 1, 1]
    assert max(await state.get("t2", "running")) == 2


async def test_the_app_closes_only_the_store_it_opened(tmp_path: Path) -> None:
    root = write(tmp_path, {"noop.step.py": "config = {'name': 'Noop', 'triggers': []}\ndef handler(d, c): pass\n"})
    adapter = ms.MemoryStateAdapter()
    async with App.from_directory(root, state=adapter):
        pass
    assert await adapter.set("g", "k", 1) == 1  # still open: it is the caller's
    store = tmp_path / "store"
    async with App.from_directory(root, state=f"file:{store}") as app:
        assert app.state is not None
        await app.state.set("g", "k", 2)
        opened = app.state
    with pytest.raises(ms.StateError):
        await opened.get("g", "k")  # closed with the app


async def test_emitting_an_undeclared_topic_logs_a_warning_and_still_delivers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write(
        tmp_path,
        {
            "sloppy.step.py": """
                config = {"name": "Sloppy", "triggers": [{"type": "event", "topic": "go"}]}

                async def handler(data, ctx):
                    await ctx.emit({"topic": "undeclared", "data": 1})
            """,
            "sink.step.py": """
                config = {"name": "Sink", "triggers": [{"type": "event", "topic": "undeclared"}]}

                async def handler(data, ctx):
                    await ctx.state.set("t", "got", data)
            """,
        },
    )
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with App.from_directory(root, state=state) as app:
        app.emit("go")
        assert await wait_for(lambda: state.get("t", "got")) == 1
    assert any(
        "[Sloppy] emits 'undeclared', which its config does not declare" in r.getMessage() for r in caplog.records
    )


async def test_the_asgi_app_mounts_inside_another_starlette_app(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    root = write(tmp_path, {"users.step.py": HTTP["users.step.py"]})
    async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:

        async def home(request: Any) -> PlainTextResponse:
            return PlainTextResponse("host app")

        host = Starlette(routes=[Route("/", home), Mount("/steps", app=app.asgi)])
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            assert (await client.get("/")).text == "host app"
            r = await client.get("/steps/users/u1/items/i2")
            assert r.status_code == 200 and r.json()["pathParams"] == {"id": "u1", "item": "i2"}
            r = await client.get("/steps/users/u%2F1/items/i2")
            assert r.status_code == 200 and r.json()["pathParams"] == {"id": "u/1", "item": "i2"}
            # The workbench answers on a loopback Host (or one the embedder allows in app.allowed_hosts).
            assert (await client.get("/steps/__motia")).status_code == 403
            summary = await client.get("/steps/__motia", headers={"host": "127.0.0.1:8000"})
            assert summary.json()["routes"][0]["step"] == "GetUser"
