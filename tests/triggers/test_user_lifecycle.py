"""examples/user-lifecycle end to end: the dev server over HTTP, a chain of state triggers, the store checked exactly."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio

import motia_state as ms

from ..app.devserver import DevServer
from ..helpers import require_tool

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "user-lifecycle"


async def read_store(path: Path) -> dict[str, dict[str, Any]]:
    async with ms.FileStateAdapter(str(path)) as store:
        return {g: {k: await store.get(g, k) for k in await store.keys(g)} for g in await store.groups()}


async def test_user_lifecycle(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    store = tmp_path / "state"
    expected = {
        "ann": {
            "user.profile": {"name": "Ann"},
            "user.score": 520,
            "user.tier": "gold",
            "user.benefits": {"tier": "gold", "multiplier": 1.5, "dailyBonus": 50},
            "user.notifications": [
                {"type": "tier_upgrade", "from": "bronze", "to": "silver"},
                {"type": "tier_upgrade", "from": "silver", "to": "gold"},
            ],
        },
        "bob": {  # registered at 150: the registration itself starts the chain
            "user.profile": {"name": "Bob"},
            "user.score": 150,
            "user.tier": "silver",
            "user.benefits": {"tier": "silver", "multiplier": 1.2, "dailyBonus": 25},
            "user.notifications": [
                {"type": "welcome", "name": "Bob"},
                {"type": "tier_upgrade", "from": "bronze", "to": "silver"},
            ],
        },
        "cy": {  # below every threshold: no trigger's condition holds
            "user.profile": {"name": "Cy"},
            "user.score": 40,
            "user.tier": "bronze",
            "user.notifications": [{"type": "welcome", "name": "Cy"}],
        },
    }
    with DevServer(EXAMPLE, "--state", f"file:{store}").start(tmp_path) as server:
        out = server.wait_output("workbench: ")
        assert "AutoTierPromoter: */user.score (condition)" in out
        for user, name, score in [("ann", "Ann", 0), ("bob", "Bob", 150), ("cy", "Cy", 0)]:
            r = server.client.post("/lifecycle/users", json={"userId": user, "name": name, "initialScore": score})
            assert r.status_code == 201, r.text
        assert server.client.post("/lifecycle/users", json={"userId": "ann", "name": "Again"}).status_code == 409
        assert server.client.post("/lifecycle/users", json={"name": "Nobody"}).status_code == 400
        for user, delta, score in [("ann", 120, 120), ("cy", 40, 40), ("ann", 400, 520)]:
            r = server.client.post(f"/lifecycle/users/{user}/score", json={"delta": delta})
            assert r.json() == {"userId": user, "score": score}
        assert server.client.post("/lifecycle/users/zed/score", json={"delta": 1}).status_code == 404
        assert server.client.post("/lifecycle/users/ann/score", json={"delta": "x"}).status_code == 400
        with anyio.fail_after(30):
            while await read_store(store) != expected:
                await anyio.sleep(0.2)
        await anyio.sleep(1.0)  # and no write that should not happen
        assert server.stop(signal.SIGTERM) == 0
    assert await read_store(store) == expected
