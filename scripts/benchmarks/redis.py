"""Suite ``redis``: the Redis adapter against raw redis-py INCR on one local redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import motia_state as ms

from .harness import Options, best_of, redis_server, report

DEFAULT_N = 20_000


def run(options: Options) -> None:
    """Sequential adapter increments vs raw INCR (asyncio client), transactions of 10, batches of 100."""
    n, rounds = options.n, options.rounds
    with redis_server() as server:
        if server is None:
            print("redis-server is not installed")
            return
        import redis.asyncio

        url = server.url

        def raw_incr() -> float:
            async def run() -> float:
                client = redis.asyncio.Redis.from_url(url)
                await client.incr("raw")
                start = time.perf_counter()
                for _ in range(n):
                    await client.incr("raw")
                rate = n / (time.perf_counter() - start)
                await client.aclose()
                return rate

            return asyncio.run(run())

        def through_adapter(calls: int, per_call: int, call: Callable[[ms.RedisStateAdapter], Awaitable[Any]]) -> float:
            """Operations/s of ``calls`` sequential ``call(adapter)``, each worth ``per_call``."""

            async def run() -> float:
                adapter = ms.RedisStateAdapter(url)
                await call(adapter)  # warm: connect, load the function library
                start = time.perf_counter()
                for _ in range(calls):
                    await call(adapter)
                rate = calls * per_call / (time.perf_counter() - start)
                await adapter.close()
                return rate

            return asyncio.run(run())

        tx_ops = [{"type": "increment", "key": f"t{i}"} for i in range(10)]
        batch_ops = [{"type": "increment", "key": f"b{i % 10}"} for i in range(100)]

        results = best_of(
            rounds,
            {
                "raw redis-py INCR (asyncio)": raw_incr,
                "RedisStateAdapter.increment": lambda: through_adapter(n, 1, lambda a: a.increment("bench", "k")),
                "transactions of 10 increments (per s)": lambda: through_adapter(
                    max(n // 10, 100), 1, lambda a: a.transaction("bench", tx_ops)
                ),
                "batch operations (100 per batch)": lambda: through_adapter(
                    max(n // 100, 20), 100, lambda a: a.batch("bench", batch_ops)
                ),
            },
        )
        report(
            f"redis: {n:,} sequential calls per round, one local redis-server",
            results,
            [("adapter / raw INCR (target >= 0.8)", "RedisStateAdapter.increment", "raw redis-py INCR (asyncio)")],
        )
