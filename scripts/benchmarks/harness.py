"""What every suite shares: interleaved rounds, the report, a throwaway redis-server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.helpers import RedisServer


@dataclass(frozen=True)
class Options:
    """The command line as a suite sees it: operations per round, rounds, and the file suite's directory."""

    n: int
    rounds: int
    where: str | None = None


def best_of(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run each contender once per round, interleaved; keep each one's best ops/s."""
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, run in contenders.items():
            best[name] = max(best[name], run())
    return best


def report(title: str, results: dict[str, float], ratios: list[tuple[str, str, str]]) -> None:
    """Print one line per contender, then each ``(label, a, b)`` ratio a/b whose two sides both ran."""
    print(f"\n{title}")
    width = max(len(n) for n in results)
    for name, ops in results.items():
        print(f"  {name:<{width}}  {ops:>14,.0f} ops/s")
    for label, a, b in ratios:
        if results.get(a) and results.get(b):
            print(f"  {label}: {results[a] / results[b]:.2f}x")


def timed(n: int, fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], float]:
    """A contender: ``fn`` run on a fresh event loop, as ``n`` operations per second of wall time."""

    def run() -> float:
        start = time.perf_counter()
        asyncio.run(fn())
        return n / (time.perf_counter() - start)

    return run


@contextmanager
def redis_server() -> Iterator[RedisServer | None]:
    """A redis-server without persistence on a free loopback port, or None when it is not installed.

    The same server the test suite starts (``tests.helpers.RedisServer``),
    stopped and its directory removed on exit. The test helpers (and pytest
    with them) are imported here, not at the top, so that suites without
    Redis measure a process holding only what they use.
    """
    if shutil.which("redis-server") is None:
        yield None
        return
    from tests.helpers import RedisServer

    with tempfile.TemporaryDirectory(prefix="motia-bench-redis-") as directory:
        server = RedisServer(directory).start()
        try:
            yield server
        finally:
            server.stop()
