"""Suite ``leak``: resident memory of a warm pool and of a store, after warm-up vs at the end.

A warm pool runs a one-increment step ``n`` times per language, and a
store (the memory adapter and the file adapter, each behind a
``StateManager``) does ``10 n`` operations over a fixed set of keys, so
that the state itself stops growing once warm. What is measured is the
resident set size (``VmRSS`` in ``/proc``) of this process and of the
pool's workers, after a warm-up and again at the end: a leak shows as
growth proportional to the work done, where allocator noise does not.

``bash scripts/bench leak`` runs the full size (100,000 invocations per
language, 1,000,000 store operations); ``-n`` sets the invocations (the
store does ten times as many operations). ``tests/integration/test_leak.py`` runs the
same functions with a small ``n`` and a bound.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio

import motia_state as ms
from motia_state.feed import DEFAULT_RETENTION
from motia_state.runtime import WorkerPool

from .harness import Options

DEFAULT_N = 100_000

STEPS = {
    "python": (
        "py",
        "import gc\n\n\nasync def handler(data, ctx):\n"
        "    if data == 'collect':\n        gc.collect()\n        return None\n"
        "    return await ctx.state.increment(ctx.trace_id, 'n')\n",
    ),
    "node": (
        "js",
        "exports.handler = async (data, ctx) => {\n"
        "  if (data === 'collect') { if (global.gc) global.gc(); return null }\n"
        "  return ctx.state.increment(ctx.traceId, 'n')\n}\n",
    ),
    "ruby": (
        "rb",
        "def handler(data, ctx)\n  if data == 'collect'\n    GC.start\n    return nil\n  end\n\n"
        "  ctx.state.increment(ctx.trace_id, 'n')\nend\n",
    ),
}

#: Keys the store's operations cycle over: the state's size is bounded.
STORE_KEYS = 1_000


@dataclass(frozen=True)
class Growth:
    """RSS in bytes after warm-up and at the end, and how much work ran in between.

    For this process, also the objects Python holds (``sys.getallocatedblocks``)
    at both points: a leak of Python objects grows them, where the
    allocator's fragmentation moves only the RSS. None for a worker.
    """

    warm: int
    end: int
    work: int
    warm_blocks: int | None = None
    end_blocks: int | None = None

    @property
    def ratio(self) -> float:
        """End over warm (1.0 = no growth)."""
        return self.end / self.warm

    @property
    def per_unit(self) -> float:
        """Bytes gained per unit of work (an invocation or an operation); negative when it shrank."""
        return (self.end - self.warm) / self.work


def rss(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (this process by default) in bytes, from ``/proc/PID/status``."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children() -> list[int]:
    """Pids of this process's live children (the pool's workers), from ``/proc``."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def pool_growth(step: Path, warmup: int, n: int) -> tuple[Growth, Growth]:
    """Run ``warmup`` then ``n`` sequential invocations of ``step`` on one warm worker.

    Returns the growth of this process (the parent: pool, RPC, state) and of
    the worker process. Before each measurement the step is invoked with the
    data ``"collect"``, on which the steps of :data:`STEPS` run a full
    collection of their language (Node's ``gc`` is exposed for it), so that
    garbage a generational collector has not reached yet does not count.
    """
    # This runs in a process of its own (in_child): the option reaches only its workers.
    os.environ["NODE_OPTIONS"] = (os.environ.get("NODE_OPTIONS", "") + " --expose-gc").strip()

    async def run() -> tuple[Growth, Growth]:
        others = set(children())  # e.g. a redis-server the caller started
        async with WorkerPool(ms.StateManager(), max_workers=1, idle_timeout=3600) as pool:
            for _ in range(warmup):
                await pool.call(step, trace_id="t")
            (worker,) = set(children()) - others
            await pool.call(step, data="collect", trace_id="t")
            gc.collect()
            parent_warm, worker_warm, warm_blocks = rss(), rss(worker), sys.getallocatedblocks()
            for _ in range(n):
                await pool.call(step, trace_id="t")
            await pool.call(step, data="collect", trace_id="t")
            gc.collect()
            assert set(children()) - others == {worker}, "the pool replaced its worker"
            return (
                Growth(parent_warm, rss(), n, warm_blocks, sys.getallocatedblocks()),
                Growth(worker_warm, rss(worker), n),
            )

    return anyio.run(run)


async def _operations(state: ms.StateManager, count: int, start: int) -> None:
    """``count`` operations over STORE_KEYS keys: set, increment, push/pop, get, delete in turn."""
    for i in range(start, start + count):
        key = f"k{i % STORE_KEYS}"
        kind = i % 5
        if kind == 0:
            await state.set("leak", key, {"i": i, "pad": "x" * 64})
        elif kind == 1:
            await state.increment("leak", "counter")
        elif kind == 2:
            await state.push("leak", "list", i)
            await state.pop("leak", "list")
        elif kind == 3:
            await state.get("leak", key)
        else:
            await state.delete("leak", key)


def store_growth(adapter: ms.StateAdapter, warmup: int, m: int, listener: ms.ChangeListener | None = None) -> Growth:
    """This process's RSS around ``m`` operations on ``adapter`` (behind a StateManager), after ``warmup`` ones.

    ``listener``, when given, is subscribed to the manager's changes (the
    test uses one that keeps every change, to show a leak is caught).
    """

    async def measure() -> tuple[int, int]:
        # A store that compacts (the file store) is measured right after a
        # compaction, so that both measurements see its log, its buffers and
        # its feed window at the same point of their cycle.
        if isinstance(adapter, ms.FileStateAdapter):
            await adapter.compact()
        gc.collect()
        return rss(), sys.getallocatedblocks()

    async def run() -> Growth:
        state = ms.StateManager(adapter)
        if listener is not None:
            state.on_change(listener)
        try:
            await _operations(state, warmup, 0)
            warm, warm_blocks = await measure()
            await _operations(state, m, warmup)
            end, end_blocks = await measure()
            return Growth(warm, end, m, warm_blocks, end_blocks)
        finally:
            await adapter.close()

    return anyio.run(run)


def store_series(adapter: ms.StateAdapter, steps: int, every: int) -> list[Growth]:
    """This process's RSS after each of ``steps`` runs of ``every`` operations on ``adapter``, compacted first.

    One Growth per step, from the reading before it: where a store's RSS
    settles, and whether the objects it holds stay level meanwhile.
    """

    async def run() -> list[Growth]:
        state = ms.StateManager(adapter)
        readings: list[Growth] = []
        last, last_blocks = rss(), sys.getallocatedblocks()
        try:
            for i in range(steps):
                await _operations(state, every, i * every)
                if isinstance(adapter, ms.FileStateAdapter):
                    await adapter.compact()
                gc.collect()
                now, blocks = rss(), sys.getallocatedblocks()
                readings.append(Growth(last, now, every, last_blocks, blocks))
                last, last_blocks = now, blocks
            return readings
        finally:
            await adapter.close()

    return anyio.run(run)


ROOT = Path(__file__).resolve().parents[2]


def in_child(call: str) -> list[Growth]:
    """Evaluate ``call`` (over this module's names, ``ms`` and ``Path``) in a fresh Python process.

    A long-lived process such as a test session holds memory that earlier
    work freed and that new objects reuse without growing the RSS, so a
    leak would not show there; a fresh process has no such reserve.
    """
    code = (
        "import dataclasses, json\nfrom pathlib import Path\nimport motia_state as ms\n"
        "from scripts.benchmarks.leak import pool_growth, store_growth, store_series\n"
        f"result = {call}\n"
        "result = result if isinstance(result, (tuple, list)) else (result,)\n"
        "print(json.dumps([dataclasses.asdict(g) for g in result]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{out.stderr[-3000:]}")
    return [Growth(**fields) for fields in json.loads(out.stdout.strip().splitlines()[-1])]


def _line(name: str, growth: Growth) -> None:
    print(
        f"  {name:<34} {growth.warm / 2**20:8.1f} MiB -> {growth.end / 2**20:8.1f} MiB"
        f"  {(growth.ratio - 1) * 100:+6.2f}%  ({growth.per_unit:+.1f} B per unit)"
        + ("" if growth.warm_blocks is None else f"; Python objects {growth.warm_blocks:,} -> {growth.end_blocks:,}")
    )


def run(options: Options) -> None:
    """Each installed language's warm pool for ``n`` invocations, then each store for ``10 n`` operations.

    Every measurement runs in a fresh process (see :func:`in_child`).
    """
    n = options.n
    # The change feed keeps its last feed_retention records (100,000 by
    # default) and trims lazily, at twice that: a warm-up that has not passed
    # the ring's largest size would count the ring's filling as growth. A
    # step writes one record per invocation; the store's operations write
    # four records per five operations, and its ring first peaks after about
    # 500,000 of them. A Node worker's V8 doubles its young generation as it
    # sees allocations go on, and reaches the largest size after about
    # 350,000 invocations of this step (its heap in use stays level).
    retention = DEFAULT_RETENTION
    warmup = max(n // 10, 5 * retention // 2)
    warmups = {"node": max(warmup, 4 * retention)}
    m = n * 10
    store_warmup = max(n * 6, 6 * retention)
    # A file store's compactions take tens of MiB for a moment (the state and
    # the feed's window, encoded), and its RSS rises to a plateau over about
    # 1,300,000 operations as those bursts land at other places of the heap,
    # while the objects it holds stay level (sys.getallocatedblocks()).
    file_warmup = max(n * 16, 16 * retention)
    print(
        f"\nleak: RSS after warm-up vs at the end (target within 5%); {n:,} invocations after {warmup:,} (Node {warmups['node']:,}),"
        f" {m:,} store operations after {store_warmup:,} (file {file_warmup:,})"
    )
    with tempfile.TemporaryDirectory(prefix="motia-bench-leak-") as tmp:
        for lang, (ext, source) in STEPS.items():
            if lang != "python" and shutil.which(lang) is None:
                print(f"  {lang}: skipped ({lang} is not installed)")
                continue
            step = Path(tmp) / f"leak.step.{ext}"
            step.write_text(source)
            parent, worker = in_child(f"pool_growth(Path({str(step)!r}), {warmups.get(lang, warmup)}, {n})")
            _line(f"{lang} pool: parent", parent)
            _line(f"{lang} pool: worker", worker)
        (memory,) = in_child(f"store_growth(ms.MemoryStateAdapter(), {store_warmup}, {m})")
        _line("store: memory adapter", memory)
        state_file = str(Path(tmp) / "leak.state")
        (file,) = in_child(f"store_growth(ms.FileStateAdapter({state_file!r}, fsync='never'), {file_warmup}, {m})")
        _line("store: file adapter (fsync never)", file)
        # Where a file store's RSS settles: a reading after every 500,000
        # operations (compacted first), 4,000,000 in all.
        series = in_child(f"store_series(ms.FileStateAdapter({state_file + '2'!r}, fsync='never'), 8, 500_000)")
        print(
            "  file store, RSS after each 500,000 operations: "
            + ", ".join(f"{g.end / 2**20:.0f}" for g in series)
            + " MiB; Python objects "
            + ", ".join(f"{g.end_blocks:,}" for g in series)
        )
