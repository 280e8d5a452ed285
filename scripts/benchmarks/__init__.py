"""Benchmarks, side by side in one run (ratios matter: machines are noisy).

    scripts/bench memory     increments/s: dict floor, bare adapter, manager, manager + listener + observer
    scripts/bench file       increments/s on one key: the file adapter in each fsync mode vs sqlite3 (WAL,
                             synchronous NORMAL and FULL), 1 and 8 concurrent writers; one set with 1k vs 100k entries
    scripts/bench feed       writes/s with the change feed on vs off (feed_retention=0): sets and increments,
                             memory and file (fsync "batch")
    scripts/bench redis      against one local redis-server: increments through the adapter vs raw redis-py
                             INCR (asyncio client), transactions of 10 operations, batches of 100
    scripts/bench rpc        round trips: raw pipe echo, sequential and concurrent increments from a step,
                             redis-py INCR (when redis-server is installed)
    scripts/bench pool       invocations/s of a trivial step per language: call_step_file (a new process
                             each time) vs a WorkerPool (warm workers)
    scripts/bench app        an App's API step per language over HTTP (uvicorn, warm workers) vs the same
                             handler as a plain Starlette route: requests/s, p50, p99; events through a
                             chain of three steps: chains/s

Each contender runs in alternating rounds and keeps its best round (the
``app`` suite prints every round and the range instead).

One module per suite (``memory``, ``file``, ``feed``, ``redis``, ``rpc``, ``pool``, ``app``),
each with a ``DEFAULT_N`` and a ``run(options)``; ``harness`` holds what
they share: the interleaved rounds, the report, and a throwaway
redis-server (the test suite's own ``tests.helpers.RedisServer``).
"""
