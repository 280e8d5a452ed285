"""Suite ``feed``: what the change feed costs a write, feed on (the default) vs off (``feed_retention=0``)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

import motia_state as ms

from .harness import Options, report

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

    contenders: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
    ratios: list[tuple[str, str, str]] = []
    default = ms.MemoryStateAdapter.__init__.__kwdefaults__["feed_retention"]
    for adapter_name, make in (("memory", memory), ("file", file)):
        for op_name, workload in (("set", _sets), ("increment", _increments)):
            off = f"{adapter_name} {op_name}, feed off"
            on = f"{adapter_name} {op_name}, feed on"
            contenders[off] = workload(n, make, 0)
            contenders[on] = workload(n, make, default)
            ratios.append((f"{adapter_name} {op_name}: off/on (target <= 1.3)", off, on))
    # Wall time and this process's CPU time of the same runs: the CPU time
    # is what the other processes on a shared machine disturb least.
    wall = dict.fromkeys(contenders, 0.0)
    cpu = dict.fromkeys(contenders, 0.0)
    try:
        for _ in range(rounds):
            for name, fn in contenders.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                asyncio.run(fn())
                wall[name] = max(wall[name], n / (time.perf_counter() - start))
                cpu[name] = max(cpu[name], n / max(time.process_time() - start_cpu, 1e-9))
    finally:
        shutil.rmtree(where, ignore_errors=True)
    report(f"feed: {n:,} sequential writes per contender, best of {rounds} (wall time)", wall, ratios)
    report(f"feed: the same runs in process CPU time (best of {rounds})", cpu, ratios)
