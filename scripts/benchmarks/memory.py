"""Suite ``memory``: sequential increments of one key through each layer over a plain dict."""

from __future__ import annotations

import motia_state as ms

from .harness import Options, best_of, report, timed

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

    results = best_of(
        rounds,
        {
            "(a) plain dict in async def": timed(n, plain_dict),
            "(b) MemoryStateAdapter": timed(n, bare),
            "(c) StateManager, no listeners": timed(n, manager),
            "(d) StateManager + listener + observer": timed(n, observed),
        },
    )
    report(
        f"memory: {n:,} sequential increments of one key, best of {rounds}",
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
