"""Suite ``redis``: the Redis adapter against raw redis-py INCR on one local redis-server, and the feed's cost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import motia_state as ms

from .harness import Options, best_of, redis_server, report

DEFAULT_N = 20_000


def run(options: Options) -> None:
    """Sequential adapter increments vs raw INCR (asyncio client), transactions of 10, batches of 100.

    Each write kind also runs with the change feed off (``feed_retention=0``):
    the ratio is what the feed record, written in the same program call,
    costs a write.
    """
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

        def through_adapter(
            calls: int, per_call: int, call: Callable[[ms.RedisStateAdapter], Awaitable[Any]], feed: bool = True
        ) -> float:
            """Operations/s of ``calls`` sequential ``call(adapter)``, each worth ``per_call``."""

            async def run() -> float:
                adapter = ms.RedisStateAdapter(url, feed_retention=100_000 if feed else 0)
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
        document = {"name": "x" * 900, "tags": list(range(20))}  # about 1 KB of JSON

        def both(name: str, calls: int, per_call: int, call: Callable[[ms.RedisStateAdapter], Awaitable[Any]]) -> Any:
            return {
                name: lambda: through_adapter(calls, per_call, call),
                f"{name}, feed off": lambda: through_adapter(calls, per_call, call, feed=False),
            }

        results = best_of(
            rounds,
            {
                "raw redis-py INCR (asyncio)": raw_incr,
                **both("RedisStateAdapter.increment", n, 1, lambda a: a.increment("bench", "k")),
                **both("set of a 1 KB object", n, 1, lambda a: a.set("bench", "doc", document)),
                **both(
                    "transactions of 10 increments (per s)",
                    max(n // 10, 100),
                    1,
                    lambda a: a.transaction("bench", tx_ops),
                ),
                **both(
                    "batch operations (100 per batch)", max(n // 100, 20), 100, lambda a: a.batch("bench", batch_ops)
                ),
            },
        )
        feed_cost = [
            (f"feed on / off, {name} (target <= 1.3x)", f"{name}, feed off", name)
            for name in (
                "RedisStateAdapter.increment",
                "set of a 1 KB object",
                "transactions of 10 increments (per s)",
                "batch operations (100 per batch)",
            )
        ]
        report(
            f"redis: {n:,} sequential calls per round, one local redis-server",
            results,
            [
                ("adapter / raw INCR (target >= 0.8)", "RedisStateAdapter.increment", "raw redis-py INCR (asyncio)"),
                *feed_cost,
            ],
        )
