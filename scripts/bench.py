"""Benchmarks, side by side in one run (ratios matter: machines are noisy).

    scripts/bench memory     increments/s: dict floor, bare adapter, manager, manager + listener + observer
    scripts/bench rpc        round trips: raw pipe echo, sequential and concurrent increments from a step,
                             redis-py INCR (when redis-server is installed)

Each contender runs in alternating rounds and keeps its best round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

import motia_state as ms
from motia_state.runtime import call_step_file


def best_of(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run each contender once per round, interleaved; keep each one's best ops/s."""
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, run in contenders.items():
            best[name] = max(best[name], run())
    return best


def report(title: str, results: dict[str, float], ratios: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(n) for n in results)
    for name, ops in results.items():
        print(f"  {name:<{width}}  {ops:>14,.0f} ops/s")
    for label, a, b in ratios:
        if results.get(a) and results.get(b):
            print(f"  {label}: {results[a] / results[b]:.2f}x")


# -- memory ---------------------------------------------------------------------------


def bench_memory(n: int, rounds: int) -> None:
    def timed(fn: Callable[[], Awaitable[None]]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            asyncio.run(fn())
            return n / (time.perf_counter() - start)

        return run

    async def plain_dict() -> None:
        d: dict[str, dict[str, int]] = {"g": {}}

        async def increment(g: str, k: str, delta: int = 1) -> int:
            group = d[g]
            group[k] = value = group.get(k, 0) + delta
            return value

        for _ in range(n):
            await increment("g", "k")

    async def bare() -> None:
        adapter = ms.MemoryStateAdapter()
        for _ in range(n):
            await adapter.increment("g", "k")

    async def manager() -> None:
        m = ms.StateManager(ms.MemoryStateAdapter())
        for _ in range(n):
            await m.increment("g", "k")

    async def observed() -> None:
        seen = [0]

        def listener(change: ms.StateChange) -> None:
            seen[0] += 1

        m = ms.StateManager(ms.MemoryStateAdapter(), observers=[lambda r: None])
        m.on_change(listener)
        for _ in range(n):
            await m.increment("g", "k")
        assert seen[0] == n

    results = best_of(
        rounds,
        {
            "(a) plain dict in async def": timed(plain_dict),
            "(b) MemoryStateAdapter": timed(bare),
            "(c) StateManager, no listeners": timed(manager),
            "(d) StateManager + listener + observer": timed(observed),
        },
    )
    report(
        f"memory: {n:,} sequential increments of one key, best of {rounds}",
        results,
        [
            ("(a)/(b) floor over adapter (target <= 4)", "(a) plain dict in async def", "(b) MemoryStateAdapter"),
            (
                "(b)/(c) adapter over manager (target <= 1.5)",
                "(b) MemoryStateAdapter",
                "(c) StateManager, no listeners",
            ),
            (
                "(b)/(d) adapter over observed manager",
                "(b) MemoryStateAdapter",
                "(d) StateManager + listener + observer",
            ),
        ],
    )


# -- rpc ---------------------------------------------------------------------------------

ECHO_CHILD = (
    "import sys\nr, w = sys.stdin.buffer, sys.stdout.buffer\nfor line in r:\n    w.write(line)\n    w.flush()\n"
)

STEP = textwrap.dedent(
    """
    import asyncio, time

    async def handler(data, ctx):
        s, n = ctx.state, data["n"]
        await s.increment("bench", "warm")
        start = time.perf_counter()
        for _ in range(n):
            await s.increment("bench", "seq")
        seq = n / (time.perf_counter() - start)
        best = 0.0
        for _ in range(data["bursts"]):
            start = time.perf_counter()
            await asyncio.gather(*(s.increment("bench", "conc") for _ in range(2000)))
            best = max(best, 2000 / (time.perf_counter() - start))
        return {"seq": seq, "conc": best}
    """
)


def bench_pipe_echo(n: int) -> float:
    frame = json.dumps(
        {"type": "rpc_request", "id": 1, "method": "state.increment", "args": {"traceId": "bench", "key": "k"}}
    )
    line = (frame + "\n").encode()
    with subprocess.Popen([sys.executable, "-c", ECHO_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for _ in range(100):
            proc.stdin.write(line)
            proc.stdin.flush()
            proc.stdout.readline()
        start = time.perf_counter()
        for _ in range(n):
            proc.stdin.write(line)
            proc.stdin.flush()
            proc.stdout.readline()
        elapsed = time.perf_counter() - start
        proc.stdin.close()
    return n / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_redis(n: int) -> dict[str, float]:
    server = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        return {}
    if server is None:
        return {}
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        start = time.perf_counter()
        for _ in range(n):
            client.incr("seq")
        seq = n / (time.perf_counter() - start)
        best = 0.0
        for _ in range(5):
            pipe = client.pipeline(transaction=False)
            start = time.perf_counter()
            for _ in range(2000):
                pipe.incr("conc")
            pipe.execute()
            best = max(best, 2000 / (time.perf_counter() - start))
        return {"seq": seq, "pipelined": best}
    finally:
        proc.terminate()
        proc.wait()


def bench_rpc(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        step = Path(tmp) / "bench.step.py"
        step.write_text(STEP)
        echo = [bench_pipe_echo(n) for _ in range(rounds)]

        async def run_step() -> dict[str, float]:
            out: dict[str, float] = await call_step_file(
                step, data={"n": n, "bursts": 5}, trace_id="bench", state=ms.StateManager(), timeout=600
            )
            return out

        steps = [anyio.run(run_step) for _ in range(rounds)]
    results = {
        "(a) raw pipe echo, Python to Python": max(echo),
        "(b) sequential await ctx.state.increment": max(s["seq"] for s in steps),
        "(c) 2,000 concurrent increments (gather)": max(s["conc"] for s in steps),
    }
    redis_results = bench_redis(n)
    if redis_results:
        results["(d) redis-py INCR, sequential"] = redis_results["seq"]
        results["(d) redis-py INCR, pipelined x2000"] = redis_results["pipelined"]
    else:
        print("(d) skipped: redis-server or redis-py is not installed")
    report(
        f"rpc: {n:,} sequential round trips, concurrent bursts of 2,000; best of {rounds}",
        results,
        [
            (
                "(b)/(a) step increments over the pipe floor (target >= 0.8)",
                "(b) sequential await ctx.state.increment",
                "(a) raw pipe echo, Python to Python",
            ),
            (
                "(c)/(d) pipelined: ours over redis-py (target >= 1)",
                "(c) 2,000 concurrent increments (gather)",
                "(d) redis-py INCR, pipelined x2000",
            ),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suite", choices=["memory", "rpc"])
    parser.add_argument("-n", type=int, default=None, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, motia-state {ms.__version__}")
    if args.suite == "memory":
        bench_memory(args.n or 200_000, args.rounds)
    else:
        bench_rpc(args.n or 5_000, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
