"""Suite ``file``: the file adapter in each fsync mode against sqlite3 in WAL mode, and a set by store size."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

import motia_state as ms
from motia_state.adapters.file import store as file_store

from .harness import Options, best_of, report

DEFAULT_N = 50_000
#: Writer counts of the durable comparison.
WRITERS = (1, 4, 16)
#: Writer processes -> writes per fsync in the latest file contender's round (group commit at work).
WRITES_PER_FSYNC: dict[int, float] = {}


def sqlite_increments(path: str, synchronous: str, n: int, writers: int) -> float:
    """n increments of one key from ``writers`` threads, one connection each."""
    _sqlite_setup(path)

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


def _sqlite_setup(path: str) -> None:
    """A WAL database holding the one row the increments update."""
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("pragma journal_mode=wal")
    setup.execute("create table if not exists state(g text, k text, v text, primary key (g, k))")
    setup.execute("insert or replace into state values ('g', 'k', '0')")
    setup.close()


def _sqlite_process(path: str, synchronous: str, count: int, start: Any, ends: Any) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute(f"pragma synchronous={synchronous}")
    start.wait()
    for _ in range(count):
        db.execute("begin immediate")
        (v,) = db.execute("select v from state where g = 'g' and k = 'k'").fetchone()
        db.execute("update state set v = ? where g = 'g' and k = 'k'", (str(int(v) + 1),))
        db.execute("commit")
    ends.put((time.monotonic(), 0))
    db.close()


def _file_process(path: str, mode: str, count: int, start: Any, ends: Any) -> None:
    fsyncs = 0
    datasync = file_store._datasync

    def counted(fd: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        datasync(fd)

    file_store._datasync = counted  # type: ignore[misc]  # forked: this process's own copy

    async def work() -> None:
        adapter = ms.FileStateAdapter(path, fsync=mode)  # type: ignore[arg-type]
        await anyio.to_thread.run_sync(start.wait)
        for _ in range(count):
            await adapter.increment("g", "k")
        ends.put((time.monotonic(), fsyncs))
        await adapter.close()

    anyio.run(work)


def process_increments(kind: str, path: str, mode: str, n: int, writers: int) -> float:
    """n increments of one key from ``writers`` processes, each writing sequentially through its own handle.

    ``kind`` is "file" (a FileStateAdapter per process in fsync ``mode``) or
    "sqlite" (a connection per process, ``mode`` its synchronous setting).
    The clock starts when every process has opened its store and stops when
    the last one has finished its writes.
    """
    ctx = multiprocessing.get_context("fork")
    target: Callable[[str, str, int, Any, Any], None]
    if kind == "sqlite":
        _sqlite_setup(path)
        target = _sqlite_process
    else:
        anyio.run(ms.FileStateAdapter(path, fsync="never").close)  # created before the writers open it
        target = _file_process
    start = ctx.Barrier(writers + 1)
    ends = ctx.Queue()
    count = max(n // writers, 1)
    procs = [ctx.Process(target=target, args=(path, mode, count, start, ends)) for _ in range(writers)]
    for p in procs:
        p.start()
    start.wait()
    began = time.monotonic()
    done = [ends.get(timeout=600) for _ in procs]
    last = max(t for t, _ in done)
    if kind == "file":
        WRITES_PER_FSYNC[writers] = count * writers / max(sum(f for _, f in done), 1)
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a {kind} writer process failed (exit code {p.exitcode})")
    return float(count * writers / (last - began))


def file_increments(path: str, mode: str, n: int, writers: int) -> float:
    """n increments of one key from ``writers`` tasks sharing one FileStateAdapter in fsync ``mode``."""

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


def set_cost(path: str, entries: int, n: int) -> float:
    """Sets/s on a compacted store of ``entries`` keys (fsync never): a write's cost should not grow with them."""

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


def fsync_cost(root: Path) -> float:
    """Seconds per 64-byte append + fsync in ``root``: what the durable contenders are bound by."""
    probe = root / "probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    start = time.perf_counter()
    for _ in range(50):
        os.write(fd, b"x" * 64)
        os.fsync(fd)
    os.close(fd)
    probe.unlink()
    return (time.perf_counter() - start) / 50


def bare_datasyncs(root: Path, n: int, *, grow: bool) -> float:
    """Writes/s of a bare 100-byte write + fdatasync each, what one waiting writer cannot beat.

    ``grow`` appends to a growing file (each fdatasync also flushes the new
    size); otherwise the writes overwrite space the file already has, as
    the file store's log (grown ahead in zero-filled steps) and sqlite's
    reused WAL do.
    """
    probe = root / "bare"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    datasync = getattr(os, "fdatasync", os.fsync)
    try:
        if not grow:
            os.pwrite(fd, bytes(100 * n), 0)
            os.fsync(fd)
        record = b"x" * 100
        start = time.perf_counter()
        for i in range(n):
            os.pwrite(fd, record, 100 * i)
            datasync(fd)
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)
        probe.unlink()


def run(options: Options) -> None:
    """Fast modes vs sqlite NORMAL, durable modes vs sqlite FULL (1, 4, 16 processes, then tasks), set by size."""
    n, rounds = options.n, options.rounds
    root = Path(tempfile.mkdtemp(prefix="motia-bench-", dir=options.where))
    print(f"store directory: {root} (fsync of a small write here: {fsync_cost(root) * 1e6:.0f} us)")
    counter = iter(range(1_000_000))

    def fresh() -> str:
        return str(root / f"s{next(counter)}")

    n_sync = max(n // 20, 200)  # fsync-bound contenders get fewer operations
    try:
        fast = best_of(
            rounds,
            {
                "file never": lambda: file_increments(fresh(), "never", n, 1),
                "file batch": lambda: file_increments(fresh(), "batch", n, 1),
                "sqlite WAL NORMAL": lambda: sqlite_increments(fresh(), "NORMAL", n, 1),
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
        print(f"\nfsync of a small write here now: {fsync_cost(root) * 1e6:.0f} us")
        for unit in ("processes", "tasks"):
            contenders: dict[str, Callable[[], float]] = {}
            ratios = []
            for w in WRITERS:
                f, q = f"file always, {w} {unit}", f"sqlite WAL FULL, {w} {unit}"
                if unit == "processes":
                    contenders[f] = partial(lambda w: process_increments("file", fresh(), "always", n_sync, w), w)
                    contenders[q] = partial(lambda w: process_increments("sqlite", fresh(), "FULL", n_sync, w), w)
                else:
                    contenders[f] = partial(lambda w: file_increments(fresh(), "always", n_sync, w), w)
                    contenders[q] = partial(lambda w: sqlite_increments(fresh(), "FULL", n_sync, w), w)
                ratios.append((f"{w} {unit}: file always / sqlite FULL (target >= 2.5)", f, q))
            if unit == "processes":
                # What bounds one writer that waits for each write: one fdatasync per write on either side.
                contenders["bare write + fdatasync, overwriting"] = lambda: bare_datasyncs(root, n_sync, grow=False)
                contenders["bare write + fdatasync, growing the file"] = lambda: bare_datasyncs(root, n_sync, grow=True)
                bare, one = "bare write + fdatasync, overwriting", f"sqlite WAL FULL, 1 {unit}"
                ratios += [
                    ("1 writer: the bound (bare overwrite + fdatasync) / sqlite FULL", bare, one),
                    ("1 writer: file always / the bound", f"file always, 1 {unit}", bare),
                    (
                        "bare fdatasync: overwriting / growing the file",
                        bare,
                        "bare write + fdatasync, growing the file",
                    ),
                ]
            durable = best_of(rounds, contenders)
            report(
                f"durable increments of one key from {unit} ({n_sync:,} per round; sqlite: "
                + ("a connection per process)" if unit == "processes" else "a thread and connection per writer)"),
                durable,
                ratios,
            )
            if unit == "processes":
                shared = ", ".join(f"{w} processes {WRITES_PER_FSYNC[w]:.1f}" for w in WRITERS if w in WRITES_PER_FSYNC)
                print(f"  file always, writes per fsync (last round): {shared}")
        sizes = best_of(
            rounds,
            {
                "set, 1k entries": lambda: set_cost(fresh(), 1_000, n),
                "set, 100k entries": lambda: set_cost(fresh(), 100_000, n),
            },
        )
        report(
            "one set (fsync never) by store size",
            sizes,
            [("cost at 100k / cost at 1k (target <= 1.3)", "set, 1k entries", "set, 100k entries")],
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
