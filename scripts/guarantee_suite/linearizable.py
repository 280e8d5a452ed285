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

On the file store and Redis a second runtime (another Python process with
its own adapter on the same store, its own pool and its own six workers,
started by ``python -m scripts.guarantee_suite.linearizable``) runs its
lanes at the same time, and the two histories are checked as one: two
runtimes sharing a store keep the guarantees between them.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
    #: runtimes sharing the file store or Redis (the memory adapter has one)
    runtimes: int = 2


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
    manager: ms.StateManager,
    languages: list[str],
    size: Size,
    seed: str,
    tag: str,
    *,
    runtime: int = 0,
    ready: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[Operation], int]:
    """Run every lane at once; return the history and how many operations fell outside their invocation.

    ``ready`` is awaited once every worker has started, just before the
    lanes begin (a second runtime uses it to start at the same moment).
    """
    history: list[Operation] = []
    outside = 0
    single, txg = f"lin-{tag}", f"lin-{tag}-tx"

    async def lane(pool: WorkerPool, language: str, number: int) -> None:
        nonlocal outside
        name = f"r{runtime}-{language}-{number}"
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
        if ready is not None:
            await ready()
        async with anyio.create_task_group() as tg:
            for language in languages:
                for number in range(size.lanes_per_language):
                    tg.start_soon(lane, pool, language, number)
    return history, outside


def _config(kind: str, where: Path, redis_url: str | None) -> dict[str, Any]:
    if kind == "memory":
        return {"adapter": "memory"}
    if kind == "file":
        return {"adapter": "file", "path": str(where / "store"), "fsync": "always"}
    return {"adapter": "redis", "url": redis_url, "key_prefix": "guarantees:"}


@asynccontextmanager
async def _adapter(config: dict[str, Any]) -> AsyncIterator[ms.StateAdapter]:
    adapter = ms.create_state_adapter(config)
    try:
        yield adapter
    finally:
        await adapter.close()


def _encode(history: list[Operation], outside: int) -> str:
    return json.dumps({"outside": outside, "history": [list(op.__dict__.values()) for op in history]})


def _decode(text: str) -> tuple[list[Operation], int]:
    out = json.loads(text)
    return [Operation(*fields) for fields in out["history"]], out["outside"]


class _SecondRuntime:
    """Another process running the same lanes on its own adapter over the same store."""

    def __init__(self, config: dict[str, Any], languages: list[str], size: Size, seed: str, tag: str) -> None:
        job = {"config": config, "languages": languages, "size": size.__dict__, "seed": seed, "tag": tag}
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.guarantee_suite.linearizable", json.dumps(job)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        """Block until every worker of the other runtime has started."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line != "ready\n":
            raise RuntimeError(f"the second runtime did not start: {line!r}")

    def go(self) -> None:
        """Let the other runtime's lanes begin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def result(self) -> tuple[list[Operation], int]:
        """Its history, once it is done."""
        assert self.proc.stdout is not None
        text = self.proc.stdout.read()
        if self.proc.wait(timeout=600) != 0:
            raise RuntimeError(f"the second runtime failed with exit code {self.proc.returncode}")
        return _decode(text)


async def _child(job: dict[str, Any]) -> None:
    async def ready() -> None:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)

    async with _adapter(job["config"]) as adapter:
        history, outside = await record_history(
            ms.StateManager(adapter),
            job["languages"],
            Size(**job["size"]),
            job["seed"],
            job["tag"],
            runtime=1,
            ready=ready,
        )
    print(_encode(history, outside), flush=True)


def run(size: Size, seed: str) -> list[Row]:
    """One row per adapter: operations checked, and how many objects do not linearize."""
    languages = ["python", *(lang for lang in ("node", "ruby") if shutil.which(lang))]
    missing = [lang for lang in ("node", "ruby") if lang not in languages]
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="motia-guarantees-") as tmp,
        redis_server(Path(tmp) / "redis") as server,
    ):
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

    config = _config(kind, where, redis_url)
    runtimes = 1 if kind == "memory" else size.runtimes
    others = [_SecondRuntime(config, languages, size, seed, kind) for _ in range(runtimes - 1)]

    async def ready() -> None:
        for other in others:
            await anyio.to_thread.run_sync(other.wait_ready)
            other.go()

    async def main() -> tuple[list[Operation], int]:
        async with _adapter(config) as adapter:
            return await record_history(ms.StateManager(adapter), languages, size, seed, kind, ready=ready)

    started = time.monotonic()
    history, outside = anyio.run(main)
    for other in others:
        more, more_outside = other.result()
        history += more
        outside += more_outside
    recorded = time.monotonic() - started
    started = time.monotonic()
    verdict = check_history(history)
    checked = time.monotonic() - started
    lanes = len(languages) * size.lanes_per_language
    tried = f"{len(history):,} ops, {lanes} workers ({', '.join(languages)})"
    tried += f" x {runtimes} runtimes" if runtimes > 1 else ""
    tried += f", {verdict.partitions} objects"
    lost = None if verdict.ok is None else len(verdict.failures) + outside
    notes = f"up to {in_flight(history)} in flight; ran {recorded:.1f} s, checked in {checked:.1f} s"
    if outside:
        notes += f"; {outside} operations timed outside their invocation (clocks differ?)"
    if verdict.failures:
        notes += "; " + "; ".join(verdict.failures)
    return Row("linearizable", kind, tried, lost, notes)


if __name__ == "__main__":
    # The second runtime: a job as JSON in argv[1]; prints "ready", waits for a line, prints its history.
    anyio.run(_child, json.loads(sys.argv[1]))
