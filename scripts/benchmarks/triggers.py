"""Suite ``triggers``: state-trigger latency (commit to handler start) and triggered invocations per second.

Latency: one change at a time; the value written is the wall-clock time
just before the write, and the handler's first act is to store how long
ago that was, so the figure covers the commit, the feed wake-up, the
dispatch and the invocation reaching the handler (a warm Python worker,
or an in-process coroutine for comparison). Throughput: ``n`` changes
over 64 entries committed at once, timed until every handler finished.
Stores: memory, file (fsync "batch") and, when redis-server is installed,
a throwaway local Redis.

Then the same figures with the writer in another process (file and Redis:
the stores that processes share): a child process commits the changes on
its own adapter of the store, one at a time on request for the latency
(the value it writes is its clock just before the write; both processes
read the same clock) or all at once for the throughput, and this process
runs the trigger runtime that reads them from the feed.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
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

# The writer in another process: one line in, one line out. "lat I" sets
# (gI, k) to its clock; "burst N" sets k in 64 groups N times in all.
WRITER = """
import json, sys, time
import anyio
from motia_state.adapters.factory import create_state_adapter

async def main():
    state = create_state_adapter(json.loads(sys.argv[1]))
    while line := await anyio.to_thread.run_sync(sys.stdin.readline):
        what, number = line.split()
        if what == "lat":
            await state.set("g" + number, "k", time.time())
        else:
            for i in range(int(number)):
                await state.set(f"g{i % 64}", "k", i)
        print("ok", flush=True)
    await state.close()

anyio.run(main)
"""

ROOT = Path(__file__).resolve().parents[2]


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


class _Writer:
    """The writer process on one store (``config`` as ``create_state_adapter`` takes it)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    async def ask(self, line: str) -> None:
        """Send one request and wait (in a thread) for its "ok"."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = await anyio.to_thread.run_sync(self.proc.stdout.readline)
        assert answer == "ok\n", answer

    def close(self) -> None:
        """Close its stdin: it closes its store and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def _remote_latency(config: dict[str, Any], step: Path | None, n: int) -> list[float]:
    """Latency of changes committed by the writer process, handled here (a warm step, or a coroutine if None)."""
    from motia_state.adapters.factory import create_state_adapter

    state = ms.StateManager(create_state_adapter(config))
    samples: list[float] = []
    started = anyio.Event()

    async def handler(change: Change) -> None:
        samples.append(time.time() - change.new_value)
        started.set()

    writer = _Writer(config)
    try:
        async with state, WorkerPool(state) as pool, TriggerRunner(state, pool) as triggers:
            await triggers.add("lat", {"type": "state", "key": "k"}, step if step is not None else handler)
            for i in range(n + 5):  # the first few warm the worker up
                started = anyio.Event()
                await writer.ask(f"lat {i}")
                with anyio.fail_after(30):
                    if step is None:
                        await started.wait()
                        continue
                    while (lat := await state.get("lat", f"g{i}")) is None:
                        await anyio.sleep(0.0002)
                if i >= 5:
                    samples.append(lat)
    finally:
        writer.close()
    return samples[5:] if step is None else samples


async def _remote_throughput(config: dict[str, Any], step: Path | None, n: int) -> float:
    """Triggered invocations/s of ``n`` changes that the writer process commits at once."""
    from motia_state.adapters.factory import create_state_adapter

    state = ms.StateManager(create_state_adapter(config))
    writer = _Writer(config)
    try:
        async with state, WorkerPool(state, max_workers=8) as pool, TriggerRunner(state, pool) as triggers:

            async def nothing(change: Change) -> None:
                return None

            await triggers.add("t", {"type": "state", "key": "k"}, step if step is not None else nothing)
            if step is not None:  # warm workers, as in the in-process figure
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(lambda: pool.call(step, trace_id="warm"))
            start = time.perf_counter()
            await writer.ask(f"burst {n}")
            with anyio.fail_after(120):
                while triggers.status()[0]["handled"] < n:
                    await anyio.sleep(0.001)
            return n / (time.perf_counter() - start)
    finally:
        writer.close()


def _remote_stores(tmp: str, redis_url: str | None) -> dict[str, Callable[[], dict[str, Any]]]:
    counter = iter(range(1_000_000))

    def file() -> dict[str, Any]:
        return {"adapter": "file", "path": str(Path(tmp) / f"r{next(counter)}"), "fsync": "batch"}

    def redis() -> dict[str, Any]:
        return {"adapter": "redis", "url": redis_url, "key_prefix": f"remote{next(counter)}:"}

    return {"file": file} if redis_url is None else {"file": file, "redis": redis}


def _remote_round(config: Callable[[], dict[str, Any]], step: Path | None, n: int) -> float:
    return anyio.run(_remote_throughput, config(), step, n)


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

        remote = _remote_stores(tmp, server.url if server is not None else None)
        print(f"\ntriggers, writer in another process: latency from commit to handler start, {n} changes")
        for store, config in remote.items():
            for label, step in (("warm Python step", latency_step), ("in-process coroutine", None)):
                samples = []
                for _ in range(rounds):
                    samples += anyio.run(_remote_latency, config(), step, n)
                p50, p99 = _quantiles(samples)
                print(f"  {store + ':':<8}{label:<22} p50 {p50 * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms")
        remote_contenders: dict[str, Callable[[], float]] = {}
        for store, config in remote.items():
            for label, step in (("warm Python step", trivial_step), ("in-process coroutine", None)):
                remote_contenders[f"{store}: {label}"] = functools.partial(_remote_round, config, step, n * 5)
        report(
            f"triggers, writer in another process: triggered invocations/s, {n * 5} changes; best of {rounds}",
            best_of(rounds, remote_contenders),
            [],
        )
