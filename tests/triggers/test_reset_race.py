"""A reset asked from outside (the CLI's TriggerStore) while a runtime runs is not lost when that runtime saves its old positions."""

from __future__ import annotations

from collections.abc import Callable

import anyio

import motia_state as ms
from motia_state.records import Change
from motia_state.triggers import TriggerRunner
from motia_state.triggers.store import TriggerStore


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


async def test_a_reset_made_while_a_runtime_runs_survives_that_runtime_closing_before_it_syncs() -> None:
    adapter = ms.MemoryStateAdapter()
    state = ms.StateManager(adapter)
    seen: list[Change] = []

    async def handler(change: Change) -> None:
        seen.append(change)

    trigger = {"type": "state", "key": "k", "from": "start"}
    # A long lease: the runtime does not look at the store's requests before it closes.
    async with TriggerRunner(state, partitions=1, backoff=0.01, lease=30.0) as triggers:
        await triggers.add("t", trigger, handler)
        for i in range(3):
            await state.set("g", "k", i)
        await until(lambda: len(seen) == 3)
        await anyio.sleep(0.7)  # saved
        await TriggerStore(adapter).request_reset("t", "start", 1)  # `motia-state triggers reset t --to start`
        await state.set("g", "k", 3)  # the runtime goes on meanwhile
        await until(lambda: len(seen) == 4)
    # The reset's position (the feed's start) is still what the store holds.
    assert await TriggerStore(adapter).position("t", 0, "unset") is None
    seen.clear()
    async with TriggerRunner(state, partitions=1, backoff=0.01, lease=30.0) as triggers:
        await triggers.add("t", trigger, handler)
        # Reset to the start: every retained change is handled again.
        await until(lambda: len(seen) == 4, timeout=3.0)
    assert [c.new_value for c in seen] == [0, 1, 2, 3]


async def test_a_reset_whose_positions_a_runtime_saved_over_before_the_request_landed_survives_it_closing() -> None:
    adapter = ms.MemoryStateAdapter()
    state = ms.StateManager(adapter)
    seen: list[Change] = []

    async def handler(change: Change) -> None:
        seen.append(change)

    trigger = {"type": "state", "key": "k", "from": "start"}
    store = TriggerStore(adapter)
    async with TriggerRunner(state, partitions=1, backoff=0.01, lease=30.0) as triggers:
        await triggers.add("t", trigger, handler)
        for i in range(3):
            await state.set("g", "k", i)
        await until(lambda: len(seen) == 3)
        await anyio.sleep(0.7)
        # request_reset in two halves, the runtime's periodic save in between:
        await store.save_position("t", 0, None)
        await state.set("g", "k", 3)
        await until(lambda: len(seen) == 4)
        await anyio.sleep(0.7)  # the runtime saved its position over the reset's
        await adapter.internal.set("__motia/triggers/t", "reset", {"id": "r1", "to": "start", "cursor": None, "at": 0})
    assert await store.position("t", 0, "unset") is None
