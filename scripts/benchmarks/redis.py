"""Suite ``redis``: the Redis adapter against raw redis-py INCR on one local redis-server, and the feed's cost.

Two comparisons are printed round by round as well as at their best, since
their targets hold for every run: one increment at a time through the
adapter against raw ``INCR``, and 64 tasks incrementing at once through the
adapter (its calls share round trips) against a redis-py pipeline of the
same 64 ``INCR`` commands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import motia_state as ms

from .harness import Options, redis_server, report

DEFAULT_N = 20_000
#: Tasks running at once in the concurrent comparison, and INCRs per explicit pipeline.
TASKS = 64


def run(options: Options) -> None:
    """Sequential adapter increments vs raw INCR (asyncio client), transactions of 10, batches of 100,
    and 64 concurrent tasks through the adapter vs explicit redis-py pipelines of 64 INCRs.

    Each write kind also runs with the change feed off (``feed_retention=0``):
    the ratio is what the feed record, written in the same program call,
    costs a write, in the client's wall-clock rate and in CPU time (this
    process's and redis-server's). The concurrent comparison runs with the feed on.
    """
    n, rounds = options.n, options.rounds
    with redis_server() as server:
        if server is None:
            print("redis-server is not installed")
            return
        url = server.url
        concurrent(url, n, rounds)
        sequential(url, n, rounds)


def per_round(
    title: str, rounds: int, contenders: dict[str, Callable[[], float]], pairs: list[tuple[str, str]], target: str
) -> None:
    """Run ``contenders`` interleaved, ``rounds`` times; print each one's best and each pair's a/b in every round."""
    rates = rounds_of(rounds, contenders)
    report(title, {name: max(r) for name, r in rates.items()}, [(f"{a} / {b} (best of each)", a, b) for a, b in pairs])
    for a, b in pairs:
        ratios = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
        print(
            f"  {a} per round ({target}): " + " / ".join(f"{r:.2f}x" for r in ratios) + f"; lowest {min(ratios):.2f}x"
        )


def concurrent(url: str, n: int, rounds: int) -> None:
    """64 tasks each incrementing its own key of one group through one adapter vs ``n / 64`` redis-py pipelines of 64 INCRs.

    The adapter runs as built by default (auto-pipelining on) and with
    ``auto_pipeline=False``; in both, the increments meeting on the group
    go out as batch calls.
    """
    import redis.asyncio

    per_task = max(n // TASKS, 1)
    total = per_task * TASKS

    def explicit_pipeline() -> float:
        async def run() -> float:
            client = redis.asyncio.Redis.from_url(url)
            await client.incr("warm")
            start = time.perf_counter()
            for _ in range(per_task):
                pipe = client.pipeline(transaction=False)
                for i in range(TASKS):
                    pipe.incr(f"p{i}")
                await pipe.execute()
            rate = total / (time.perf_counter() - start)
            await client.aclose()
            return rate

        return asyncio.run(run())

    def adapter_tasks(auto_pipeline: bool) -> Callable[[], float]:
        def contender() -> float:
            async def run() -> float:
                adapter = ms.RedisStateAdapter(url, auto_pipeline=auto_pipeline)
                await adapter.increment("bench", "warm")  # connect, load the function library

                async def task(i: int) -> None:
                    key = f"k{i}"
                    for _ in range(per_task):
                        await adapter.increment("bench", key)

                start = time.perf_counter()
                await asyncio.gather(*(task(i) for i in range(TASKS)))
                rate = total / (time.perf_counter() - start)
                await adapter.close()
                return rate

            return asyncio.run(run())

        return contender

    pipeline = f"redis-py pipelines of {TASKS} INCRs"
    plain = f"{TASKS} tasks, RedisStateAdapter(auto_pipeline=False).increment"
    pipelined = f"{TASKS} tasks, RedisStateAdapter.increment"
    per_round(
        f"redis: {TASKS} tasks at once, {total:,} increments per round, feed on",
        rounds,
        {pipeline: explicit_pipeline, plain: adapter_tasks(False), pipelined: adapter_tasks(True)},
        [(pipelined, pipeline), (plain, pipeline)],
        "target >= 1x",
    )


def sequential(url: str, n: int, rounds: int) -> None:
    """One call at a time: the adapter's writes against raw INCR, each with the feed on and off."""
    import redis.asyncio

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

    #: Per contender and round: CPU time per operation, this process's and redis-server's (INFO cpu), in microseconds.
    cpu_us: dict[str, list[float]] = {}

    def through_adapter(
        name: str,
        calls: int,
        per_call: int,
        call: Callable[[ms.RedisStateAdapter], Awaitable[Any]],
        feed: bool = True,
    ) -> float:
        """Operations/s of ``calls`` sequential ``call(adapter)``, each worth ``per_call``.

        Also keeps the CPU time per operation in ``cpu_us``, this
        process's plus redis-server's: what the write costs, which other
        processes on the machine disturb far less than the wall-clock rate.
        """

        async def run() -> float:
            adapter = ms.RedisStateAdapter(url, feed_retention=100_000 if feed else 0, auto_pipeline=True)
            await call(adapter)  # warm: connect, load the function library
            server = await adapter.client.info("cpu")
            client = time.process_time()
            start = time.perf_counter()
            for _ in range(calls):
                await call(adapter)
            rate = calls * per_call / (time.perf_counter() - start)
            client = time.process_time() - client
            after = await adapter.client.info("cpu")
            used = sum(after[k] - server[k] for k in ("used_cpu_user", "used_cpu_sys"))
            cpu_us.setdefault(name, []).append((client + used) / (calls * per_call) * 1e6)
            await adapter.close()
            return rate

        return asyncio.run(run())

    tx_ops = [{"type": "increment", "key": f"t{i}"} for i in range(10)]
    batch_ops = [{"type": "increment", "key": f"b{i % 10}"} for i in range(100)]
    document = {"name": "x" * 900, "tags": list(range(20))}  # about 1 KB of JSON

    def both(name: str, calls: int, per_call: int, call: Callable[[ms.RedisStateAdapter], Awaitable[Any]]) -> Any:
        return {
            name: lambda: through_adapter(name, calls, per_call, call),
            f"{name}, feed off": lambda: through_adapter(f"{name}, feed off", calls, per_call, call, feed=False),
        }

    results = rounds_of(
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
            **both("batch operations (100 per batch)", max(n // 100, 20), 100, lambda a: a.batch("bench", batch_ops)),
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
        {name: max(r) for name, r in results.items()},
        [
            ("adapter / raw INCR, best of each", "RedisStateAdapter.increment", "raw redis-py INCR (asyncio)"),
            *feed_cost,
        ],
    )
    print("  CPU time per operation (this process + redis-server), feed on / off, each round:")
    for _, off, on in feed_cost:
        pairs = list(zip(cpu_us[on], cpu_us[off], strict=True))
        print(
            f"    {on}: "
            + " / ".join(f"{x:.1f}/{y:.1f} us = {x / y:.2f}x" for x, y in pairs)
            + f"; best of each {min(cpu_us[on]) / min(cpu_us[off]):.2f}x"
        )
    ratios = [
        x / y
        for x, y in zip(results["RedisStateAdapter.increment"], results["raw redis-py INCR (asyncio)"], strict=True)
    ]
    print(
        "  adapter / raw INCR per round (target >= 0.9x): "
        + " / ".join(f"{r:.2f}x" for r in ratios)
        + f"; lowest {min(ratios):.2f}x"
    )


def rounds_of(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each contender's ops/s in every round, the contenders interleaved within a round."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, contender in contenders.items():
            rates[name].append(contender())
    return rates
