"""Suite ``feed``: what the change feed costs a write, feed on (the default) vs off (``feed_retention=0``).

``python -m scripts.benchmarks.feed --floor`` prints, besides, what each
part of a record costs (see :func:`floor`).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

import motia_state as ms
from motia_state.feed import DEFAULT_RETENTION

from .harness import Options, report

DEFAULT_N = 50_000

Factory = Callable[[int], ms.StateAdapter]


def _sets(n: int, make: Factory, retention: int) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        adapter = make(retention)
        value = {"status": "active", "score": 1}
        for i in range(n):
            await adapter.set("g", f"k{i % 100}", value)
        await adapter.close()

    return run


def _increments(n: int, make: Factory, retention: int) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        adapter = make(retention)
        for _ in range(n):
            await adapter.increment("g", "n")
        await adapter.close()

    return run


def run(options: Options) -> None:
    """Sets of a small object (100 keys) and increments of one key, memory and file (fsync "batch"), feed on vs off."""
    n, rounds = options.n, options.rounds
    where = tempfile.mkdtemp(prefix="motia-bench-feed-", dir=options.where)
    counter = [0]

    def memory(retention: int) -> ms.StateAdapter:
        return ms.MemoryStateAdapter(feed_retention=retention)

    def file(retention: int) -> ms.StateAdapter:
        counter[0] += 1  # a fresh store each round: no round reads another's log
        return ms.FileStateAdapter(f"{where}/s{counter[0]}", feed_retention=retention)

    contenders: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
    ratios: list[tuple[str, str, str]] = []
    default = DEFAULT_RETENTION
    for adapter_name, make in (("memory", memory), ("file", file)):
        for op_name, workload in (("set", _sets), ("increment", _increments)):
            off = f"{adapter_name} {op_name}, feed off"
            on = f"{adapter_name} {op_name}, feed on"
            contenders[off] = workload(n, make, 0)
            contenders[on] = workload(n, make, default)
            ratios.append((f"{adapter_name} {op_name}: off/on (target <= 1.3)", off, on))
    # Wall time and this process's CPU time of the same runs: the CPU time
    # is what the other processes on a shared machine disturb least.
    wall = dict.fromkeys(contenders, 0.0)
    cpu = dict.fromkeys(contenders, 0.0)
    try:
        for _ in range(rounds):
            for name, fn in contenders.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                asyncio.run(fn())
                wall[name] = max(wall[name], n / (time.perf_counter() - start))
                cpu[name] = max(cpu[name], n / max(time.process_time() - start_cpu, 1e-9))
    finally:
        shutil.rmtree(where, ignore_errors=True)
    report(f"feed: {n:,} sequential writes per contender, best of {rounds} (wall time)", wall, ratios)
    report(f"feed: the same runs in process CPU time (best of {rounds})", cpu, ratios)


# -- the floor: the feed's record replaced by stand-ins -----------------------
#
# ``python -m scripts.benchmarks.feed --floor`` (with the project's venv):
# the same loops on a bare MemoryStateAdapter, with the record that an
# increment (MemoryStateAdapter.increment) or a set (StateTable.write) makes
# replaced by cheaper stand-ins, to show what each part of a record costs.
# The stand-ins are made from the shipped source by replacing its record
# code: when that code changes, the replacement fails loudly here.


def _variants(
    fn: Callable[..., Any], module: Any, cut: tuple[str, str], stand_ins: dict[str, str | None]
) -> dict[str, Any]:
    """``fn`` rebuilt once per stand-in: its lines from the first ``cut[0]`` through the last ``cut[1]`` replaced.

    A stand-in of None is ``fn`` as shipped.
    """
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(fn))
    first = source.index(cut[0])
    start = source.rindex("\n", 0, first) + 1
    indent = source[start:first]
    end = source.rindex(cut[1]) + len(cut[1])
    built: dict[str, Any] = {}
    for label, body in stand_ins.items():
        if body is None:
            built[label] = fn
            continue
        text = source[:start] + textwrap.indent(textwrap.dedent(body), indent) + source[end:]
        space: dict[str, Any] = {}
        # A copy of the module's names plus _SPARE, a scratch list some
        # stand-ins keep state in: nothing is added to the module itself.
        names = {**module.__dict__, "_SPARE": [0.0, 0.0]}
        exec(text, names, space)  # our own source, edited above
        built[label] = space[fn.__name__]
    return built


_INCREMENT_STAND_INS: dict[str, str | None] = {
    "the branch only": "pass\n",
    "one reference": "ring.slots.append(new)\n",
    "six references, the time a constant": "ring.slots.extend((trace_id, key, old, new, 0.0, None))\n",
    "six references and time.time()": "ring.slots.extend((trace_id, key, old, new, _clock(), None))\n",
    "the same, checking for a write context": """
        slots = ring.slots
        if _CONTEXT_USED[0]:
            depth, origin = _write_context()
        slots.extend((trace_id, key, old, new, _clock(), None))
        """,
    "the same, comparing the length with the limit (as shipped)": None,
    # Two ways out that were tried: neither allocating a time object per
    # record nor growing one long list is what the record costs.
    "as shipped, the time object reused within its millisecond": """
        slots = ring.slots
        if _CONTEXT_USED[0]:
            depth, origin = _write_context()
        at = _clock()
        if at < _SPARE[0]:
            at = _SPARE[1]
        else:
            _SPARE[0] = (int(at * 1000) + 1) / 1000 - 1e-6
            _SPARE[1] = at
        slots.extend((trace_id, key, old, new, at, None))
        if len(slots) > ring.limit:
            ring.settle()
        """,
    "as shipped, appended to a list set aside every 1,000 records": """
        slots = ring.slots
        if _CONTEXT_USED[0]:
            depth, origin = _write_context()
        slots.extend((trace_id, key, old, new, _clock(), None))
        if len(slots) > 6000:
            _SPARE.append(slots)
            ring.slots = []
        """,
}

_SET_STAND_INS: dict[str, str | None] = {
    "the branch only": "pass\n",
    "one reference (the old value kept)": "self.feed.slots.append(old)\n",
    "six references, the time a constant": "self.feed.slots.extend((group, key, old, new, 0.0, op))\n",
    "six references and time.time()": "self.feed.slots.extend((group, key, old, new, _clock(), op))\n",
    "the same, sized (the new value's size from its import), limits checked": """
        ring = self.feed
        if size < 0:
            t = type(new)
            size = 24 if t in _FIXED or (t is int and -_SMALL < new < _SMALL) else len(_encode(new))
        size += _OVERHEAD + len(group) + len(key) + 24
        info: Any = op
        if _CONTEXT_USED[0]:
            depth, origin = _write_context()
            if depth or origin is not None:
                info = (op, depth, origin)
        slots = ring.slots
        slots.extend((group, key, old, new, _clock(), info))
        ring.sizes.append(size)
        ring.room -= size
        if ring.room < 0 or len(slots) > ring.limit:
            ring.settle()
        """,
    "the same, the old value encoded to size it (as shipped)": None,
}


def floor(n: int = 100_000, rounds: int = 11) -> None:
    """Print what each part of a feed record costs an increment and a set of the memory adapter (CPU time)."""
    import os

    from motia_state.adapters import memory as memory_module
    from motia_state.adapters import table as table_module

    memory_class, table_class = ms.MemoryStateAdapter, table_module.StateTable
    increments = _variants(
        memory_class.increment,
        memory_module,
        ("slots = ring.slots\n", "ring.settle()\n"),
        _INCREMENT_STAND_INS,
    )
    sets = _variants(
        table_class.write,
        table_module,
        ("ring = self.feed\n", "ring.settle()\n"),
        _SET_STAND_INS,
    )
    shipped_increment, shipped_write = memory_class.increment, table_class.write

    def memory(retention: int) -> ms.StateAdapter:
        return ms.MemoryStateAdapter(feed_retention=retention)

    try:
        for title, workload, count, patch, variants in (
            ("an increment of one key", _increments, n, "increment", increments),
            ("a set of a small object over 100 keys", _sets, n // 2, "write", sets),
        ):
            runs = {"feed off": (workload(count, memory, 0), None)}
            for label, fn in variants.items():
                runs[label] = (workload(count, memory, DEFAULT_RETENTION), fn)
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(rounds):
                for label, (run_fn, fn) in runs.items():
                    if patch == "increment":
                        memory_class.increment = fn or shipped_increment  # type: ignore[method-assign]
                    else:
                        table_class.write = fn or shipped_write  # type: ignore[method-assign]
                    start = time.process_time()
                    asyncio.run(run_fn())
                    best[label] = min(best[label], time.process_time() - start)
                memory_class.increment = shipped_increment  # type: ignore[method-assign]
                table_class.write = shipped_write  # type: ignore[method-assign]
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"\n{title}: {count:,} writes, best of {rounds}, CPU time (load average {load})")
            width = max(len(label) for label in runs)
            off = best["feed off"]
            for label, seconds in best.items():
                print(f"  {label:<{width}}  {seconds / count * 1e6:6.3f} us  {seconds / off:.2f}x")
    finally:
        memory_class.increment = shipped_increment  # type: ignore[method-assign]
        table_class.write = shipped_write  # type: ignore[method-assign]


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--floor"]:
        sys.exit("usage: python -m scripts.benchmarks.feed --floor")
    floor()
