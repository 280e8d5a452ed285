"""Change events: order, listeners that fail, are slow or write state."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import motia_state as ms


async def test_sync_and_async_listeners_get_each_change_in_commit_order() -> None:
    manager = ms.StateManager()
    sync_seen: list[tuple[str, str, Any]] = []
    async_seen: list[Any] = []

    async def on_async(change: ms.StateChange) -> None:
        await asyncio.sleep(0)
        async_seen.append(change.new_value)

    manager.on_change(lambda c: sync_seen.append((c.op, c.event, c.new_value)))
    manager.on_change(on_async)
    await asyncio.gather(*(manager.increment("g", "n") for _ in range(50)))
    assert [v for _, _, v in sync_seen] == list(range(1, 51))
    assert async_seen == list(range(1, 51))
    assert sync_seen[0][:2] == ("increment", "created")
    assert {e for _, e, _ in sync_seen[1:]} == {"updated"}


async def test_unsubscribe_stops_events() -> None:
    manager = ms.StateManager()
    seen: list[ms.StateChange] = []
    unsubscribe = manager.on_change(seen.append)
    await manager.set("g", "k", 1)
    unsubscribe()
    await manager.set("g", "k", 2)
    assert [c.new_value for c in seen] == [1]


async def test_a_failing_listener_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    manager = ms.StateManager()
    seen: list[Any] = []

    def broken(change: ms.StateChange) -> None:
        raise RuntimeError("listener bug")

    manager.on_change(broken)
    manager.on_change(lambda c: seen.append(c.new_value))
    with caplog.at_level(logging.ERROR, logger="motia_state"):
        assert await manager.set("g", "k", 1) == 1
    assert seen == [1]
    assert "listener bug" in caplog.text


async def test_listeners_cannot_change_stored_values() -> None:
    manager = ms.StateManager()
    manager.on_change(lambda c: c.new_value.append("evil"))
    await manager.set("g", "k", [1])
    assert await manager.get("g", "k") == [1]


async def test_listener_writing_state_does_not_deadlock() -> None:
    manager = ms.StateManager()

    async def mirror(change: ms.StateChange) -> None:
        if change.trace_id == "g":
            await manager.set("mirror", change.key, change.new_value)

    manager.on_change(mirror)
    await manager.set("g", "k", 1)
    assert await manager.get("mirror", "k") == 1
