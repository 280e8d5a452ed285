"""Suite ``triggers``: state-trigger latency (commit to handler start) and triggered invocations per second.

Latency: one change at a time; the value written is the wall-clock time
just before the write, and the handler's first act is to store how long
ago that was, so the figure covers the commit, the feed wake-up, the
dispatch and the invocation reaching the handler (a warm Python worker,
or an in-process coroutine for comparison). Throughput: ``n`` changes
over 64 entries committed at once, timed until every handler finished.
Stores: memory, file (fsync "batch") and, when redis-server is installed,
a throwaway local Redis.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

import motia_state as ms
from motia_state.records import Change
from motia_state.runtime import WorkerPool
from motia_state.triggers import TriggerRunner

from .harness import best_of, redis_server, report

DEFAULT_N = 200

LATENCY_STEP = """
import time

async def handler(change, ctx):
    started = time.time()
    await ctx.state.set("lat", change["group"], started - change["value"])
"""
TRIVIAL_STEP = "async def handler(change, ctx):\n    return None\n"


def _stores(tmp: str, redis_url: str | None) -> dict[str, Callable[[], ms.StateAdapter]]:
    counter = iter(range(1_000_000))
    stores: dict[str, Callable[[], ms.StateAdapter]] = {
        "memory": lambda: ms.MemoryStateAdapter(),
        "file": lambda: ms.FileStateAdapter(str(Path(tmp) / f"s{next(counter)}"), fsync="batch"),
    }
    if redis_url is not None:
        stores["redis"] = lambda: ms.RedisStateAdapter(redis_url, key_prefix=f"bench{next(counter)}:")
    return stores


async def _latency_step(adapter: ms.StateAdapter, step: Path, n: int) -> list[float]:
    state = ms.StateManager(adapter)
    samples: list[float] = []
    async with state, WorkerPool(state) as pool, TriggerRunner(state, pool) as triggers:
        await triggers.add("lat", {"type": "state", "key": "k"}, step)
        for i in range(n + 5):  # the first few warm the worker up
            group = f"g{i}"
            await state.set(group, "k", time.time())
            with anyio.fail_after(30):
                while (lat := await state.get("lat", group)) is None:
                    await anyio.sleep(0.0002)
            if i >= 5:
                samples.append(lat)
    return samples


async def _latency_coroutine(adapter: ms.StateAdapter, n: int) -> list[float]:
    state = ms.StateManager(adapter)
    samples: list[float] = []
    started = anyio.Event()

    async def handler(change: Change) -> None:
        samples.append(time.time() - change.new_value)
        started.set()

    async with state, TriggerRunner(state) as triggers:
        await triggers.add("lat", {"type": "state", "key": "k"}, handler)
        for i in range(n):
            started = anyio.Event()
            await state.set(f"g{i}", "k", time.time())
            with anyio.fail_after(30):
                await started.wait()
    return samples


async def _throughput(adapter: ms.StateAdapter, step: Path | None, n: int) -> float:
    state = ms.StateManager(adapter)
    async with state, WorkerPool(state, max_workers=8) as pool, TriggerRunner(state, pool) as triggers:

        async def nothing(change: Change) -> None:
            return None

        handler: Any = step if step is not None else nothing
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        if step is not None:  # start the workers first: the figure is about warm ones
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(lambda: pool.call(step, trace_id="warm"))
        start = time.perf_counter()
        for i in range(n):
            await state.set(f"g{i % 64}", "k", i)
        with anyio.fail_after(120):
            while triggers.status()[0]["handled"] < n:
                await anyio.sleep(0.001)
        return n / (time.perf_counter() - start)


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def run(options: Any) -> None:
    """Latency p50/p99 per store (warm Python step, coroutine) and triggered invocations/s."""
    n, rounds = options.n, options.rounds
    with tempfile.TemporaryDirectory() as tmp, redis_server() as server:
        latency_step = Path(tmp) / "latency.step.py"
        latency_step.write_text(LATENCY_STEP)
        trivial_step = Path(tmp) / "trivial.step.py"
        trivial_step.write_text(TRIVIAL_STEP)
        stores = _stores(tmp, server.url if server is not None else None)
        print(f"\ntriggers: latency from commit to handler start, {n} changes one at a time, all rounds pooled")
        for store, make in stores.items():
            for label, fn in (
                ("warm Python step", lambda make=make: _latency_step(make(), latency_step, n)),
                ("in-process coroutine", lambda make=make: _latency_coroutine(make(), n)),
            ):
                samples: list[float] = []
                for _ in range(rounds):
                    samples += anyio.run(fn)
                p50, p99 = _quantiles(samples)
                print(f"  {store + ':':<8}{label:<22} p50 {p50 * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms")

        contenders: dict[str, Callable[[], float]] = {}
        for store, make in stores.items():
            contenders[f"{store}: warm Python step"] = lambda make=make: anyio.run(
                _throughput, make(), trivial_step, n * 5
            )
            contenders[f"{store}: in-process coroutine"] = lambda make=make: anyio.run(_throughput, make(), None, n * 5)
        results = best_of(rounds, contenders)
    report(
        f"triggers: triggered invocations/s, {n * 5} changes over 64 entries committed at once; best of {rounds}",
        results,
        [],
    )
