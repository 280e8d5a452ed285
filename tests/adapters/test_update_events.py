"""``update`` reports op "update" in its change events on every adapter, sync fn or async."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms

from ..helpers import RedisServer


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


def _raise(v: Any) -> Any:
    raise RuntimeError("Test error")


async def test_an_update_fn_raising_in_a_transaction_is_update_failed_and_stores_nothing(
    manager: ms.StateManager,
) -> None:
    seen: list[str] = []
    manager.on_change(lambda c: seen.append(c.key))
    result = await manager.transaction(
        "g",
        [
            {"type": "set", "key": "a", "value": 1},
            {"type": "update", "key": "b", "updateFn": _raise},
            {"type": "set", "key": "c", "value": 3},
        ],
    )
    assert result.success is False and result.failed_index == 1 and result.code == "UPDATE_FAILED"
    assert result.error is not None and "Test error" in result.error
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "Test error"
    assert result.to_wire() == {
        "success": False,
        "results": [],
        "error": result.error,
        "failedIndex": 1,
        "code": "UPDATE_FAILED",
    }
    assert await manager.keys("g") == [] and seen == []


async def test_an_update_fn_raising_in_a_batch_fails_its_item_the_rest_run_and_events_fire_at_once(
    manager: ms.StateManager,
) -> None:
    seen: list[tuple[str, str]] = []
    manager.on_change(lambda c: seen.append((c.key, c.event)))
    result = await manager.batch(
        "g",
        [
            {"type": "set", "key": "a", "value": 1, "id": "first"},
            {"type": "update", "key": "b", "updateFn": _raise, "id": "second"},
            {"type": "update", "key": "c", "updateFn": lambda v: 3},
        ],
    )
    first, second, third = result.results
    assert (first.id, first.value) == ("first", 1)
    assert (second.id, second.code) == ("second", "UPDATE_FAILED")
    assert second.error is not None and "Test error" in second.error
    assert third.value == 3
    # The committed records' events are delivered before batch() returns, not at some later write.
    assert seen == [("a", "created"), ("c", "created")]
    assert await manager.keys("g") == ["a", "c"]
