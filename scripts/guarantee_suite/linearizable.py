"""Section ``linearizable``: concurrent histories from Python, Node and Ruby steps, checked.

Each lane is one warm worker running invocations of ``steps/history.step.*``
in a loop; every invocation runs a list of operations one after another and
times each on the system's monotonic clock (``CLOCK_MONOTONIC`` in all three
languages, so the times of different processes compare). Two lanes per
language run at once on one shared state. The operations go to two groups:
one for single operations on three keys (a counter, a compareAndSwap
register, a queue), checked key by key, and one where transactions move
between two keys, checked as a whole.

The parent also times each invocation: every operation's times must fall
inside its invocation's, a check that the clocks really are one clock.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import motia_state as ms
from motia_state.runtime import WorkerPool

from .linearizability import Operation, check_history
from .report import Row
from .servers import redis_server

STEPS = Path(__file__).parent / "steps"
LANGUAGES = {"python": "py", "node": "js", "ruby": "rb"}


@dataclass(frozen=True)
class Size:
    """How much each lane does: invocations, and operations per invocation."""

    invocations: int
    ops: int
    lanes_per_language: int = 2


FULL = Size(invocations=20, ops=100)
SHORT = Size(invocations=2, ops=25)


def lane_operations(rng: random.Random, lane: str, count: int, single: str, txg: str) -> list[list[Any]]:
    """``count`` random operations ``[name, group, args]`` for one invocation of one lane."""
    ops: list[list[Any]] = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.12:
            ops.append(["increment", single, ["counter", rng.randint(1, 3)]])
        elif roll < 0.17:
            ops.append(["decrement", single, ["counter", 1]])
        elif roll < 0.22:
            ops.append(["get", single, ["counter"]])
        elif roll < 0.27:
            ops.append(["set", single, ["cas", rng.randrange(4)]])
        elif roll < 0.40:
            ops.append(["compareAndSwap", single, ["cas", rng.randrange(4), rng.randrange(4)]])
        elif roll < 0.45:
            ops.append(["get", single, ["cas"]])
        elif roll < 0.53:
            ops.append(["push", single, ["queue", f"{lane}.{i}"]])
        elif roll < 0.58:
            ops.append(["unshift", single, ["queue", f"{lane}.{i}"]])
        elif roll < 0.63:
            ops.append(["pop", single, ["queue"]])
        elif roll < 0.68:
            ops.append(["shift", single, ["queue"]])
        elif roll < 0.80:
            move = [{"type": "decrement", "key": "a"}, {"type": "increment", "key": "b"}]
            ops.append(["transaction", txg, [move]])
        elif roll < 0.88:
            guard = rng.randrange(3)
            guarded = [
                {"type": "compareAndSwap", "key": "turn", "expected": guard or None, "value": (guard + 1) % 3},
                {"type": "increment", "key": "b", "delta": 2},
            ]
            ops.append(["transaction", txg, [guarded]])
        elif roll < 0.94:
            ops.append(["get", txg, [rng.choice(["a", "b", "turn"])]])
        else:
            ops.append(["increment", txg, ["a", 1]])
    return ops


def in_flight(history: list[Operation]) -> int:
    """The most operations in flight at one instant: shows the lanes really overlapped."""
    events = sorted([(op.invoke, 1) for op in history] + [(op.response or op.invoke, -1) for op in history])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def to_operation(process: str, spec: list[Any], entry: list[Any]) -> Operation:
    """One history entry from the operation sent and what the step recorded."""
    name, group, args = spec
    start, end, result, error = entry
    if name == "transaction":
        key, rest = None, tuple(args)
    else:
        key, rest = args[0], tuple(args[1:])
    return Operation(process, name, group, key, rest, int(start), int(end), result, error)


async def record_history(
    manager: ms.StateManager, languages: list[str], size: Size, seed: str, tag: str
) -> tuple[list[Operation], int]:
    """Run every lane at once; return the history and how many operations fell outside their invocation."""
    history: list[Operation] = []
    outside = 0
    single, txg = f"lin-{tag}", f"lin-{tag}-tx"

    async def lane(pool: WorkerPool, language: str, number: int) -> None:
        nonlocal outside
        name = f"{language}-{number}"
        rng = random.Random(f"{seed}-{tag}-{name}")
        path = STEPS / f"history.step.{LANGUAGES[language]}"
        for call in range(size.invocations):
            ops = lane_operations(rng, f"{name}.{call}", size.ops, single, txg)
            before = time.monotonic_ns()
            entries = await pool.call(path, data={"ops": ops}, trace_id=f"{name}-{call}", timeout=120)
            after = time.monotonic_ns()
            for spec, entry in zip(ops, entries):
                op = to_operation(name, spec, entry)
                outside += not (before <= op.invoke <= op.response <= after)  # type: ignore[operator]
                history.append(op)

    async with WorkerPool(manager, max_workers=size.lanes_per_language) as pool:
        # Start the workers before the lanes so the lanes overlap from their first operation.
        async def warm(language: str) -> None:
            await pool.call(STEPS / f"history.step.{LANGUAGES[language]}", data={"ops": []}, trace_id="warm-up")

        async with anyio.create_task_group() as tg:
            for language in languages:
                for _ in range(size.lanes_per_language):
                    tg.start_soon(warm, language)
        async with anyio.create_task_group() as tg:
            for language in languages:
                for number in range(size.lanes_per_language):
                    tg.start_soon(lane, pool, language, number)
    return history, outside


@asynccontextmanager
async def _adapter(kind: str, where: Path, redis_url: str | None) -> AsyncIterator[ms.StateAdapter]:
    if kind == "memory":
        adapter: ms.StateAdapter = ms.MemoryStateAdapter()
    elif kind == "file":
        adapter = ms.FileStateAdapter(where / "store", fsync="always")
    else:
        assert redis_url is not None
        adapter = ms.RedisStateAdapter(redis_url, key_prefix="guarantees:")
    try:
        yield adapter
    finally:
        await adapter.close()


def run(size: Size, seed: str) -> list[Row]:
    """One row per adapter: operations checked, and how many objects do not linearize."""
    languages = ["python", *(lang for lang in ("node", "ruby") if shutil.which(lang))]
    missing = [lang for lang in ("node", "ruby") if lang not in languages]
    rows = []
    with tempfile.TemporaryDirectory(prefix="motia-guarantees-") as tmp, redis_server(Path(tmp)) as server:
        for kind in ("memory", "file", "redis"):
            if kind == "redis" and server is None:
                rows.append(Row("linearizable", kind, "-", 0, "redis-server is not installed", skipped=True))
                continue
            rows.append(_one(kind, Path(tmp) / kind, server.url if server else None, languages, size, seed))
    if missing:
        for row in rows:
            row.notes = (row.notes + "; " if row.notes else "") + f"{' and '.join(missing)} not installed"
    return rows


def _one(kind: str, where: Path, redis_url: str | None, languages: list[str], size: Size, seed: str) -> Row:
    where.mkdir(parents=True, exist_ok=True)

    async def main() -> tuple[list[Operation], int]:
        async with _adapter(kind, where, redis_url) as adapter:
            return await record_history(ms.StateManager(adapter), languages, size, seed, kind)

    started = time.monotonic()
    history, outside = anyio.run(main)
    recorded = time.monotonic() - started
    started = time.monotonic()
    verdict = check_history(history)
    checked = time.monotonic() - started
    lanes = len(languages) * size.lanes_per_language
    tried = f"{len(history):,} ops, {lanes} workers ({', '.join(languages)}), {verdict.partitions} objects"
    lost = None if verdict.ok is None else len(verdict.failures) + outside
    notes = f"up to {in_flight(history)} in flight; ran {recorded:.1f} s, checked in {checked:.1f} s"
    if outside:
        notes += f"; {outside} operations timed outside their invocation (clocks differ?)"
    if verdict.failures:
        notes += "; " + "; ".join(verdict.failures)
    return Row("linearizable", kind, tried, lost, notes)
