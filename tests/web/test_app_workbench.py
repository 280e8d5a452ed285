"""The workbench inside an App: steps, invoking one, event dead letters retried and dropped."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx

import motia_state as ms
from motia_state.app import App

from .steps import write_app

J = {"content-type": "application/json"}


async def test_app_serves_the_workbench_with_steps_invoke_and_dead_letters(tmp_path: Path) -> None:
    root = write_app(tmp_path)
    async with App.from_directory(root, state=ms.MemoryStateAdapter(), backoff=0.01, attempts=2) as app:
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as c:
            page = await c.get("/__motia", headers={"accept": "text/html"})
            assert page.status_code == 307 and page.headers["location"] == "/__motia/"
            assert "<html" in (await c.get("/__motia/")).text
            assert (await c.get("/__motia")).json()["steps"]  # the app's own summary, for scripts
            steps = (await c.get("/__motia/steps")).json()
            assert [s["name"] for s in steps] == ["Charger", "Greeter", "Order"]
            greeter = steps[1]
            assert greeter["language"] == "python" and greeter["flows"] == ["hello"]
            assert greeter["triggers"][0]["type"] == "event" and greeter["triggers"][0]["topic"] == "greet"
            r = await c.post("/__motia/steps/Greeter/invoke", content=json.dumps({"data": {"name": "Ann"}}), headers=J)
            assert r.status_code == 200 and r.json()["result"] == {"hello": "Ann", "n": 1}
            assert app.state is not None and await app.state.get("greetings", "count") == 1

            app.emit("charge", {"amount": 5})
            with anyio.fail_after(20):
                while not app.dead_letters():
                    await anyio.sleep(0.05)
            listed = (await c.get("/__motia/triggers")).json()["triggers"]
            events = next(t for t in listed if t["name"] == "events")
            [dead] = events["dead"]
            assert dead["step"] == "Charger" and "card declined" in dead["error"] and dead["attempts"] == 2
            retry = f"/__motia/triggers/events/dead/{dead['id']}/retry"
            assert (await c.post(retry, headers=J)).json() == {"retried": True, "succeeded": False}
            await app.state.set("billing", "card-valid", True)
            assert (await c.post(retry, headers=J)).json() == {"retried": True, "succeeded": True}
            assert await app.state.get("billing", "charged") == [{"amount": 5}]
            assert app.dead_letters() == []
            assert (
                await c.request("DELETE", f"/__motia/triggers/events/dead/{dead['id']}", headers=J)
            ).status_code == 404
            # The state endpoints are the same as the workbench's alone.
            listed_state = (await c.get("/__motia/state")).json()
            assert {(e["groupId"], e["key"]) for e in listed_state} == {
                ("billing", "card-valid"),
                ("billing", "charged"),
                ("greetings", "count"),
            }


async def test_the_apps_own_workbench_endpoints_are_guarded_like_the_others(tmp_path: Path) -> None:
    # /__motia (the summary) and /__motia/dead-letters show state values and
    # retry or drop work: a rebinding page (foreign Host) or a cross-site
    # form (foreign Origin, no JSON content type) must be refused there too.
    root = write_app(tmp_path)
    async with App.from_directory(root, state=ms.MemoryStateAdapter(), backoff=0.01, attempts=1) as app:
        app.emit("charge", {"card": "4111"})
        with anyio.fail_after(20):
            while not app.dead_letters():
                await anyio.sleep(0.05)
        [dead] = app.dead_letters()
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as c:
            evil = {"host": "evil.example:3000"}
            for path in ("/__motia", "/__motia/dead-letters"):
                r = await c.get(path, headers=evil)
                assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", path
            cross = {"origin": "http://evil.example", "content-type": "application/json"}
            r = await c.post(f"/__motia/dead-letters/{dead.id}/retry", headers=cross)
            assert r.status_code == 403
            form = {"content-type": "text/plain"}
            assert (await c.post(f"/__motia/dead-letters/{dead.id}/retry", headers=form)).status_code == 415
            assert (await c.request("DELETE", f"/__motia/dead-letters/{dead.id}", headers=form)).status_code == 415
            assert [d.id for d in app.dead_letters()] == [dead.id]  # nothing was retried or dropped
            # The same requests from the page itself still work.
            assert (await c.get("/__motia/dead-letters")).json()[0]["id"] == dead.id
            assert (await c.request("DELETE", f"/__motia/dead-letters/{dead.id}", headers=J)).status_code == 204
            assert app.dead_letters() == []


async def test_a_step_whose_name_holds_a_slash_is_invoked_from_the_workbench(tmp_path: Path) -> None:
    (tmp_path / "a.step.py").write_text(
        'config = {"name": "orders/create", "triggers": [{"type": "event", "topic": "x"}]}\n'
        "def handler(d, ctx):\n    return {'got': d}\n"
    )
    async with App.from_directory(tmp_path, state=ms.MemoryStateAdapter()) as app:
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as c:
            # The page encodes the name (encodeURIComponent): the slash arrives as %2F.
            for name in ("orders%2Fcreate", "orders/create"):
                r = await c.post(f"/__motia/steps/{name}/invoke", content=json.dumps({"data": 1}), headers=J)
                assert r.status_code == 200 and r.json()["result"] == {"got": 1}, (name, r.text)
            r = await c.post("/__motia/steps/orders%2Fnope/invoke", content=json.dumps({"data": 1}), headers=J)
            assert r.status_code == 404 and "orders/nope" in r.json()["error"]
