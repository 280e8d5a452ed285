"""Suite ``listing``: the workbench's first page on a store of 100 entries vs 100,000.

Each contender answers ``GET /__motia/state?limit=100`` (and the same with a
filter) through the real endpoint over httpx's in-process transport, on the
memory and the file adapter and, when redis-server is installed, the Redis
adapter (one local server), with the entries in 1,000 groups of 100 keys
and in 100,000 groups of one key. ``-n`` is the requests per round.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import motia_state as ms
from motia_state.web import workbench_app

from .harness import Options, best_of, redis_server, report

DEFAULT_N = 300
FILTER = json.dumps({"op": "gte", "value": 0, "path": "/n"})


SIZES = (("100", 1, 100), ("100k 1000x100", 1000, 100), ("100k 100000x1", 100_000, 1))


async def _fill(adapter: ms.StateAdapter, groups: int, keys: int) -> None:
    async def one(g: int) -> None:
        await adapter.batch(
            f"group-{g:06d}", [{"type": "set", "key": f"key-{k:04d}", "value": {"n": k}} for k in range(keys)]
        )

    for start in range(0, groups, 100):  # a hundred groups at a time: Redis answers them together
        await asyncio.gather(*(one(g) for g in range(start, min(groups, start + 100))))


def run(options: Options) -> None:
    """First page (plain and filtered) of small and large stores: memory, file and Redis."""
    with redis_server() as server:
        _run(options, server.url if server is not None else None)


def _run(options: Options, redis_url: str | None) -> None:
    n, rounds = options.n, options.rounds
    root = Path(tempfile.mkdtemp(prefix="motia-listing-", dir=options.where))
    kept: list[ms.StateAdapter] = []
    # Each store as a factory called on the round's own event loop (a Redis
    # client belongs to the loop it was made on); memory and file are made once.
    stores: dict[str, Callable[[], ms.StateAdapter]] = {}
    kinds = ["memory", "file"] + (["redis"] if redis_url else [])
    try:
        for kind in kinds:
            for label, groups, keys in SIZES:
                if kind == "redis":
                    prefix = f"listing:{groups}x{keys}:"

                    def make(prefix: str = prefix) -> ms.StateAdapter:
                        return ms.RedisStateAdapter(redis_url or "", key_prefix=prefix)

                    factory: Callable[[], ms.StateAdapter] = make
                else:
                    adapter: ms.StateAdapter = (
                        ms.MemoryStateAdapter()
                        if kind == "memory"
                        else ms.FileStateAdapter(str(root / f"{groups}x{keys}"))
                    )
                    kept.append(adapter)
                    factory = lambda adapter=adapter: adapter  # noqa: E731

                async def fill(
                    factory: Callable[[], ms.StateAdapter] = factory, g: int = groups, k: int = keys
                ) -> None:
                    adapter = factory()
                    await _fill(adapter, g, k)
                    if isinstance(adapter, ms.RedisStateAdapter):
                        await adapter.close()

                asyncio.run(fill())
                stores[f"{kind} {label}"] = factory

        def contender(factory: Callable[[], ms.StateAdapter], query: str) -> Callable[[], float]:
            def once() -> float:
                async def go() -> float:
                    adapter = factory()
                    transport = httpx.ASGITransport(app=workbench_app(adapter))
                    try:
                        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                            first: Any = await client.get("/__motia/state?limit=100" + query)
                            assert first.status_code == 200 and len(first.json()) == 100, first.text[:200]
                            start = time.perf_counter()
                            for _ in range(n):
                                await client.get("/__motia/state?limit=100" + query)
                            return n / (time.perf_counter() - start)
                    finally:
                        if isinstance(adapter, ms.RedisStateAdapter):
                            await adapter.close()

                return asyncio.run(go())

            return once

        for title, query in (("first page, no filter", ""), ("first page, filter on /n", "&filter=" + FILTER)):
            results = best_of(rounds, {name: contender(f, query) for name, f in stores.items()})
            ratios = [
                (f"{kind} 100 / {label}", f"{kind} 100", f"{kind} {label}")
                for kind in kinds
                for label in ("100k 1000x100", "100k 100000x1")
            ]
            report(f"{title} (requests/s, limit=100)", results, ratios)
    finally:
        for adapter in kept:
            asyncio.run(adapter.close())
        shutil.rmtree(root, ignore_errors=True)
