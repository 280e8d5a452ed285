"""A retry asked through the store (CLI, standalone workbench) while something else settles the dead letter."""

from __future__ import annotations

import anyio

import motia_state as ms
from motia_state.records import Change
from motia_state.triggers import TriggerRunner
from motia_state.triggers.store import TriggerStore


async def test_a_waiter_whose_request_was_settled_by_an_api_retry_hears_the_dead_letter_is_gone() -> None:
    adapter = ms.MemoryStateAdapter()
    state = ms.StateManager(adapter)
    healthy = {"ok": False}

    async def handler(change: Change) -> None:
        if not healthy["ok"]:
            raise RuntimeError("boom")

    async with TriggerRunner(state, partitions=1, backoff=0.01, lease=1.0, attempts=1) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await state.set("g", "k", 1)
        with anyio.fail_after(5):
            while not triggers.dead_letters("t"):
                await anyio.sleep(0.01)
        dead = triggers.dead_letters("t")[0].id
        healthy["ok"] = True
        store = TriggerStore(adapter)
        request = await store.request_retry("t", dead)  # `motia-state triggers retry t ID` asked ...
        assert await triggers.retry("t", dead) is True  # ... and the app's own retry ran it first
        outcome = await store.await_retry("t", dead, request, wait=2.0, poll=0.05)
        assert outcome == {"state": "gone"}
        assert await store.retry_request("t", dead) is None


async def test_a_waiter_gets_the_outcome_a_running_runtime_recorded_and_closes_it() -> None:
    adapter = ms.MemoryStateAdapter()
    state = ms.StateManager(adapter)
    async with TriggerRunner(state, partitions=1, backoff=0.01, lease=0.6, attempts=1) as triggers:
        fails = {"n": 0}

        async def handler(change: Change) -> None:
            fails["n"] += 1
            raise RuntimeError(f"boom {fails['n']}")

        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await state.set("g", "k", 1)
        with anyio.fail_after(5):
            while not triggers.dead_letters("t"):
                await anyio.sleep(0.01)
        dead = triggers.dead_letters("t")[0].id
        store = TriggerStore(adapter)
        request = await store.request_retry("t", dead)
        outcome = await store.await_retry("t", dead, request, wait=10.0, poll=0.05)
        assert outcome["state"] == "failed" and "boom 2" in outcome["error"]
        assert await store.retry_request("t", dead) is None, "the outcome was closed once read"
        assert [d.id for d in triggers.dead_letters("t")] == [dead]
