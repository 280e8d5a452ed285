"""Suite ``langs``: Node and Ruby steps against a Python step, as ratios taken within each round.

On a shared machine absolute rates swing by 2-3x from one second to the
next (the scheduler keeps parent and worker on one core or spreads them
over two), so this suite runs every language's step once per round,
back to back, divides within the round, and prints the lowest, median and
highest ratio over the rounds. Each step does ``n`` sequential increments
and bursts of 2,000 concurrent ones (each after a warm-up of 2,000
sequential increments in that worker); Python and Ruby also do 8
concurrent sequential loops of 250 (tasks and threads), the same shape of
concurrency. redis-py's pipelined INCR of 2,000 is measured once per
round as the scale for the concurrent figures.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import anyio

import motia_state as ms
from motia_state.runtime import call_step_file

from .harness import Options, redis_server
from .rpc import STEP_JS, STEP_RB

# The sequential loop also reports the worker's CPU per operation.
STEP_JS_CPU = STEP_JS.replace(
    "  let start = performance.now()\n  for (let i = 0; i < n; i++) await s.increment('bench', 'seq')\n"
    "  const seq = n / ((performance.now() - start) / 1000)\n",
    "  const cpu0 = process.cpuUsage()\n"
    "  let start = performance.now()\n  for (let i = 0; i < n; i++) await s.increment('bench', 'seq')\n"
    "  const seq = n / ((performance.now() - start) / 1000)\n"
    "  const used = process.cpuUsage(cpu0)\n  const cpu = (used.user + used.system) / 1e6 / n\n",
).replace("return { seq, conc: best }", "return { seq, conc: best, cpu }")
STEP_RB_CPU = STEP_RB.replace(
    '  n.times { s.increment("bench", "seq") }\n',
    "  cpu0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)\n"
    '  n.times { s.increment("bench", "seq") }\n'
    "  cpu = (Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - cpu0) / n\n",
).replace('{ "seq" => seq, "conc" => best }', '{ "seq" => seq, "conc" => best, "cpu" => cpu }')
# A warm-up loop first (data["warm"] increments), so that the timed loop
# measures the steady state: V8 optimizes a function only after it has run
# a few thousand times.
STEP_JS_CPU = STEP_JS_CPU.replace(
    "  await s.increment('bench', 'warm')\n",
    "  for (let i = 0; i < data.warm; i++) await s.increment('bench', 'warm')\n",
)
STEP_RB_CPU = STEP_RB_CPU.replace(
    '  s.increment("bench", "warm")\n', '  data["warm"].times { s.increment("bench", "warm") }\n'
)
assert "data.warm" in STEP_JS_CPU and 'data["warm"]' in STEP_RB_CPU
# Ruby with Python's in-flight concurrency: 2,000 calls from one thread through
# ctx.state.async (each returns a Call; #value waits), beside the 8 threads.
STEP_RB_CPU = (
    STEP_RB_CPU.replace(
        "    best = [best, 2000 / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start)].max\n",
        "    best = [best, 2000 / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start)].max\n"
        "    next unless s.respond_to?(:async)\n\n"
        "    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)\n"
        '    2000.times.map { s.async.increment("bench", "async") }.each(&:value)\n'
        "    best_async = [best_async, 2000 / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - start)].max\n",
    )
    .replace("  best = 0.0\n", "  best = best_async = 0.0\n")
    .replace('"conc" => best, "cpu" => cpu }', '"conc" => best, "conc_async" => best_async, "cpu" => cpu }')
)
assert "conc_async" in STEP_RB_CPU and "best_async = [" in STEP_RB_CPU

DEFAULT_N = 5_000

STEP_PY = textwrap.dedent(
    """
    import asyncio, time

    async def handler(data, ctx):
        s, n = ctx.state, data["n"]
        for _ in range(data["warm"]):
            await s.increment("bench", "warm")
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await s.increment("bench", "seq")
        seq = n / (time.perf_counter() - start)
        cpu = (time.process_time() - cpu) / n
        best = best8 = 0.0
        for _ in range(data["bursts"]):
            start = time.perf_counter()
            await asyncio.gather(*(s.increment("bench", "conc") for _ in range(2000)))
            best = max(best, 2000 / (time.perf_counter() - start))

            async def loop():
                for _ in range(250):
                    await s.increment("bench", "conc8")

            start = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(8)))
            best8 = max(best8, 2000 / (time.perf_counter() - start))
        return {"seq": seq, "conc": best, "conc8": best8, "cpu": cpu}
    """
)

RATIOS = [
    ("Node / Python, sequential (target >= 1)", "node.seq", "python.seq"),
    ("Node concurrent / redis-py pipelined (target >= 1)", "node.conc", "redis.pipelined"),
    ("Ruby / Python, sequential (target >= 0.67)", "ruby.seq", "python.seq"),
    ("Ruby async 2,000 / Python gather of 2,000 (target >= 0.67)", "ruby.conc_async", "python.conc"),
    ("Ruby 8 threads / Python 8 tasks (target >= 0.67)", "ruby.conc", "python.conc8"),
    ("Ruby 8 threads / Python gather of 2,000", "ruby.conc", "python.conc"),
    ("Python gather / redis-py pipelined", "python.conc", "redis.pipelined"),
    ("CPU per sequential increment, parent + worker: Python / Node", "python.cpu.total", "node.cpu.total"),
    ("CPU per sequential increment, parent + worker: Python / Ruby", "python.cpu.total", "ruby.cpu.total"),
]


def _pipelined() -> float:
    """Best of 5 bursts of 2,000 pipelined INCR with redis-py's blocking client (0 without Redis)."""
    try:
        import redis
    except ImportError:
        return 0.0
    with redis_server() as server:
        if server is None:
            return 0.0
        client = redis.Redis(port=server.port)
        best = 0.0
        for _ in range(5):
            pipe = client.pipeline(transaction=False)
            start = time.perf_counter()
            for _ in range(2000):
                pipe.incr("conc")
            pipe.execute()
            best = max(best, 2000 / (time.perf_counter() - start))
        client.close()
        return best


def run(options: Options) -> None:
    """``rounds`` rounds of every installed language's step; ratios per round, then their range."""
    n, rounds = options.n, options.rounds
    sources = {"python": ("py", STEP_PY), "node": ("js", STEP_JS_CPU), "ruby": ("rb", STEP_RB_CPU)}
    present = {lang: spec for lang, spec in sources.items() if lang == "python" or shutil.which(lang)}
    per_round: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:

        def step(lang: str) -> dict[str, float]:
            ext, source = present[lang]
            path = Path(tmp) / f"langs.step.{ext}"
            path.write_text(source)

            async def go() -> dict[str, float]:
                # The parent's CPU is read around a call that only does the
                # sequential loop (its start-up is spread over n operations).
                parent = time.process_time()
                out: dict[str, float] = await call_step_file(
                    path,
                    data={"n": n, "bursts": 0, "warm": 2_000},
                    trace_id="bench",
                    state=ms.StateManager(),
                    timeout=600,
                )
                out["cpu.parent"] = (time.process_time() - parent) / n
                # The bursts run in a fresh worker too, after the same warm-up:
                # a burst, like the loop, is measured in the steady state.
                burst = await call_step_file(
                    path,
                    data={"n": 1, "bursts": 5, "warm": 2_000},
                    trace_id="bench",
                    state=ms.StateManager(),
                    timeout=600,
                )
                out.update((k, v) for k, v in burst.items() if k.startswith("conc"))
                out["cpu.total"] = out["cpu"] + out["cpu.parent"]
                return out

            return anyio.run(go)

        for _ in range(rounds):
            figures: dict[str, float] = {"redis.pipelined": _pipelined()}
            for lang in present:
                for name, value in step(lang).items():
                    figures[f"{lang}.{name}"] = value
            per_round.append(figures)
    print(f"\nlangs: {n:,} sequential increments, bursts of 2,000; {rounds} rounds, ratios within each round")
    for name in per_round[0]:
        values = [r[name] for r in per_round]
        if ".cpu" in name:
            values = [v * 1e6 for v in values]
            print(
                f"  {name:<18} median {statistics.median(values):>10.1f} us/op  ({min(values):.1f}-{max(values):.1f})"
            )
        else:
            print(
                f"  {name:<18} median {statistics.median(values):>10,.0f} ops/s  ({min(values):,.0f}-{max(values):,.0f})"
            )
    for label, a, b in RATIOS:
        ratios = [r[a] / r[b] for r in per_round if r.get(a) and r.get(b)]
        if ratios:
            print(
                f"  {label}: median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x"
                f" over {len(ratios)} rounds"
            )
