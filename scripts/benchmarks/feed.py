"""Suite ``feed``: what the change feed costs a write, feed on (the default) vs off (``feed_retention=0``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import motia_state as ms

from .harness import Options, best_of, report, timed

DEFAULT_N = 50_000

Factory = Callable[[int], ms.StateAdapter]


def _sets(n: int, make: Factory, retention: int) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        adapter = make(retention)
        value = {"status": "active", "score": 1}
        for i in range(n):
            await adapter.set("g", f"k{i % 100}", value)
        await adapter.close()

    return run


def _increments(n: int, make: Factory, retention: int) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        adapter = make(retention)
        for _ in range(n):
            await adapter.increment("g", "n")
        await adapter.close()

    return run


def run(options: Options) -> None:
    """Sets of a small object (100 keys) and increments of one key, memory and file (fsync "batch"), feed on vs off."""
    n, rounds = options.n, options.rounds
    where = tempfile.mkdtemp(prefix="motia-bench-feed-", dir=options.where)
    counter = [0]

    def memory(retention: int) -> ms.StateAdapter:
        return ms.MemoryStateAdapter(feed_retention=retention)

    def file(retention: int) -> ms.StateAdapter:
        counter[0] += 1  # a fresh store each round: no round reads another's log
        return ms.FileStateAdapter(f"{where}/s{counter[0]}", feed_retention=retention)

    contenders: dict[str, Callable[[], float]] = {}
    ratios: list[tuple[str, str, str]] = []
    for adapter_name, make in (("memory", memory), ("file", file)):
        for op_name, workload in (("set", _sets), ("increment", _increments)):
            off = f"{adapter_name} {op_name}, feed off"
            on = f"{adapter_name} {op_name}, feed on"
            contenders[off] = timed(n, workload(n, make, 0))
            contenders[on] = timed(
                n, workload(n, make, ms.MemoryStateAdapter.__init__.__kwdefaults__["feed_retention"])
            )
            ratios.append((f"{adapter_name} {op_name}: off/on (target <= 1.3)", off, on))
    try:
        results = best_of(rounds, contenders)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    report(f"feed: {n:,} sequential writes per contender, best of {rounds}", results, ratios)
