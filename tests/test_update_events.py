"""``update`` reports op "update" in its change events on every adapter, sync fn or async."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms

from .helpers import RedisServer


@pytest.fixture(params=["memory", "file", "redis"])
async def manager(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ms.StateManager]:
    if request.param == "memory":
        adapter: Any = ms.MemoryStateAdapter()
    elif request.param == "file":
        adapter = ms.FileStateAdapter(tmp_path / "store")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix: str = request.getfixturevalue("redis_prefix")
        adapter = ms.RedisStateAdapter(server.url, key_prefix=prefix)
    async with ms.StateManager(adapter) as m:
        yield m


async def test_update_events_say_update_for_sync_and_async_fns(manager: ms.StateManager) -> None:
    seen: list[tuple[str, str, str, Any, Any]] = []
    manager.on_change(lambda c: seen.append((c.key, c.op, c.event, c.old_value, c.new_value)))

    async def add_ten(v: Any) -> Any:
        return (v or 0) + 10

    assert await manager.update("g", "n", lambda v: (v or 0) + 1) == 1
    assert await manager.update("g", "n", add_ten) == 11
    assert await manager.compare_and_swap("g", "n", 11, 12) is True
    assert await manager.update("g", "n", lambda v: v) == 12  # stored again, unchanged: still an event
    assert seen == [
        ("n", "update", "created", None, 1),
        ("n", "update", "updated", 1, 11),
        ("n", "compareAndSwap", "updated", 11, 12),
        ("n", "update", "updated", 12, 12),
    ]
