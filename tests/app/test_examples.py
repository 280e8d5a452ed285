"""The example flows end to end: the real dev server, driven over HTTP, then the final state checked exactly."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import anyio

import motia_state as ms

from ..helpers import require_tool
from .devserver import DevServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def poll(fetch: Any, done: Any, timeout: float = 30.0) -> Any:
    """Call ``fetch()`` until ``done(value)``; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"never done: {value!r}"
        time.sleep(0.1)


async def read_store(path: Path) -> dict[str, dict[str, Any]]:
    """Every group of a file store: {group: {key: value}}."""
    async with ms.FileStateAdapter(str(path)) as store:
        out: dict[str, dict[str, Any]] = {}
        for group in await store.groups():
            out[group] = {key: await store.get(group, key) for key in await store.keys(group)}
        return out


async def test_parallel_merge(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    store = tmp_path / "state"
    with DevServer(EXAMPLES / "parallel-merge", "--state", f"file:{store}").start(tmp_path) as server:
        runs = {}
        for n in (1, 2, 3, 7, 10):
            r = server.client.post("/parallel-merge", json={"n": n})
            assert r.status_code == 202, r.text
            runs[r.json()["run"]] = n
        assert server.client.post("/parallel-merge", json={"n": "x"}).status_code == 400
        for run, n in runs.items():
            answer = poll(lambda run=run: server.client.get(f"/parallel-merge/{run}"), lambda r: r.status_code == 200)
            assert answer.json() == {
                "run": run,
                "status": "merged",
                "n": n,
                "parts": {"double": 2 * n, "offset": n + 100, "square": n * n},
                "total": 2 * n + n + 100 + n * n,
            }
        assert server.stop(signal.SIGTERM) == 0
    state = await read_store(store)
    assert state == {
        "merges": {
            run: {
                "n": n,
                "parts": {"double": 2 * n, "offset": n + 100, "square": n * n},
                "total": 2 * n + n + 100 + n * n,
            }
            for run, n in runs.items()
        }
    }


async def test_food_orders(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    store = tmp_path / "state"
    env = {"FOOD_ORDERS_AUDIT_CRON": "@every 1s"}
    with DevServer(EXAMPLES / "food-orders", "--state", f"file:{store}", env=env).start(tmp_path) as server:
        server.wait_output("@every 1s  -> StateAuditJob")  # the summary is printed once the port is bound
        r = server.client.post(
            "/basic-tutorial", json={"pet": {"name": "Rex", "photoUrl": "rex.png"}, "foodOrder": {"quantity": 2}}
        )
        assert r.status_code == 200
        pet = r.json()
        assert pet["id"] == "pet-1" and pet["name"] == "Rex" and pet["traceId"]
        # order-1 comes from the event; wait for it before placing the next, so the ids are known.
        poll(lambda: server.client.get("/notifications/test@test.com").json(), lambda v: len(v) >= 1)

        future = server.client.post(
            "/process-food-order",
            json={"email": "b@x.io", "quantity": 1, "petId": "pet-1", "shipDate": "2999-01-01T00:00:00Z"},
        )
        assert future.status_code == 200 and future.json()["order"]["id"] == "order-2"
        past = server.client.post(
            "/process-food-order",
            json={"email": "c@x.io", "quantity": 3, "petId": "pet-1", "shipDate": "2000-01-01T00:00:00Z"},
        )
        assert past.status_code == 200 and past.json()["order"]["id"] == "order-3"
        assert server.client.post("/process-food-order", json={"email": "x"}).status_code == 400

        done = server.client.put("/orders/order-2/complete")
        assert done.status_code == 200 and done.json()["complete"] is True and done.json()["status"] == "delivered"
        assert server.client.put("/orders/order-9/complete").status_code == 404

        # The audit warns about order-1 (shipped "now") and order-3 (long ago), once each.
        poll(lambda: server.client.get("/notifications/c@x.io").json(), lambda v: len(v) == 2)
        poll(lambda: server.client.get("/notifications/test@test.com").json(), lambda v: len(v) == 2)
        time.sleep(2.5)  # two more audits: they must not warn again
        out = server.stdout
        assert "StateAuditJob [cron] traceId=" in out and "ProcessFoodOrder [event process-food-order]" in out
        assert server.stop(signal.SIGTERM) == 0
    state = await read_store(store)
    order1 = state["orders"]["order-1"]
    assert isinstance(order1.pop("shipDate"), str)
    audits = state.pop("order-audits")
    assert sorted(audits) == ["order-1", "order-3"] and all(isinstance(v, str) for v in audits.values())
    notes = state.pop("notifications")
    assert sorted(n["templateId"] for n in notes["test@test.com"]) == ["new-order", "order-audit-warning"]
    assert [n["templateId"] for n in notes["b@x.io"]] == ["new-order"]
    assert sorted(n["templateId"] for n in notes["c@x.io"]) == ["new-order", "order-audit-warning"]
    warning = next(n for n in notes["c@x.io"] if n["templateId"] == "order-audit-warning")
    assert warning["templateData"] == {
        "orderId": "order-3",
        "status": "placed",
        "shipDate": "2000-01-01T00:00:00Z",
        "message": "Order is not complete and ship date is past",
    }
    assert state == {
        "counters": {"order": 3, "pet": 1},
        "food-per-pet": {"pet-1": 6},
        "orders": {
            "order-1": {
                "id": "order-1",
                "petId": "pet-1",
                "quantity": 2,
                "email": "test@test.com",
                "status": "placed",
                "complete": False,
            },
            "order-2": {
                "id": "order-2",
                "petId": "pet-1",
                "quantity": 1,
                "email": "b@x.io",
                "shipDate": "2999-01-01T00:00:00Z",
                "status": "delivered",
                "complete": True,
            },
            "order-3": {
                "id": "order-3",
                "petId": "pet-1",
                "quantity": 3,
                "email": "c@x.io",
                "shipDate": "2000-01-01T00:00:00Z",
                "status": "placed",
                "complete": False,
            },
        },
        "pets": {"pet-1": {"id": "pet-1", "name": "Rex", "photoUrl": "rex.png"}},
    }


def _triggers_installed() -> bool:
    try:
        import motia_state.triggers  # noqa: F401
    except ImportError:
        return False
    return True


async def test_user_management(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    store = tmp_path / "state"
    with DevServer(EXAMPLES / "user-management", "--state", f"file:{store}").start(tmp_path) as server:
        out = server.wait_output("workbench: ")
        assert "UserStatusMonitor: */user.status (condition)" in out
        assert "ScoreAchievementMonitor: */user.score (condition)" in out
        for user, status in [("ann", "inactive"), ("bob", "active"), ("ann", "active"), ("ann", "suspended")]:
            r = server.client.post("/set-user-status", json={"userId": user, "status": status})
            assert r.status_code == 200 and r.json()["status"] == status
        assert server.client.post("/set-user-status", json={"userId": "ann", "status": "gone"}).status_code == 400
        for user, change in [("ann", 60), ("bob", 10), ("ann", 50), ("ann", -20), ("ann", 30)]:
            assert server.client.post("/update-score", json={"userId": user, "scoreChange": change}).status_code == 200
        assert server.client.post("/update-score", json={"userId": "ann", "scoreChange": "x"}).status_code == 400
        r = server.client.post("/update-score", json={"userId": "bob", "scoreChange": 1})
        assert r.json() == {"message": "Score updated", "userId": "bob", "newScore": 11}
        if _triggers_installed():  # the monitors run after the commits: wait for their writes
            with anyio.fail_after(30):
                while len((await read_store(store)).get("ann", {})) < 4:
                    await anyio.sleep(0.2)
            await anyio.sleep(1.0)  # and for any write they should not make
        assert server.stop(signal.SIGTERM) == 0
    state = await read_store(store)
    expected: dict[str, Any] = {
        "ann": {"user.status": "suspended", "user.score": 120},
        "bob": {"user.status": "active", "user.score": 11},
    }
    if _triggers_installed():
        # ann went above 100 twice (110, then 120 after 90): the achievement keeps the first.
        expected["ann"]["user.achievements.high_score"] = {"achievementType": "high_score", "score": 110}
        expected["ann"]["user.welcome.email.sent"] = {"status": "active"}
        expected["bob"]["user.welcome.email.sent"] = {"status": "active"}
    assert state == expected
