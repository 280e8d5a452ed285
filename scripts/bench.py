"""Benchmarks, side by side in one run (ratios matter: machines are noisy).

    scripts/bench memory     increments/s: dict floor, bare adapter, manager, manager + listener + observer
    scripts/bench file       increments/s on one key: the file adapter in each fsync mode vs sqlite3 (WAL,
                             synchronous NORMAL and FULL), 1 and 8 concurrent writers; one set with 1k vs 100k entries
    scripts/bench redis      against one local redis-server: increments through the adapter vs raw redis-py
                             INCR (asyncio client), transactions of 10 operations, batches of 100
    scripts/bench rpc        round trips: raw pipe echo, sequential and concurrent increments from a step,
                             redis-py INCR (when redis-server is installed)
    scripts/bench pool       invocations/s of a trivial step per language: call_step_file (a new process
                             each time) vs a WorkerPool (warm workers)

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
from typing import Any

import anyio

import motia_state as ms
from motia_state.runtime import WorkerPool, call_step_file


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
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await s.increment("bench", "seq")
        seq = n / (time.perf_counter() - start)
        cpu_per_op = (time.process_time() - cpu) / n
        best = 0.0
        for _ in range(data["bursts"]):
            start = time.perf_counter()
            await asyncio.gather(*(s.increment("bench", "conc") for _ in range(2000)))
            best = max(best, 2000 / (time.perf_counter() - start))
        return {"seq": seq, "conc": best, "cpu": cpu_per_op}
    """
)


STEP_JS = """
exports.handler = async (data, ctx) => {
  const s = ctx.state
  const n = data.n
  await s.increment('bench', 'warm')
  let start = performance.now()
  for (let i = 0; i < n; i++) await s.increment('bench', 'seq')
  const seq = n / ((performance.now() - start) / 1000)
  let best = 0
  for (let b = 0; b < data.bursts; b++) {
    start = performance.now()
    await Promise.all(Array.from({ length: 2000 }, () => s.increment('bench', 'conc')))
    best = Math.max(best, 2000 / ((performance.now() - start) / 1000))
  }
  return { seq, conc: best }
}
"""

# Ruby calls block; concurrency is threads (8 x 250 per burst).
STEP_RB = """
def handler(data, ctx)
  s = ctx.state
  n = data["n"]
  s.increment("bench", "warm")
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  n.times { s.increment("bench", "seq") }
  seq = n / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start)
  best = 0.0
  data["bursts"].times do
    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    8.times.map { Thread.new { 250.times { s.increment("bench", "conc") } } }.each(&:join)
    best = [best, 2000 / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start)].max
  end
  { "seq" => seq, "conc" => best }
end
"""


ASYNC_ECHO_CHILD = """
import asyncio, os
async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    os.set_blocking(0, False)
    def readable():
        data = os.read(0, 65536)
        if data:
            os.write(1, data)
        else:
            loop.remove_reader(0)
            done.set_result(None)
    loop.add_reader(0, readable)
    await done
asyncio.run(main())
"""


def bench_async_pipe_echo(n: int) -> float:
    """The same echo with an asyncio event loop on both sides, as parent and worker have.

    Both sides read the pipe from a reader callback, 64 KiB at a time, as
    ours do (asyncio's pipe transport would add an mmap per read).
    """

    async def run() -> float:
        loop = asyncio.get_running_loop()
        proc = subprocess.Popen([sys.executable, "-c", ASYNC_ECHO_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        w, r = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(r, False)
        line = b'{"type":"rpc_request","id":1,"method":"state.increment","args":{"traceId":"bench","key":"k"}}\n'
        waiter: list[asyncio.Future[None]] = []

        def readable() -> None:
            if os.read(r, 65536) and waiter:
                waiter.pop().set_result(None)

        loop.add_reader(r, readable)

        async def round_trip() -> None:
            fut = loop.create_future()
            waiter.append(fut)
            os.write(w, line)
            await fut

        for _ in range(100):
            await round_trip()
        start = time.perf_counter()
        for _ in range(n):
            await round_trip()
        elapsed = time.perf_counter() - start
        loop.remove_reader(r)
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()
        return n / elapsed

    return asyncio.run(run())


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
    languages = {
        "python": ("py", STEP, None),
        "python, spin off": ("py", STEP, {"MOTIA_STEP_SPIN_US": "0"}),
        "node": ("js", STEP_JS, None),
        "ruby": ("rb", STEP_RB, None),
    }
    with tempfile.TemporaryDirectory() as tmp:

        def run_step(ext: str, source: str, env: dict[str, str] | None) -> dict[str, float]:
            step = Path(tmp) / f"bench.step.{ext}"
            step.write_text(source)

            async def run() -> dict[str, float]:
                out: dict[str, float] = await call_step_file(
                    step, data={"n": n, "bursts": 5}, trace_id="bench", state=ms.StateManager(), timeout=600, env=env
                )
                return out

            return anyio.run(run)

        present = {
            lang: spec
            for lang, spec in languages.items()
            if lang.startswith("python") or shutil.which(lang) is not None
        }
        steps: dict[str, list[dict[str, float]]] = {lang: [] for lang in present}
        echo: list[float] = []
        async_echo: list[float] = []
        for _ in range(rounds):  # every contender once per round, as best_of does
            echo.append(bench_pipe_echo(n))
            async_echo.append(bench_async_pipe_echo(n))
            for lang, (ext, source, env) in present.items():
                steps[lang].append(run_step(ext, source, env))
    python, no_spin = steps["python"], steps["python, spin off"]
    results = {
        "(a) raw pipe echo, Python to Python": max(echo),
        "(a2) pipe echo, asyncio loop on both sides": max(async_echo),
        "(b) sequential await ctx.state.increment": max(s["seq"] for s in python),
        "(b0) the same, worker spin off": max(s["seq"] for s in no_spin),
        "(c) 2,000 concurrent increments (gather)": max(s["conc"] for s in python),
    }
    cpu = min(s["cpu"] for s in python) * 1e6
    cpu_off = min(s["cpu"] for s in no_spin) * 1e6
    print(f"worker CPU per sequential increment: {cpu:.1f} us with spin, {cpu_off:.1f} us without")
    if "node" in steps:
        results["(e) Node: sequential await ctx.state.increment"] = max(s["seq"] for s in steps["node"])
        results["(e) Node: 2,000 concurrent (Promise.all)"] = max(s["conc"] for s in steps["node"])
    if "ruby" in steps:
        results["(f) Ruby: sequential ctx.state.increment"] = max(s["seq"] for s in steps["ruby"])
        results["(f) Ruby: 2,000 concurrent (8 threads)"] = max(s["conc"] for s in steps["ruby"])
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
                "(b0)/(a) the same with the worker's spin off",
                "(b0) the same, worker spin off",
                "(a) raw pipe echo, Python to Python",
            ),
            (
                "(b0)/(a2) spin off, over an asyncio-to-asyncio echo",
                "(b0) the same, worker spin off",
                "(a2) pipe echo, asyncio loop on both sides",
            ),
            (
                "(c)/(d) pipelined: ours over redis-py (target >= 1)",
                "(c) 2,000 concurrent increments (gather)",
                "(d) redis-py INCR, pipelined x2000",
            ),
        ],
    )


# -- file -----------------------------------------------------------------------------


def _sqlite_increments(path: str, synchronous: str, n: int, writers: int) -> float:
    """n increments of one key from ``writers`` threads, one connection each."""
    import sqlite3
    import threading

    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("pragma journal_mode=wal")
    setup.execute("create table if not exists state(g text, k text, v text, primary key (g, k))")
    setup.execute("insert or replace into state values ('g', 'k', '0')")
    setup.close()

    def work(count: int) -> None:
        db = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
        db.execute(f"pragma synchronous={synchronous}")
        for _ in range(count):
            # The same read-modify-write the adapter does, made atomic.
            db.execute("begin immediate")
            (v,) = db.execute("select v from state where g = 'g' and k = 'k'").fetchone()
            db.execute("update state set v = ? where g = 'g' and k = 'k'", (str(int(v) + 1),))
            db.execute("commit")
        db.close()

    threads = [threading.Thread(target=work, args=(n // writers,)) for _ in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - start)


def _file_increments(path: str, mode: str, n: int, writers: int) -> float:
    async def run() -> float:
        adapter = ms.FileStateAdapter(path, fsync=mode)  # type: ignore[arg-type]

        async def work(count: int) -> None:
            for _ in range(count):
                await adapter.increment("g", "k")

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(writers):
                tg.start_soon(work, n // writers)
        rate = n / (time.perf_counter() - start)
        await adapter.close()
        return rate

    return anyio.run(run)


def _set_cost(path: str, entries: int, n: int) -> float:
    async def run() -> float:
        adapter = ms.FileStateAdapter(path, fsync="never")
        for lo in range(0, entries, 10_000):  # a batch holds at most 10k operations
            await adapter.batch(
                "g", [{"type": "set", "key": f"k{i}", "value": {"i": i}} for i in range(lo, lo + 10_000)]
            )
        await adapter.compact()
        start = time.perf_counter()
        for i in range(n):
            await adapter.set("g", f"k{i % entries}", {"i": -i})
        rate = n / (time.perf_counter() - start)
        await adapter.close()
        return rate

    return anyio.run(run)


def bench_file(n: int, rounds: int, where: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="motia-bench-", dir=where))
    print(f"store directory: {root} (fsync of a small write here: {_fsync_cost(root) * 1e6:.0f} us)")
    counter = iter(range(1_000_000))

    def fresh() -> str:
        return str(root / f"s{next(counter)}")

    n_sync = max(n // 20, 200)  # fsync-bound contenders get fewer operations
    try:
        fast = best_of(
            rounds,
            {
                "file never": lambda: _file_increments(fresh(), "never", n, 1),
                "file batch": lambda: _file_increments(fresh(), "batch", n, 1),
                "sqlite WAL NORMAL": lambda: _sqlite_increments(fresh(), "NORMAL", n, 1),
            },
        )
        report(
            f"increments of one key, 1 writer ({n:,} per round)",
            fast,
            [
                ("file never / sqlite NORMAL (target >= 2)", "file never", "sqlite WAL NORMAL"),
                ("file batch / sqlite NORMAL (target >= 2)", "file batch", "sqlite WAL NORMAL"),
            ],
        )
        durable = best_of(
            rounds,
            {
                "file always, 1 writer": lambda: _file_increments(fresh(), "always", n_sync, 1),
                "sqlite WAL FULL, 1 writer": lambda: _sqlite_increments(fresh(), "FULL", n_sync, 1),
                "file always, 8 writers": lambda: _file_increments(fresh(), "always", n_sync, 8),
                "sqlite WAL FULL, 8 writers": lambda: _sqlite_increments(fresh(), "FULL", n_sync, 8),
            },
        )
        report(
            f"durable increments of one key ({n_sync:,} per round)",
            durable,
            [
                (
                    "1 writer: file always / sqlite FULL (target >= 1)",
                    "file always, 1 writer",
                    "sqlite WAL FULL, 1 writer",
                ),
                (
                    "8 writers: file always / sqlite FULL (target well above 1)",
                    "file always, 8 writers",
                    "sqlite WAL FULL, 8 writers",
                ),
            ],
        )
        sizes = best_of(
            rounds,
            {
                "set, 1k entries": lambda: _set_cost(fresh(), 1_000, n),
                "set, 100k entries": lambda: _set_cost(fresh(), 100_000, n),
            },
        )
        report(
            "one set (fsync never) by store size",
            sizes,
            [("cost at 100k / cost at 1k (target <= 1.3)", "set, 1k entries", "set, 100k entries")],
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _fsync_cost(root: Path) -> float:
    probe = root / "probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    start = time.perf_counter()
    for _ in range(50):
        os.write(fd, b"x" * 64)
        os.fsync(fd)
    os.close(fd)
    probe.unlink()
    return (time.perf_counter() - start) / 50


# -- redis -----------------------------------------------------------------------------


def bench_redis_adapter(n: int, rounds: int) -> None:
    server = shutil.which("redis-server")
    if server is None:
        print("redis-server is not installed")
        return
    import redis.asyncio

    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)

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
    finally:
        proc.terminate()
        proc.wait()


TRIVIAL_STEPS = {
    "python": ("py", "async def handler(data, ctx):\n    return await ctx.state.increment(ctx.trace_id, 'n')\n"),
    "node": ("js", "exports.handler = async (data, ctx) => ctx.state.increment(ctx.traceId, 'n')\n"),
    "ruby": ("rb", "def handler(data, ctx)\n  ctx.state.increment(ctx.trace_id, 'n')\nend\n"),
}


def bench_pool(n: int, rounds: int) -> None:
    present = {lang: spec for lang, spec in TRIVIAL_STEPS.items() if lang == "python" or shutil.which(lang)}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for lang, (ext, source) in present.items():
            paths[lang] = Path(tmp) / f"trivial.step.{ext}"
            paths[lang].write_text(source)

        def cold(path: Path) -> Callable[[], float]:
            async def run() -> float:
                state = ms.StateManager()
                start = time.perf_counter()
                for _ in range(n):
                    await call_step_file(path, trace_id="t", state=state)
                return n / (time.perf_counter() - start)

            return lambda: anyio.run(run)

        def warm(path: Path) -> Callable[[], float]:
            async def run() -> float:
                async with WorkerPool(ms.StateManager()) as pool:
                    await pool.call(path, trace_id="t")  # the one start it pays
                    start = time.perf_counter()
                    for _ in range(n * 20):
                        await pool.call(path, trace_id="t")
                    return n * 20 / (time.perf_counter() - start)

            return lambda: anyio.run(run)

        contenders: dict[str, Callable[[], float]] = {}
        for lang, path in paths.items():
            contenders[f"{lang}: call_step_file (new process)"] = cold(path)
            contenders[f"{lang}: WorkerPool.call (warm worker)"] = warm(path)
        results = best_of(rounds, contenders)
    report(
        f"pool: sequential invocations of a one-increment step ({n} cold, {n * 20} warm per round); best of {rounds}",
        results,
        [
            (f"{lang}: warm / cold", f"{lang}: WorkerPool.call (warm worker)", f"{lang}: call_step_file (new process)")
            for lang in paths
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suite", choices=["memory", "file", "redis", "rpc", "pool"])
    parser.add_argument("--dir", default=None, help="where the file benchmark puts its stores (default: the temp dir)")
    parser.add_argument("-n", type=int, default=None, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, motia-state {ms.__version__}")
    if args.suite == "memory":
        bench_memory(args.n or 200_000, args.rounds)
    elif args.suite == "redis":
        bench_redis_adapter(args.n or 20_000, args.rounds)
    elif args.suite == "file":
        bench_file(args.n or 50_000, args.rounds, args.dir)
    elif args.suite == "pool":
        bench_pool(args.n or 50, args.rounds)
    else:
        bench_rpc(args.n or 5_000, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
