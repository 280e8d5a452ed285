"""Atomicity between tasks, threads with their own loops, and trio."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio

import motia_state as ms


async def test_concurrent_increments_return_each_value_once(state: Any) -> None:
    results = await asyncio.gather(*(state.increment("g", "n") for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await state.get("g", "n") == 100


async def test_concurrent_pushes_keep_every_item(state: Any) -> None:
    await asyncio.gather(*(state.push("g", "q", i) for i in range(100)))
    assert sorted(await state.get("g", "q")) == list(range(100))


async def test_concurrent_cas_loops_count_exactly(state: Any) -> None:
    async def bump() -> None:
        while True:
            current = await state.get("g", "n")
            if await state.compare_and_swap("g", "n", current, (current or 0) + 1):
                return
            await asyncio.sleep(0)

    await asyncio.gather(*(bump() for _ in range(100)))
    assert await state.get("g", "n") == 100


def test_threads_with_their_own_event_loops_share_one_adapter() -> None:
    adapter = ms.MemoryStateAdapter()
    manager = ms.StateManager(adapter)
    got: list[list[int]] = []

    def worker() -> None:
        async def run() -> list[int]:
            out = []
            for _ in range(500):
                out.append(await manager.increment("g", "n"))
                await manager.push("g", "q", 1)
            return out

        got.append(asyncio.run(run()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for chunk in got for v in chunk) == list(range(1, 2001))
    assert len(asyncio.run(adapter.get("g", "q"))) == 2000


def test_transactions_from_threads_are_serializable() -> None:
    adapter = ms.MemoryStateAdapter()
    ops = [{"type": "increment", "key": "a"}, {"type": "decrement", "key": "b"}]

    def worker() -> None:
        async def run() -> None:
            for _ in range(300):
                result = await adapter.transaction("g", ops)
                assert result.success
                assert result.results[0] == -result.results[1]

        asyncio.run(run())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert asyncio.run(adapter.get_group("g")) == [900, -900]


def test_runs_under_trio() -> None:
    async def main() -> list[int]:
        manager = ms.StateManager()
        results: list[int] = []

        async def bump() -> None:
            results.append(await manager.increment("g", "n"))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(bump)
        assert await manager.update("g", "n", lambda n: n * 2) == 100
        return results

    assert sorted(anyio.run(main, backend="trio")) == list(range(1, 51))
