"""Section ``redis``: redis-server (appendfsync always) SIGKILLed and restarted under writers.

Several writers, each with its own adapter, store one new entry after another
(``set`` of a key never written before) and remember which were
acknowledged. Mid-run the server is SIGKILLed, stays down for a moment and
is restarted on the same port and files; this repeats. Measured:

- acknowledged writes lost: every acknowledged entry is read back at the end
  (with ``appendfsync always`` Redis writes its log before it replies);
- time to UNAVAILABLE: from the kill until each writer's operation fails
  with UNAVAILABLE (the slowest writer);
- time to recover: from the moment redis-server is started again until
  each writer's next write is acknowledged (the slowest writer); the time
  the server itself takes to accept connections again is shown beside it.

An operation that failed may still have been applied; it is not counted
either way (only acknowledged writes are promised).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

import motia_state as ms

from .report import Row
from .servers import redis_server

if TYPE_CHECKING:
    from tests.helpers import RedisServer

GROUP = "restart"


@dataclass(frozen=True)
class Size:
    """Kill/restart cycles, writers, and how long the server stays down each time."""

    cycles: int
    writers: int = 4
    down: float = 0.3
    up: float = 0.5


FULL = Size(cycles=5)
SHORT = Size(cycles=1)


@dataclass
class _Writer:
    acked: list[str] = field(default_factory=list)
    failures: int = 0
    failed_at: list[float] = field(default_factory=list)  # first UNAVAILABLE after each kill
    recovered_at: list[float] = field(default_factory=list)  # first acknowledgement after each restart


async def _write(number: int, url: str, writer: _Writer, stop: anyio.Event, phase: list[str]) -> None:
    adapter = ms.RedisStateAdapter(url, key_prefix="guarantees:", timeout=1.0)
    failing = False
    i = 0
    try:
        while not stop.is_set():
            i += 1
            key = f"w{number}-{i}"
            try:
                await adapter.set(GROUP, key, i)
            except ms.UnavailableError:
                writer.failures += 1
                if not failing:
                    failing = True
                    writer.failed_at.append(time.monotonic())
                await anyio.sleep(0.01)
                continue
            writer.acked.append(key)
            if failing:
                failing = False
                writer.recovered_at.append(time.monotonic())
            if phase[0] == "down" and not failing:
                await anyio.sleep(0)
    finally:
        await adapter.close()


async def _missing(url: str, keys: list[str]) -> int:
    adapter = ms.RedisStateAdapter(url, key_prefix="guarantees:")
    try:
        stored = set(await adapter.keys(GROUP))
    finally:
        await adapter.close()
    return sum(1 for k in keys if k not in stored)


async def _cycle_run(server: RedisServer, size: Size) -> tuple[list[_Writer], list[float], list[float], list[float]]:
    writers = [_Writer() for _ in range(size.writers)]
    kills: list[float] = []
    ups: list[float] = []  # when each restart began
    ready: list[float] = []  # how long redis-server took to answer PING after each restart
    stop = anyio.Event()
    phase = ["up"]
    async with anyio.create_task_group() as tg:
        for number, writer in enumerate(writers):
            tg.start_soon(_write, number, server.url, writer, stop, phase)
        for _ in range(size.cycles):
            await anyio.sleep(size.up)
            phase[0] = "down"
            kills.append(time.monotonic())
            await anyio.to_thread.run_sync(lambda: server.stop(kill=True))
            await anyio.sleep(size.down)
            ups.append(time.monotonic())
            await anyio.to_thread.run_sync(server.start)
            ready.append(time.monotonic() - ups[-1])
            phase[0] = "up"
        await anyio.sleep(size.up)
        stop.set()
    return writers, kills, ups, ready


def run(size: Size, seed: str) -> list[Row]:
    """One row: acknowledged writes lost over every kill, the slowest time to UNAVAILABLE and to recover."""
    del seed  # the kills are timed, not drawn
    with (
        tempfile.TemporaryDirectory(prefix="motia-guarantees-redis-") as tmp,
        redis_server(Path(tmp) / "redis", appendfsync="always") as server,
    ):
        if server is None:
            return [Row("redis", "appendfsync always", "-", 0, "redis-server is not installed", skipped=True)]
        writers, kills, ups, ready = anyio.run(_cycle_run, server, size)
        acked = [k for w in writers for k in w.acked]
        lost = anyio.run(_missing, server.url, acked)
    to_unavailable: list[float] = []
    to_recover: list[float] = []
    for w in writers:
        for cycle, (kill, up) in enumerate(zip(kills, ups)):
            until = kills[cycle + 1] if cycle + 1 < len(kills) else float("inf")
            failed = [t for t in w.failed_at if kill <= t < until]
            recovered = [t for t in w.recovered_at if kill <= t < until]
            # a writer that saw no failure in a cycle did not need recovering
            if failed:
                to_unavailable.append(failed[0] - kill)
                if recovered:
                    to_recover.append(recovered[0] - up)
    unknown = sum(w.failures for w in writers)
    notes = f"{len(acked):,} acknowledged, {unknown:,} failed with UNAVAILABLE"
    if to_unavailable:
        notes += f"; UNAVAILABLE after at most {max(to_unavailable) * 1000:.0f} ms"
    if to_recover:
        notes += f"; recovered at most {max(to_recover) * 1000:.0f} ms after the restart began"
        notes += f" (redis-server itself answered after {min(ready) * 1000:.0f}-{max(ready) * 1000:.0f} ms)"
    unrecovered = len(to_unavailable) - len(to_recover)
    if unrecovered:
        notes += f"; {unrecovered} writer-cycles never recovered"
    tried = f"{size.cycles} kill -9 + restart, {size.writers} writers, down {size.down * 1000:.0f} ms each"
    return [Row("redis", "appendfsync always", tried, lost + unrecovered, notes)]
