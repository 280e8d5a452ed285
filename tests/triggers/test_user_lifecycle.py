"""examples/user-lifecycle end to end: the dev server over HTTP, chains of state triggers, the store checked exactly."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

import motia_state as ms
from motia_state.runtime import call_step_file

from ..app.devserver import DevServer
from ..helpers import require_tool

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "user-lifecycle"
STATE_TRIGGERS = {
    "AutoTierPromoter",
    "InventoryManager#0",
    "InventoryManager#1",
    "NotificationCleaner",
    "ScoreAchievementMonitor",
    "TierMonitor",
    "UserGroupManager",
}


async def read_store(path: Path) -> dict[str, dict[str, Any]]:
    async with ms.FileStateAdapter(str(path)) as store:
        return {g: {k: await store.get(g, k) for k in await store.keys(g)} for g in await store.groups()}


def wait_until_settled(server: DevServer, timeout: float = 60.0) -> None:
    """Wait until every state trigger has handled every change in the feed.

    The triggers' positions are read before the feed's newest cursor: when
    every position is that cursor, each change up to it was handled, and
    the writes of those handlers (done before a change counts as handled)
    are in the feed already, so nothing more is coming. A dead letter fails
    at once: it would never settle into the expected state.
    """
    deadline = time.monotonic() + timeout
    while True:
        listed = server.client.get("/__motia/triggers").json()["triggers"]
        last = server.client.get("/__motia/state/feed").json()["last"]
        triggers = {t["name"]: t for t in listed if t["kind"] == "state"}
        assert set(triggers) == STATE_TRIGGERS, triggers
        dead = {name: t["dead"] for name, t in triggers.items() if t["dead"]}
        assert not dead, f"dead letters: {dead}\n{server.output()}"
        if all(t["position"] == last for t in triggers.values()):
            return
        assert time.monotonic() < deadline, f"the triggers never caught up with {last}: {triggers}\n{server.output()}"
        time.sleep(0.05)


def notice(old: str, new: str) -> dict[str, str]:
    return {"type": "tier_change", "from": old, "to": new}


BENEFITS = {
    "bronze": {"tier": "bronze", "multiplier": 1.0, "dailyBonus": 10},
    "gold": {"tier": "gold", "multiplier": 1.5, "dailyBonus": 50},
    "platinum": {"tier": "platinum", "multiplier": 2.0, "dailyBonus": 100},
}

EXPECTED: dict[str, dict[str, Any]] = {
    "ann": {
        "user.profile": {"name": "Ann"},
        "user.status": "active",
        "user.score": 1020,  # 120 + 400 + 500, then a penalty of 30 undone
        "user.recentScores": [
            {"delta": 120, "reason": "quiz"},
            {"delta": 400, "reason": "tournament"},
            {"delta": 500, "reason": "season"},
        ],
        "user.corrections": [{"undone": {"delta": -30, "reason": "penalty"}, "score": 1020}],
        "user.stats": {"lastUndone": {"delta": -30, "reason": "penalty"}},  # the undo deleted lastChange
        "user.tier": "platinum",
        "user.tierHistory": [
            {"to": "silver", "by": "auto", "score": 120},
            {"to": "gold", "by": "auto", "score": 520},
            {"to": "platinum", "by": "auto", "score": 1020},
        ],
        "user.benefits": BENEFITS["platinum"],
        # Four notifications, the newest three kept: the welcome was cleaned.
        "user.notifications": [notice("bronze", "silver"), notice("silver", "gold"), notice("gold", "platinum")],
        # 120 reached two at once; the 990 and 1020 after the legend granted nothing again.
        "user.achievements": {
            "rookie": {"score": 120},
            "century": {"score": 120},
            "high-roller": {"score": 520},
            "legend": {"score": 1020},
        },
    },
    "bob": {  # registered at 150: the registration itself starts the chains; never scored over the API
        "user.profile": {"name": "Bob"},
        "user.status": "new",
        "user.score": 150,
        "user.tier": "gold",  # silver by the promoter, gold by an admin
        "user.tierHistory": [{"to": "silver", "by": "auto", "score": 150}, {"to": "gold", "by": "admin"}],
        "user.benefits": BENEFITS["gold"],
        "user.notifications": [
            {"type": "welcome", "name": "Bob"},
            notice("bronze", "silver"),
            notice("silver", "gold"),
        ],
        "user.achievements": {"rookie": {"score": 150}, "century": {"score": 150}},
    },
    "cy": {  # six daily scores; the recent list keeps five
        "user.profile": {"name": "Cy"},
        "user.status": "active",
        "user.score": 105,
        "user.recentScores": [{"delta": d, "reason": f"day {d // 5}"} for d in (10, 15, 20, 25, 30)],
        "user.stats": {"lastChange": {"delta": 30, "reason": "day 6", "score": 105}},
        "user.tier": "bronze",  # silver at 105, then an admin took it back
        "user.tierHistory": [{"to": "silver", "by": "auto", "score": 105}, {"to": "bronze", "by": "admin"}],
        "user.benefits": BENEFITS["bronze"],
        "user.notifications": [
            {"type": "welcome", "name": "Cy"},
            notice("bronze", "silver"),
            notice("silver", "bronze"),
        ],
        "user.achievements": {"rookie": {"score": 50}, "century": {"score": 105}},
    },
    "dee": {  # below every threshold: no condition holds, nothing but the group manager runs
        "user.profile": {"name": "Dee"},
        "user.status": "new",
        "user.score": 0,
        "user.tier": "bronze",
        "user.notifications": [{"type": "welcome", "name": "Dee"}],
    },
    # UserGroupManager: one group per tier, its members as keys (tier:silver was emptied).
    "tier:bronze": {"cy": {"userId": "cy"}, "dee": {"userId": "dee"}},
    "tier:gold": {"bob": {"userId": "bob"}},
    "tier:platinum": {"ann": {"userId": "ann"}},
    # InventoryManager: coins and badges per achievement, boosts per tier (silver 1, gold 3, platinum 5).
    "inventory:ann": {
        "coins": 760,
        "badges": ["rookie", "century", "high-roller", "legend"],
        "boosts": 5,
        "boostTier": "platinum",
    },
    "inventory:bob": {"coins": 60, "badges": ["rookie", "century"], "boosts": 3, "boostTier": "gold"},
    "inventory:cy": {
        "coins": 60,
        "badges": ["rookie", "century"],
        "boosts": 0,
        "boostTier": "bronze",
    },  # +1 for silver, -1 back to bronze
}


async def test_user_lifecycle(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    store = tmp_path / "state"
    with DevServer(EXAMPLE, "--state", f"file:{store}").start(tmp_path) as server:
        client = server.client
        out = server.wait_output("workbench: ")
        summary = out.split("  state triggers:\n", 1)[1].split("  workbench: ", 1)[0]
        assert summary.splitlines() == [
            "    AutoTierPromoter: */user.score (condition)",
            "    InventoryManager#0: */user.achievements (condition)",
            "    InventoryManager#1: */user.tier",
            "    NotificationCleaner: */user.notifications (condition)",
            "    ScoreAchievementMonitor: */user.score (condition)",
            "    TierMonitor: */user.tier (condition)",
            "    UserGroupManager: */user.tier",
        ]

        # Registration: one guarded transaction per user.
        for user, name, score in [("ann", "Ann", 0), ("bob", "Bob", 150), ("cy", "Cy", 0), ("dee", "Dee", 0)]:
            r = client.post("/lifecycle/users", json={"userId": user, "name": name, "initialScore": score})
            assert (r.status_code, r.json()) == (
                201,
                {"userId": user, "status": "new", "tier": "bronze", "score": score},
            )
        r = client.post("/lifecycle/users", json={"userId": "ann", "name": "Again"})
        assert (r.status_code, r.json()) == (409, {"error": "user ann is already registered", "code": "CONFLICT"})
        assert client.post("/lifecycle/users", json={"name": "Nobody"}).status_code == 400

        # Scores: ann climbs through every tier, cy scores daily past the recent list's cap.
        for delta, reason, total in [(120, "quiz", 120), (400, "tournament", 520), (500, "season", 1020)]:
            r = client.post("/lifecycle/users/ann/score", json={"delta": delta, "reason": reason})
            assert r.json() == {"userId": "ann", "score": total}
        for day, total in enumerate([5, 15, 30, 50, 75, 105], start=1):
            r = client.post("/lifecycle/users/cy/score", json={"delta": 5 * day, "reason": f"day {day}"})
            assert r.json() == {"userId": "cy", "score": total}
        assert client.post("/lifecycle/users/zed/score", json={"delta": 1}).status_code == 404
        for bad in [{"delta": "x"}, {"delta": 0}, {"delta": 1.5}, {"delta": 5, "reason": 7}, {}]:
            assert client.post("/lifecycle/users/ann/score", json=bad).status_code == 400, bad
        wait_until_settled(server)  # cy is silver now: the admin below names the tier they see

        # A penalty and its undo; an undo with nothing to undo.
        r = client.post("/lifecycle/users/ann/score", json={"delta": -30, "reason": "penalty"})
        assert r.json() == {"userId": "ann", "score": 990}
        r = client.delete("/lifecycle/users/ann/score/last")
        assert (r.status_code, r.json()) == (
            200,
            {"userId": "ann", "score": 1020, "undone": {"delta": -30, "reason": "penalty"}},
        )
        r = client.delete("/lifecycle/users/bob/score/last")
        assert (r.status_code, r.json()) == (404, {"error": "no score change of bob to undo"})
        assert client.delete("/lifecycle/users/zed/score/last").status_code == 404

        # The admin's tier updates, guarded by the tier they expect.
        r = client.put("/lifecycle/users/bob/tier", json={"tier": "gold", "expectedTier": "silver"})
        assert (r.status_code, r.json()) == (200, {"userId": "bob", "tier": "gold", "previousTier": "silver"})
        r = client.put("/lifecycle/users/bob/tier", json={"tier": "platinum", "expectedTier": "silver"})  # stale
        assert (r.status_code, r.json()) == (
            409,
            {"error": "the tier of bob is no longer silver: read it again and retry", "code": "CONFLICT"},
        )
        r = client.put("/lifecycle/users/cy/tier", json={"tier": "bronze", "expectedTier": "silver"})
        assert (r.status_code, r.json()) == (200, {"userId": "cy", "tier": "bronze", "previousTier": "silver"})
        r = client.put("/lifecycle/users/zed/tier", json={"tier": "gold", "expectedTier": "bronze"})
        assert (r.status_code, r.json()) == (404, {"error": "no user zed", "code": "NOT_FOUND"})
        for bad in [{"tier": "diamond", "expectedTier": "gold"}, {"tier": "gold"}, None]:
            assert client.put("/lifecycle/users/bob/tier", json=bad).status_code == 400, bad

        wait_until_settled(server)
        assert await read_store(store) == EXPECTED
        assert server.stop(signal.SIGTERM) == 0
    assert await read_store(store) == EXPECTED


async def test_concurrent_score_changes_lose_nothing(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    store = tmp_path / "state"
    with DevServer(EXAMPLE, "--state", f"file:{store}").start(tmp_path) as server:
        assert server.client.post("/lifecycle/users", json={"userId": "eve", "name": "Eve"}).status_code == 201
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:

            async def call(method: str, path: str, body: Any = None) -> None:
                answers.append(await client.request(method, path, json=body))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(call, "POST", "/lifecycle/users/eve/score", {"delta": 10, "reason": f"r{i}"})
            scored, answers[:] = answers[:], []
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(call, "DELETE", "/lifecycle/users/eve/score/last")
            undone = answers
        # Each increment and each pop is atomic: every answer saw its own score, every undo its own change.
        assert sorted(r.json()["score"] for r in scored) == list(range(10, 210, 10))
        assert sorted(r.json()["score"] for r in undone) == [150, 160, 170, 180, 190]
        reasons = sorted(r.json()["undone"]["reason"] for r in undone)
        assert len(set(reasons)) == 5
        wait_until_settled(server)
        assert server.stop(signal.SIGTERM) == 0
    assert server.stderr.count("user activated") == 1  # the compare-and-swap from "new" won once
    state = await read_store(store)
    corrections = state["eve"].pop("user.corrections")
    assert sorted(c["undone"]["reason"] for c in corrections) == reasons
    assert sorted(c["score"] for c in corrections) == [150, 160, 170, 180, 190]
    last_undone = state["eve"].pop("user.stats")
    assert list(last_undone) == ["lastUndone"] and last_undone["lastUndone"]["reason"] in reasons
    assert state == {
        "eve": {
            "user.profile": {"name": "Eve"},
            "user.status": "active",
            "user.score": 150,
            # 20 pushes, one shift for each past five: five left, which the five undos popped.
            "user.recentScores": [],
            "user.tier": "silver",
            "user.tierHistory": [{"to": "silver", "by": "auto", "score": 100}],
            "user.benefits": {"tier": "silver", "multiplier": 1.2, "dailyBonus": 25},
            "user.notifications": [{"type": "welcome", "name": "Eve"}, notice("bronze", "silver")],
            # The increments committed 10, 20, ... 200 in order: each achievement records the score that reached it.
            "user.achievements": {"rookie": {"score": 50}, "century": {"score": 100}},
        },
        "tier:silver": {"eve": {"userId": "eve"}},
        "inventory:eve": {"coins": 60, "badges": ["rookie", "century"], "boosts": 1, "boostTier": "silver"},
    }


async def test_inventory_manager_pays_once_when_a_change_is_delivered_twice() -> None:
    """Triggers deliver at least once: the same change handled twice must not pay twice."""
    step = EXAMPLE / "steps" / "inventory-manager.step.py"
    state = ms.StateManager(ms.MemoryStateAdapter())
    achievements = {
        "group": "zed",
        "key": "user.achievements",
        "op": "set",
        "event": "updated",
        "oldValue": {"rookie": 1},
        "value": {"rookie": 1, "century": 2},
    }
    promotion = {"group": "zed", "key": "user.tier", "op": "compareAndSwap", "event": "updated"}
    changes = [
        achievements,
        achievements,
        {**promotion, "oldValue": "bronze", "value": "silver"},
        {**promotion, "oldValue": "bronze", "value": "silver"},
        {**promotion, "oldValue": "silver", "value": "gold"},
        {**promotion, "oldValue": "silver", "value": "gold"},
    ]
    for change in changes:
        await call_step_file(step, data=change, trace_id="redelivery", state=state)
    inventory = {key: await state.get("inventory:zed", key) for key in await state.keys("inventory:zed")}
    assert inventory == {
        "coins": 50,
        "badges": ["century"],
        "boosts": 3,
        "boostTier": "gold",
    }
