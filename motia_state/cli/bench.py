"""``bench``: operations per second of the main state operations on a store."""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._urls import redacted
from ._common import EXIT_OK, Output, open_store, positive_int

if TYPE_CHECKING:
    from ..manager import StateManager

__all__ = ["add_bench"]

GROUP = "motia-bench"


def add_bench(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``bench`` parser."""
    bench = sub.add_parser(
        "bench",
        parents=parents,
        help="operations per second of the main state operations on a store",
        description=f"Measure increment, update, set, get, a guarded transaction and a batch of 100 on the "
        f"store, one caller, best of --rounds rounds. Writes only to the group {GROUP!r} and clears it after.",
    )
    bench.add_argument("-n", type=positive_int, default=2000, help="operations per round (default 2000)")
    bench.add_argument("--rounds", type=positive_int, default=3, help="rounds; the best is kept (default 3)")
    bench.set_defaults(command_fn=run_bench)


async def _rate(call: Callable[[], Awaitable[Any]], n: int, rounds: int, per_call: int = 1) -> float:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            await call()
        best = max(best, n * per_call / (time.perf_counter() - start))
    return best


def _cases(s: StateManager) -> list[tuple[str, Callable[[], Awaitable[Any]], int]]:
    guarded = [
        {"type": "check", "key": "n", "op": "gte", "value": 0},
        {"type": "increment", "key": "n"},
    ]
    hundred = [{"type": "increment", "key": f"k{i}"} for i in range(100)]
    return [
        ("increment", lambda: s.increment(GROUP, "n"), 1),
        ("update", lambda: s.update(GROUP, "n", lambda v: v + 1), 1),
        ("set", lambda: s.set(GROUP, "v", {"a": 1}), 1),
        ("get", lambda: s.get(GROUP, "v"), 1),
        ("transaction (check + increment)", lambda: s.transaction(GROUP, guarded), 1),
        ("batch of 100 increments (per op)", lambda: s.batch(GROUP, hundred), 100),
    ]


async def run_bench(args: argparse.Namespace, out: Output) -> int:
    """Run each case and print a table (JSON in a pipe)."""
    rows: list[dict[str, Any]] = []
    async with open_store(args.state, args) as s:
        await s.clear(GROUP)
        await s.set(GROUP, "n", 0)
        cases = _cases(s)
        with out.progress("benchmarking", len(cases)) as advance:
            for name, call, per_call in cases:
                n = max(1, args.n // per_call)
                rows.append({"operation": name, "opsPerSecond": round(await _rate(call, n, args.rounds, per_call))})
                advance(1)
        await s.clear(GROUP)

    def human(doc: list[dict[str, Any]]) -> Any:
        from rich.table import Table

        table = Table(
            "operation", "ops/s", box=None, header_style="bold", title=f"motia-state bench on {redacted(args.state)}"
        )
        for row in doc:
            table.add_row(row["operation"], f"{row['opsPerSecond']:,}")
        return table

    out.data(rows, human)
    return EXIT_OK
