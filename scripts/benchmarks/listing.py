"""Suite ``listing``: the workbench's first page on a store of 100 entries vs 100,000.

Each contender answers ``GET /__motia/state?limit=100`` (and the same with a
filter) through the real endpoint over httpx's in-process transport, on the
memory and the file adapter, with the entries in 1,000 groups of 100 keys
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

from .harness import Options, best_of, report

DEFAULT_N = 300
FILTER = json.dumps({"op": "gte", "value": 0, "path": "/n"})


def _fill(adapter: ms.StateAdapter, groups: int, keys: int) -> None:
    async def fill() -> None:
        for g in range(groups):
            await adapter.batch(
                f"group-{g:06d}", [{"type": "set", "key": f"key-{k:04d}", "value": {"n": k}} for k in range(keys)]
            )

    asyncio.run(fill())


def run(options: Options) -> None:
    """First page (plain and filtered) of small and large stores, memory and file."""
    n, rounds = options.n, options.rounds
    root = Path(tempfile.mkdtemp(prefix="motia-listing-", dir=options.where))
    stores: dict[str, ms.StateAdapter] = {}
    try:
        for kind in ("memory", "file"):
            for label, groups, keys in (("100", 1, 100), ("100k 1000x100", 1000, 100), ("100k 100000x1", 100_000, 1)):
                adapter: ms.StateAdapter = (
                    ms.MemoryStateAdapter() if kind == "memory" else ms.FileStateAdapter(str(root / f"{groups}x{keys}"))
                )
                _fill(adapter, groups, keys)
                stores[f"{kind} {label}"] = adapter

        def contender(adapter: ms.StateAdapter, query: str) -> Callable[[], float]:
            app = workbench_app(adapter)

            def once() -> float:
                async def go() -> float:
                    transport = httpx.ASGITransport(app=app)
                    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                        first: Any = await client.get("/__motia/state?limit=100" + query)
                        assert first.status_code == 200 and len(first.json()) == 100, first.text[:200]
                        start = time.perf_counter()
                        for _ in range(n):
                            await client.get("/__motia/state?limit=100" + query)
                        return n / (time.perf_counter() - start)

                return asyncio.run(go())

            return once

        for title, query in (("first page, no filter", ""), ("first page, filter on /n", "&filter=" + FILTER)):
            results = best_of(rounds, {name: contender(a, query) for name, a in stores.items()})
            ratios = [
                (f"{kind} 100 / {label}", f"{kind} 100", f"{kind} {label}")
                for kind in ("memory", "file")
                for label in ("100k 1000x100", "100k 100000x1")
            ]
            report(f"{title} (requests/s, limit=100)", results, ratios)
    finally:
        for adapter in stores.values():
            asyncio.run(adapter.close())
        shutil.rmtree(root, ignore_errors=True)
