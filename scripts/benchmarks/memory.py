"""Suite ``memory``: sequential increments of one key through each layer over a plain dict."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import motia_state as ms

from .harness import Options, report

DEFAULT_N = 200_000


def run(options: Options) -> None:
    """Plain dict floor, bare MemoryStateAdapter, StateManager, StateManager with a listener and an observer."""
    n, rounds = options.n, options.rounds

    async def plain_dict() -> None:
        d: dict[str, dict[str, int]] = {"g": {}}

        async def increment(g: str, k: str, delta: int = 1) -> int:
            group = d[g]
            group[k] = value = group.get(k, 0) + delta
            return value

        for _ in range(n):
            await increment("g", "k")

    async def bare() -> None:
        adapter = ms.MemoryStateAdapter()
        for _ in range(n):
            await adapter.increment("g", "k")

    async def manager() -> None:
        m = ms.StateManager(ms.MemoryStateAdapter())
        for _ in range(n):
            await m.increment("g", "k")

    async def observed() -> None:
        seen = [0]

        def listener(change: ms.StateChange) -> None:
            seen[0] += 1

        m = ms.StateManager(ms.MemoryStateAdapter(), observers=[lambda r: None])
        m.on_change(listener)
        for _ in range(n):
            await m.increment("g", "k")
        assert seen[0] == n

    contenders: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "(a) plain dict in async def": plain_dict,
        "(b) MemoryStateAdapter": bare,
        "(c) StateManager, no listeners": manager,
        "(d) StateManager + listener + observer": observed,
    }
    # Wall time and this process's CPU time of the same runs: the CPU time
    # is what the other processes on a shared machine disturb least.
    wall = dict.fromkeys(contenders, 0.0)
    cpu = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, fn in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            asyncio.run(fn())
            wall[name] = max(wall[name], n / (time.perf_counter() - start))
            cpu[name] = max(cpu[name], n / max(time.process_time() - start_cpu, 1e-9))
    for title, results in (
        (f"memory: {n:,} sequential increments of one key, best of {rounds} (wall time)", wall),
        (f"memory: the same runs in process CPU time (best of {rounds})", cpu),
    ):
        _report(title, results)


def _report(title: str, results: dict[str, float]) -> None:
    report(
        title,
        results,
        [
            ("(a)/(b) floor over adapter (target <= 4)", "(a) plain dict in async def", "(b) MemoryStateAdapter"),
            (
                "(b)/(c) adapter over manager (target <= 1.5)",
                "(b) MemoryStateAdapter",
                "(c) StateManager, no listeners",
            ),
            (
                "(b)/(d) adapter over observed manager",
                "(b) MemoryStateAdapter",
                "(d) StateManager + listener + observer",
            ),
        ],
    )
