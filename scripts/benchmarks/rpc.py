"""Suite ``rpc``: a step calling the parent, against a raw pipe echo and redis-py on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import anyio

import motia_state as ms
from motia_state.runtime import call_step_file

from .harness import Options, redis_server, report

DEFAULT_N = 5_000

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


def async_pipe_echo(n: int) -> float:
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


def parent_per_frame(rounds: int = 30) -> float:
    """Microseconds of the parent's work per ``state.increment`` frame of a burst (best of ``rounds``).

    The frames a Node step's burst sends (2,000, in reads of 256), served by
    a :class:`~motia_state.rpc.Peer` in this process with the runtime's
    handler table over a fresh StateManager on the memory adapter (change
    feed on) and a step's context: line splitting, frame and args decoding,
    the write context, the StateManager, the adapter, the feed record and
    the reply's encoding, without the pipe or the other process.
    """
    from anyio.abc import ByteReceiveStream, ByteSendStream

    from motia_state.rpc import Peer
    from motia_state.runtime.services import StepContext, handler_table

    count, run = 2000, 256

    class Reads(ByteReceiveStream):
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        async def receive(self, max_bytes: int = 65536) -> bytes:
            if not self.chunks:
                raise anyio.EndOfStream
            return self.chunks.pop(0)

        async def aclose(self) -> None:
            pass

    class Discard(ByteSendStream):
        async def send(self, item: bytes) -> None:
            pass

        async def aclose(self) -> None:
            pass

    def reads(first: int) -> list[bytes]:
        frames = [
            b'{"type":"rpc_request","id":%d,"method":"state.increment","args":{"traceId":"bench","key":"conc"}}' % i
            for i in range(first, first + count)
        ]
        return [b"\n".join(frames[i : i + run]) + b"\n" for i in range(0, count, run)]

    async def measure() -> float:
        table = handler_table(ms.StateManager(), None)
        context = StepContext(step="bench.step.js", trace_id="bench")
        best = float("inf")
        for r in range(rounds):
            chunks = reads(r * count + 1)
            start = time.perf_counter()
            await Peer(Reads(chunks), Discard(), table, context).run()
            best = min(best, (time.perf_counter() - start) / count * 1e6)
        return best

    return asyncio.run(measure())


def pipe_echo(n: int) -> float:
    """Round trips/s of one request frame echoed by a child Python process, blocking I/O on both sides."""
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


def redis_incr(n: int) -> dict[str, float]:
    """Sequential and pipelined (best of 5 bursts of 2,000) INCR with the blocking client; {} without Redis."""
    try:
        import redis
    except ImportError:
        return {}
    with redis_server() as server:
        if server is None:
            return {}
        client = redis.Redis(port=server.port)
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
        client.close()
        return {"seq": seq, "pipelined": best}


def run(options: Options) -> None:
    """Echo floors, then each installed language's step: sequential, concurrent; then redis-py for scale."""
    n, rounds = options.n, options.rounds
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
            echo.append(pipe_echo(n))
            async_echo.append(async_pipe_echo(n))
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
    print(f"parent's work per burst frame (Peer.run in one process, best of 30): {parent_per_frame():.2f} us")
    cpu = min(s["cpu"] for s in python) * 1e6
    cpu_off = min(s["cpu"] for s in no_spin) * 1e6
    print(f"worker CPU per sequential increment: {cpu:.1f} us with spin, {cpu_off:.1f} us without")
    if "node" in steps:
        results["(e) Node: sequential await ctx.state.increment"] = max(s["seq"] for s in steps["node"])
        results["(e) Node: 2,000 concurrent (Promise.all)"] = max(s["conc"] for s in steps["node"])
    if "ruby" in steps:
        results["(f) Ruby: sequential ctx.state.increment"] = max(s["seq"] for s in steps["ruby"])
        results["(f) Ruby: 2,000 concurrent (8 threads)"] = max(s["conc"] for s in steps["ruby"])
    redis_results = redis_incr(n)
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
            (
                "(e)/(b) Node over Python, sequential (target >= 1)",
                "(e) Node: sequential await ctx.state.increment",
                "(b) sequential await ctx.state.increment",
            ),
            (
                "(e)/(d) Node concurrent over redis-py pipelined (target >= 1)",
                "(e) Node: 2,000 concurrent (Promise.all)",
                "(d) redis-py INCR, pipelined x2000",
            ),
            (
                "(f)/(b) Ruby over Python, sequential (target >= 0.67)",
                "(f) Ruby: sequential ctx.state.increment",
                "(b) sequential await ctx.state.increment",
            ),
            (
                "(f)/(c) Ruby 8 threads over Python gather (target >= 0.67)",
                "(f) Ruby: 2,000 concurrent (8 threads)",
                "(c) 2,000 concurrent increments (gather)",
            ),
        ],
    )
