"""The file adapter: durability, recovery, processes sharing one directory.

The crash tests run real processes and real SIGKILLs; the race tests run
several processes on one store. The shared vectors run in test_vectors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import os
import random
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.adapters.base import READ_OPERATIONS, WRITE_OPERATIONS, write_operations
from motia_state.adapters.file import format as file_format
from motia_state.adapters.file import locking
from motia_state.adapters.file import store as store_module
from motia_state.adapters.file.locking import CommitMarks
from motia_state.errors import error_for_code

from ..helpers import finish, go, rest_of_output, start_child

LOG_HEADER = 18  # magic (8) + version (2) + generation (8)


def start_writer(path: Path, mode: str, job: str, count: int, compact_min: int = 4 << 20) -> subprocess.Popen[str]:
    config = {"adapter": "file", "path": str(path), "fsync": mode, "compact_min_bytes": compact_min}
    return start_child(config, job, count)


async def open_store(path: Path, **kwargs: Any) -> ms.FileStateAdapter:
    return ms.FileStateAdapter(path, **kwargs)


def record(changes: bytes, version: int = 1) -> bytes:
    """A log record whose body is the type byte ``version`` (1: CHANGES) and ``changes``."""
    body = bytes([version]) + changes
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


# ------------------------------------------------------------------ basics


async def test_state_survives_close_and_reopen_for_every_kind_of_write(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.set("g", "obj", {"x": 1})
    await a.set_field("g", "obj", "y", [1, 2])
    await a.delete_field("g", "obj", "x")
    await a.push("g", "list", 1, 2, 3)
    await a.unshift("g", "list", 0)
    await a.pop("g", "list")
    await a.shift("g", "list")
    await a.increment("g", "n", 2**70)
    await a.decrement("g", "f", 0.5)
    await a.compare_and_swap("g", "cas", None, "won")
    await a.update("g", "upd", lambda v: (v or 0) + 7)
    await a.set("g", "gone", 1)
    await a.delete("g", "gone")
    await a.transaction("g", [{"type": "set", "key": "t1", "value": None}, {"type": "increment", "key": "t2"}])
    await a.batch("g", [{"type": "set", "key": "b1", "value": "x"}, {"type": "pop", "key": "obj"}])
    await a.set("other", "k", True)
    await a.clear("other")
    expected = {k: await a.get("g", k) for k in await a.keys("g")}
    await a.close()

    b = ms.FileStateAdapter(tmp_path / "s")
    assert {k: await b.get("g", k) for k in await b.keys("g")} == expected
    assert expected["n"] == 2**70 and expected["f"] == -0.5 and expected["list"] == [1, 2]
    assert expected["obj"] == {"y": [1, 2]} and expected["upd"] == 7 and expected["t1"] is None
    assert await b.exists("g", "t1") is True
    assert await b.groups() == ["g"]
    await b.close()


async def test_two_adapters_of_one_process_compacting_at_once_keep_the_store_whole(tmp_path: Path) -> None:
    # Two flocks, as two processes, but one pid: each compaction writes its
    # snapshot (without the lock) into files of its own, never into the other's.
    for attempt in range(5):
        path = tmp_path / f"s{attempt}"
        adapters = [ms.FileStateAdapter(path, fsync="never", compact_min_bytes=2000) for _ in range(2)]

        async def work(adapter: ms.FileStateAdapter, w: int) -> None:
            for i in range(400):
                await adapter.increment("g", f"k{w}")
                if i % 7 == 0:
                    await asyncio.sleep(0.001)

        await asyncio.gather(*(work(adapters[w % 2], w) for w in range(6)))
        for adapter in adapters:
            await adapter.close()
        reopened = ms.FileStateAdapter(path)
        assert [await reopened.get("g", f"k{w}") for w in range(6)] == [400] * 6
        await reopened.close()


async def test_reopen_after_compaction_and_after_clear(tmp_path: Path) -> None:
    # Without a feed, compaction leaves the new log empty (the feed's window is tested in tests/feed).
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never", feed_retention=0)
    for i in range(200):
        await a.set(f"g{i % 3}", f"k{i}", {"i": i})
    await a.compact()
    assert (tmp_path / "s" / "snapshot").exists()
    assert os.path.getsize(tmp_path / "s" / "log") == LOG_HEADER
    await a.clear("g1")
    await a.set("g0", "after", 1)
    await a.close()
    b = ms.FileStateAdapter(tmp_path / "s")
    assert await b.groups() == ["g0", "g2"]
    assert len(await b.keys("g0")) == 68 and await b.get("g0", "after") == 1
    assert await b.get("g2", "k5") == {"i": 5}
    await b.compact()
    await b.close()
    c = ms.FileStateAdapter(tmp_path / "s")
    assert await c.groups() == ["g0", "g2"] and await c.get("g0", "k0") == {"i": 0}
    await c.close()


async def test_automatic_compaction_keeps_every_write_and_bounds_the_log(tmp_path: Path, caplog: Any) -> None:
    # Without a feed: the new log holds no history (the feed's window is tested in tests/feed).
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never", compact_min_bytes=2000, feed_retention=0)
    # Compactions run on a thread of their own: on a loaded machine they may
    # take more writes to come round, so the writes go on until enough ran.
    writes = 0
    while a._log.gen < 5 and writes < 100_000:
        await a.increment("g", "n")
        await a.set("g", f"k{writes % 50}", writes)
        writes += 1
    assert a._log.gen >= 5, "the log outgrew the snapshot many times: compactions ran on their own"
    await a.compact()  # nothing is written meanwhile: the new log holds no records
    assert a._log.offset == LOG_HEADER
    await a.close()
    assert not [r for r in caplog.records if "compaction failed" in r.getMessage()]
    b = ms.FileStateAdapter(tmp_path / "s")
    assert await b.get("g", "n") == writes
    last = writes - 1
    assert await b.get("g", f"k{last % 50}") == last
    await b.close()


async def test_names_never_become_paths(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s")
    for name in ("../escape", "/etc/passwd", "a/b", "..", "con", "x\\y"):
        await a.set(name, name, name)
    await a.compact()
    assert sorted(os.listdir(tmp_path / "s")) == ["lock", "log", "snapshot"]
    assert sorted(os.listdir(tmp_path)) == ["s"]
    assert await a.get("../escape", "../escape") == "../escape"
    await a.close()


async def test_directory_is_private_and_files_owner_only(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        a = ms.FileStateAdapter(tmp_path / "s")
        await a.set("g", "k", 1)
        await a.compact()
        await a.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700
    for name in os.listdir(tmp_path / "s"):
        assert stat.S_IMODE(os.stat(tmp_path / "s" / name).st_mode) == 0o600, name


async def test_a_closed_adapter_refuses_operations(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s")
    await a.set("g", "k", 1)
    await a.close()
    for call in (a.get("g", "k"), a.set("g", "k", 2), a.keys("g"), a.groups(), a.transaction("g", [])):
        with pytest.raises(ms.UnavailableError, match="closed") as info:
            await call
        assert info.value.code == "UNAVAILABLE"
    await a.close()  # closing twice is harmless


def test_bad_options_are_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ms.InvalidArgumentError, match="fsync"):
        ms.FileStateAdapter(tmp_path / "s", fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ms.InvalidArgumentError, match="fsync_interval_ms"):
        ms.FileStateAdapter(tmp_path / "s", fsync_interval_ms=0)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ms.StateError):
        ms.FileStateAdapter(tmp_path / "plain")


async def test_factory_builds_file_adapters(tmp_path: Path) -> None:
    a = ms.create_state_adapter(f"file:{tmp_path / 's'}")
    assert isinstance(a, ms.FileStateAdapter) and a.fsync == "batch"
    await a.set("g", "k", 1)
    await a.close()
    b = ms.create_state_adapter({"adapter": "file", "path": str(tmp_path / "s"), "fsync": "always"})
    assert isinstance(b, ms.FileStateAdapter) and b.fsync == "always"
    assert await b.get("g", "k") == 1
    await b.close()
    with pytest.raises(ms.InvalidArgumentError, match=r"^path"):
        ms.create_state_adapter({"adapter": "file"})
    with pytest.raises(ms.InvalidArgumentError, match=r"^fsnyc"):
        ms.create_state_adapter({"adapter": "file", "path": str(tmp_path), "fsnyc": "always"})
    with pytest.raises(ms.InvalidArgumentError, match=r"^fsync"):
        ms.create_state_adapter({"adapter": "file", "path": str(tmp_path / "t"), "fsync": "sometimes"})


# -------------------------------------------------------------- durability


async def test_always_mode_shares_fsyncs_between_concurrent_writers(tmp_path: Path, monkeypatch: Any) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    calls = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.002)  # a disk, not tmpfs: give writers time to pile up
        real_fsync(fd)

    monkeypatch.setattr(store_module, "_datasync", counting_fsync)

    async def writer(i: int) -> None:
        for _ in range(25):
            await a.increment("g", "n")

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(writer, i)
    assert await a.get("g", "n") == 200
    assert a._log.synced == a._log.appended == 200
    assert len(calls) < 100, f"{len(calls)} fsyncs for 200 writes: no group commit"
    await a.close()


async def test_after_a_failed_fsync_nothing_more_is_acknowledged_until_the_store_is_opened_again(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # A failed fsync may have lost dirty pages that a later, successful
    # fsync no longer covers: acknowledging writes after it would promise
    # durability for a log with a hole in it.
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    await a.set("g", "before", 1)
    failures = [OSError(errno.EIO, "Input/output error")]

    def flaky(fd: int) -> None:
        if failures:
            raise failures.pop()
        os.fsync(fd)

    monkeypatch.setattr(store_module, "_datasync", flaky)
    with pytest.raises(ms.UnavailableError, match="fsync"):
        await a.set("g", "lost", 2)
    assert not failures, "the disk works again"
    with pytest.raises(ms.UnavailableError, match="fsync"):
        await a.set("g", "after", 3)
    with pytest.raises(ms.UnavailableError, match="fsync"):
        await a.increment("g", "n")
    await a.close()
    async with ms.FileStateAdapter(tmp_path / "s", fsync="always") as b:
        assert await b.get("g", "before") == 1
        assert await b.get("g", "after") is None
        await b.set("g", "after", 3)
        assert await b.get("g", "after") == 3


async def test_always_mode_acknowledges_only_after_fsync(tmp_path: Path, monkeypatch: Any) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    seen: list[int] = []
    monkeypatch.setattr(store_module, "_datasync", lambda fd: seen.append(a._log.appended))
    await a.set("g", "k", 1)
    assert seen == [1]
    await a.get("g", "k")
    await a.delete("g", "missing")  # writes nothing, so nothing to sync
    assert seen == [1]
    await a.close()


async def test_always_mode_skips_the_fsync_that_another_process_already_did(tmp_path: Path, monkeypatch: Any) -> None:
    """Group commit between processes: one fsync covers every record appended before it, whoever wrote it."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")  # two handles: two flocks, as two processes
    b = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    synced: list[tuple[str, int]] = []  # who fsynced, and where a's records ended then
    monkeypatch.setattr(
        store_module, "_datasync", lambda fd: synced.append(("a" if fd == a._log.log_fd else "b", a._log.offset))
    )
    # a appends a record but is not acknowledged yet (the class's method skips the fsync wrapper).
    await ms.FileStateAdapter.set(a, "g", "k", 1)
    target, position = a._log.appended, (a._log.gen, a._log.offset)
    assert a._log.synced < target and synced == []
    await b.set("g", "other", 2)  # b catches up past a's record, appends its own, fsyncs both
    assert synced == [("b", position[1])]
    await a._log._durable(target, position)
    assert synced == [("b", position[1])], "a fsynced a record that b's fsync already covered"
    assert a._log.synced == target
    # Not covered: a record appended after b's fsync is fsynced by its writer.
    await a.set("g", "k", 3)
    assert synced[-1] == ("a", a._log.offset) and len(synced) == 2
    await a.close()
    await b.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the futex wake-up is Linux only")
def test_a_process_waiting_for_an_fsync_wakes_when_its_holder_lets_go(tmp_path: Path) -> None:
    """Waiters sleep on a counter in the shared mapping, woken by the holder's release, not by a poll."""
    holder, waiter = (
        CommitMarks(tmp_path / "commit"),
        CommitMarks(tmp_path / "commit"),
    )  # two mappings, as two processes
    try:
        assert waiter.sleeps
        waiter._timeout = locking._Timespec(30, 0)  # no timeout to hide behind
        assert holder.try_acquire() and not waiter.try_acquire()
        seen = waiter.ends()
        woke: list[float] = []
        sleeper = threading.Thread(target=lambda: (waiter.sleep(seen), woke.append(time.monotonic())))
        sleeper.start()
        time.sleep(0.2)
        assert not woke  # asleep while the holder holds the lock
        released = time.monotonic()
        holder.release()
        sleeper.join(10)
        assert woke and woke[0] - released < 5
        assert waiter.ends() == (seen + 1) & 0xFFFFFFFF and waiter.try_acquire()
        # Sleeping on a count that moved on returns at once.
        started = time.monotonic()
        waiter.sleep(seen)
        assert time.monotonic() - started < 5
        waiter.release()
    finally:
        holder.close()
        waiter.close()


async def test_always_mode_a_write_in_flight_when_the_adapter_closes_is_answered(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """close() fsyncs what was written: a write still waiting for its fsync then returns; if that fsync fails, it raises."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    await ms.FileStateAdapter.set(a, "g", "k", 1)  # appended, not yet fsynced
    target, position = a._log.appended, (a._log.gen, a._log.offset)
    await a.close()
    with anyio.fail_after(5):
        await a._log._durable(target, position)
    b = ms.FileStateAdapter(tmp_path / "t", fsync="always")
    await ms.FileStateAdapter.set(b, "g", "k", 1)
    target, position = b._log.appended, (b._log.gen, b._log.offset)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
    await b.close()
    with anyio.fail_after(5), pytest.raises(ms.UnavailableError, match="closed before this write"):
        await b._log._durable(target, position)


async def test_always_mode_ignores_fsync_marks_beyond_the_log(tmp_path: Path, monkeypatch: Any) -> None:
    """Marks from other files (a store restored from a copy, a log cut short by repair) never excuse an fsync."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    await a.set("g", "k", 1)
    await a.close()
    marks = CommitMarks(tmp_path / "s" / "commit")
    marks.appended = marks.synced = (1, 10**9)
    marks.close()
    calls: list[int] = []
    monkeypatch.setattr(store_module, "_datasync", calls.append)
    b = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    assert b._log.marks is not None and b._log.marks.synced == (0, 0)
    await b.set("g", "k", 2)
    assert len(calls) == 1, "a write was acknowledged on the word of a mark beyond the log"
    await b.close()


async def test_always_mode_acknowledges_across_processes_only_after_a_covering_fsync(tmp_path: Path) -> None:
    """Several processes, slow fsyncs: every write is acknowledged only once an fsync that covers its record ended.

    An fsync covers the bytes written to the log before it starts; the
    children log where the log's records reached as each fsync started, when
    it ended, and when each write was acknowledged and where its record
    ends. Fewer fsyncs than writes shows that they were shared.
    """
    path = tmp_path / "s"
    await (await open_store(path)).close()
    script = Path(__file__).parent.parent / "scripts" / "commit_writer.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), "25"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    go(*procs)
    events = [[json.loads(line) for line in rest_of_output(proc).splitlines()] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    fsyncs = [e for child in events for e in child if e[0] == "fsync"]
    acks = [e for child in events for e in child if e[0] == "ack"]
    assert len(acks) == 100
    for _, gen, offset, acknowledged in acks:
        assert any(
            (f_gen, f_offset) >= (gen, offset) and ended <= acknowledged for _, f_gen, f_offset, _, ended in fsyncs
        ), f"the write ending at {(gen, offset)} was acknowledged before any fsync covered it"
    assert len(fsyncs) < len(acks), f"{len(fsyncs)} fsyncs for {len(acks)} writes: no group commit between processes"
    final = ms.FileStateAdapter(path)
    assert await final.get("g", "n") == 100
    await final.close()


async def _async_plus_one(value: Any) -> Any:
    return (value or 0) + 1


# Every write operation, each called so that it writes: run in this order on one store.
WRITE_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("set", ("g", "k", 1)),
    ("delete", ("g", "k")),
    ("increment", ("g", "n")),
    ("decrement", ("g", "n")),
    ("compare_and_swap", ("g", "n", 0, 5)),
    ("push", ("g", "l", 1)),
    ("unshift", ("g", "l", 0)),
    ("pop", ("g", "l")),
    ("shift", ("g", "l")),
    ("set_field", ("g", "o", "f", 1)),
    ("delete_field", ("g", "o", "f")),
    ("update", ("g", "u", lambda v: (v or 0) + 1)),
    ("update", ("g", "u", _async_plus_one)),
    ("atomic_update", ("g", "u", lambda v: v + 1)),
    ("transaction", ("g", [{"type": "set", "key": "t", "value": 1}])),
    ("batch", ("g", [{"type": "increment", "key": "t"}])),
    ("clear", ("g",)),
]


def test_every_public_operation_is_declared_a_read_or_a_write() -> None:
    """A new operation on an adapter must be marked in base.py, so that storage can make its writes durable."""
    for cls in (ms.MemoryStateAdapter, ms.FileStateAdapter):
        public = {name for name, _ in inspect.getmembers(cls, inspect.iscoroutinefunction) if not name.startswith("_")}
        assert public - {"close", "compact"} == READ_OPERATIONS | WRITE_OPERATIONS, cls
        assert write_operations(cls) == WRITE_OPERATIONS
    assert {name for name, _ in WRITE_CALLS} == WRITE_OPERATIONS, "WRITE_CALLS must call every write operation"


async def test_always_mode_acknowledges_every_write_operation_only_after_fsync(
    tmp_path: Path, monkeypatch: Any
) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    synced_at: list[int] = []  # how many records were appended when each fsync ran
    monkeypatch.setattr(store_module, "_datasync", lambda fd: synced_at.append(a._log.appended))
    for name, args in WRITE_CALLS:
        before = a._log.appended
        if name == "atomic_update":
            with pytest.warns(DeprecationWarning):
                await getattr(a, name)(*args)
        else:
            await getattr(a, name)(*args)
        assert a._log.appended > before, f"{name} wrote no record: the test would prove nothing"
        assert synced_at and synced_at[-1] == a._log.appended, f"{name} returned before its record was fsynced"
    # The camelCase aliases return the operation's own (wrapped) awaitable.
    for alias, args in [
        ("setField", ("g", "o", "f", 1)),
        ("deleteField", ("g", "o", "f")),
        ("compareAndSwap", ("g", "c", None, 1)),
    ]:
        before = a._log.appended
        await getattr(a, alias)(*args)
        assert a._log.appended > before and synced_at[-1] == a._log.appended, alias
    await a.close()


async def test_batch_mode_fsyncs_within_its_interval(tmp_path: Path, monkeypatch: Any) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="batch", fsync_interval_ms=50)
    synced = threading.Event()
    called: list[float] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        # When the sync starts, not when the disk is done: a busy disk can
        # take longer than the interval, which is not the store's doing.
        called.append(time.monotonic())
        real_fsync(fd)
        synced.set()

    monkeypatch.setattr(store_module, "_datasync", fsync)
    started = time.monotonic()
    await a.set("g", "k", 1)
    assert a._log.synced == 0  # not synced inline
    assert await anyio.to_thread.run_sync(synced.wait, 30.0)
    assert called[0] - started < 1.0  # the 50 ms interval, not the default 1 s
    assert a._log.synced == a._log.appended == 1
    await a.close()


async def test_never_mode_does_not_fsync_records(tmp_path: Path, monkeypatch: Any) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    calls: list[int] = []
    monkeypatch.setattr(store_module, "_datasync", calls.append)
    monkeypatch.setattr(store_module.os, "fsync", calls.append)
    for i in range(50):
        await a.set("g", "k", i)
    await a.close()
    assert calls == []


# ---------------------------------------------------------------- recovery


async def _store_with_records(path: Path, n: int) -> list[int]:
    """n sets, returning where the log's records end after each.

    The file itself is longer: it grows in zero-filled steps ahead of them.
    """
    a = ms.FileStateAdapter(path, fsync="never")
    ends = []
    for i in range(n):
        await a.set("g", f"k{i}", i)
        ends.append(a._log.offset)
    await a.close()
    assert os.path.getsize(path / "log") > ends[-1]
    return ends


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` into the file at ``offset`` (where the next record would go)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    "tail",
    [
        struct.pack("<II", 100, 0) + b"partial",  # the length runs past the end
        b"\x07\x00",  # half a header
        record(b'[["g","k9",9]]')[:-5],  # whole header, the body's last bytes never written
        b"\x00" * 64,  # zeros: a power loss after the size grew
    ],
    ids=["short-body", "short-header", "body-cut-short", "zeros"],
)
async def test_a_torn_tail_is_dropped_and_the_log_truncated(tmp_path: Path, tail: bytes) -> None:
    sizes = await _store_with_records(tmp_path / "s", 3)
    write_at(tmp_path / "s" / "log", sizes[-1], tail)  # a crash mid-append
    a = ms.FileStateAdapter(tmp_path / "s")
    assert await a.keys("g") == ["k0", "k1", "k2"]
    assert a._log.offset == sizes[-1]
    if any(tail):
        assert os.path.getsize(tmp_path / "s" / "log") == sizes[-1], "the torn record is cut off"
    await a.set("g", "k3", 3)  # appends after the cut, readable again
    await a.close()
    b = ms.FileStateAdapter(tmp_path / "s")
    assert await b.get("g", "k3") == 3
    await b.close()


async def test_damage_before_the_end_fails_with_file_and_offset(tmp_path: Path) -> None:
    sizes = await _store_with_records(tmp_path / "s", 4)
    log_path = tmp_path / "s" / "log"
    raw = bytearray(log_path.read_bytes())
    raw[sizes[1] + 12] ^= 0xFF  # inside the third record's body
    log_path.write_bytes(bytes(raw))
    with pytest.raises(ms.CorruptStoreError) as info:
        ms.FileStateAdapter(tmp_path / "s")
    # Not retryable: damage does not go away by trying again.
    assert info.value.code == "CORRUPT" and not isinstance(info.value, ms.UnavailableError)
    assert type(error_for_code("CORRUPT", "x")) is ms.CorruptStoreError
    assert info.value.details == {"file": str(log_path), "offset": sizes[1]}
    assert str(log_path) in str(info.value) and f"byte {sizes[1]}" in str(info.value)
    assert log_path.read_bytes() == bytes(raw), "a failed open must not touch the files"

    a = ms.FileStateAdapter(tmp_path / "s", repair=True)
    assert await a.keys("g") == ["k0", "k1"]
    await a.close()
    aside = [p for p in os.listdir(tmp_path / "s") if p.startswith("log.damaged-")]
    assert len(aside) == 1
    assert (tmp_path / "s" / aside[0]).read_bytes() == bytes(raw)
    assert os.path.getsize(log_path) == sizes[1]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda rec: rec[:-1] + b"X", "checksum mismatch"),  # a whole record whose last byte changed
        (lambda rec: rec[:4] + bytes([rec[4] ^ 1]) + rec[5:], "checksum mismatch"),  # its checksum field
        (lambda rec: struct.pack("<I", len(rec) - 8 + 4) + rec[4:], "checksum mismatch"),  # length too long
        (lambda rec: struct.pack("<I", len(rec) - 8 - 2) + rec[4:], "checksum mismatch"),  # length too short
        (lambda rec: struct.pack("<I", 1 << 20) + rec[4:], "runs past the end of the file"),
    ],
    ids=["body", "checksum", "longer-length", "shorter-length", "length-past-the-end"],
)
async def test_a_damaged_last_record_is_corruption_not_a_torn_tail(
    tmp_path: Path, change: Callable[[bytes], bytes], reason: str
) -> None:
    """The last acknowledged record, changed after it was written, is never dropped as if a crash had cut it."""
    ends = await _store_with_records(tmp_path / "s", 3)
    log_path = tmp_path / "s" / "log"
    raw = log_path.read_bytes()
    last = raw[ends[-2] : ends[-1]]
    damaged = raw[: ends[-2]] + change(last) + raw[ends[-1] :]
    log_path.write_bytes(damaged)
    with pytest.raises(ms.CorruptStoreError, match=reason) as info:
        ms.FileStateAdapter(tmp_path / "s")
    assert info.value.details["offset"] == ends[-2]
    assert log_path.read_bytes() == damaged, "a failed open must not touch the files"
    a = ms.FileStateAdapter(tmp_path / "s", repair=True)
    assert await a.keys("g") == ["k0", "k1"]
    await a.close()
    assert [p for p in os.listdir(tmp_path / "s") if p.startswith("log.damaged-")]


async def test_bytes_after_the_end_of_the_log_are_damage(tmp_path: Path) -> None:
    """Past the last record the file holds only zeros; anything else is reported."""
    ends = await _store_with_records(tmp_path / "s", 2)
    log_path = tmp_path / "s" / "log"
    write_at(log_path, os.path.getsize(log_path) - 3, b"xyz")
    with pytest.raises(ms.CorruptStoreError) as info:
        ms.FileStateAdapter(tmp_path / "s")
    assert info.value.details["offset"] == ends[-1]
    a = ms.FileStateAdapter(tmp_path / "s", repair=True)
    assert await a.keys("g") == ["k0", "k1"]
    await a.close()


async def test_a_record_of_an_unknown_type_is_refused(tmp_path: Path) -> None:
    """A record type from a newer motia-state: refused with a clear message, never taken for damage."""
    ends = await _store_with_records(tmp_path / "s", 1)
    write_at(tmp_path / "s" / "log", ends[-1], record(b'[["g","k",1]]', version=9))
    with pytest.raises(ms.UnavailableError, match=r"type 9.*upgrade motia-state") as info:
        ms.FileStateAdapter(tmp_path / "s")
    assert not isinstance(info.value, ms.CorruptStoreError)


async def test_a_future_log_or_snapshot_version_is_refused(tmp_path: Path) -> None:
    await _store_with_records(tmp_path / "s", 1)
    log_path = tmp_path / "s" / "log"
    raw = log_path.read_bytes()
    log_path.write_bytes(raw[:8] + struct.pack("<H", 9) + raw[10:])
    with pytest.raises(ms.UnavailableError, match="format version 9"):
        ms.FileStateAdapter(tmp_path / "s")
    log_path.write_bytes(raw)
    a = ms.FileStateAdapter(tmp_path / "s")
    await a.compact()
    await a.close()
    snap = tmp_path / "s" / "snapshot"
    raw = snap.read_bytes()
    snap.write_bytes(raw[:8] + struct.pack("<H", 3) + raw[10:])
    with pytest.raises(ms.UnavailableError, match="format version 3"):
        ms.FileStateAdapter(tmp_path / "s")


async def test_a_damaged_snapshot_is_reported(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s")
    await a.set("g", "k", "v" * 100)
    await a.compact()
    await a.close()
    snap = tmp_path / "s" / "snapshot"
    raw = bytearray(snap.read_bytes())
    raw[40] ^= 0x01
    snap.write_bytes(bytes(raw))
    with pytest.raises(ms.CorruptStoreError, match="snapshot") as info:
        ms.FileStateAdapter(tmp_path / "s")
    assert info.value.details["file"] == str(snap)


async def test_a_compaction_that_died_between_renames_loses_nothing(tmp_path: Path) -> None:
    """A new snapshot beside the old log: the log is replayed from the snapshot's base."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    for i in range(10):
        await a.set("g", f"k{i}", i)
    old_log = (tmp_path / "s" / "log").read_bytes()[: a._log.offset]
    await a.compact()
    await a.close()
    # Put back the old log, with one more record that came after the snapshot.
    extra = record(b'[["g","late",1],["g","k0"]]')
    (tmp_path / "s" / "log").write_bytes(old_log + extra)
    b = ms.FileStateAdapter(tmp_path / "s")
    assert await b.get("g", "late") == 1
    assert await b.exists("g", "k0") is False
    assert await b.get("g", "k9") == 9
    await b.close()


# -------------------------------------------------- processes on one store


async def test_two_adapters_on_one_directory_see_each_other(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    b = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.set("g", "k", 1)
    assert await b.get("g", "k") == 1
    assert await b.increment("g", "n") == 1
    assert await a.increment("g", "n") == 2
    await a.compact()  # b's log is replaced under it: b reloads
    assert await b.increment("g", "n") == 3
    await b.clear("g")
    assert await a.groups() == []
    await b.set("g", "k", 2)
    await b.compact()
    await b.compact()  # two generations behind
    assert await a.get("g", "k") == 2
    await a.close()
    await b.close()


async def test_waiting_for_another_process_applies_what_is_written_meanwhile(tmp_path: Path) -> None:
    """While another process holds the lock, a process applies the intact records it finds (a record being
    written, cut short, is left for the locked replay to judge), then takes the lock and carries on from there."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    b = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.set("g", "k", 0)
    seq = a._log.seq
    for _ in range(3):
        await b.increment("g", "k")
    end = b._log.offset
    # b holds the lock and is halfway through writing its next record.
    b._log.plock.acquire()
    half = file_format.feed_record(seq + 4, 1, 0, None, [["g", "k", "increment", "updated", 3, 4]])
    write_at(tmp_path / "s" / "log", end, half[: len(half) // 2])
    done = threading.Event()
    answer: list[Any] = []
    waiter = threading.Thread(target=lambda: (answer.append(anyio.run(a.increment, "g", "k")), done.set()))
    waiter.start()
    try:
        deadline = time.monotonic() + 10
        while a._log.offset != end and time.monotonic() < deadline:
            time.sleep(0.01)
        # a applied b's three whole records (and their feed records) before it got the lock.
        assert a._log.offset == end
        assert a._log.table.data["g"]["k"] == 3
        assert a._log.seq == seq + 3
        assert not done.is_set()  # still waiting for the lock
        write_at(tmp_path / "s" / "log", end, half)  # b finishes its record and lets go
        b._log.offset += len(half)
        b._log.seq += 1
    finally:
        b._log.plock.release()
    waiter.join(10)
    assert answer == [5]
    assert [c.new_value for c in await a.history("g", "k")] == [5, 4, 3, 2, 1, 0]  # newest first
    await a.close()
    await b.close()


@pytest.mark.parametrize("mode", ["never", "always"])
def test_three_processes_racing_on_one_key_get_exactly_1_to_n(tmp_path: Path, mode: str) -> None:
    n = 300 if mode == "never" else 100
    # One of them compacts all the time: the others follow its markers (and,
    # in mode "always", share fsyncs across the logs' generations).
    procs = [start_writer(tmp_path / "s", mode, "race", n, compact_min=c) for c in (4 << 20, 4 << 20, 0)]
    go(*procs)
    values = sorted(v for p in procs for v in finish(p))
    assert values == list(range(1, 3 * n + 1))


def test_transactions_race_with_single_operations_across_processes(tmp_path: Path) -> None:
    n = 200
    procs = [start_writer(tmp_path / "s", "batch", "txn", n) for _ in range(2)]
    procs.append(start_writer(tmp_path / "s", "batch", "race", n, compact_min=2000))
    go(*procs)
    values = sorted(v for p in procs for v in finish(p))
    assert values == list(range(1, 3 * n + 1))

    async def check() -> None:
        a = ms.FileStateAdapter(tmp_path / "s")
        assert await a.get("g", "n") == 3 * n
        assert await a.get("g", "t") == 2 * n
        await a.close()

    anyio.run(check)


# -------------------------------------------------------------- SIGKILL


class CrashLedger:
    """What the crash child ("crash" job) acknowledged, and what a reopened store must hold.

    The child increments "n", then sets "a" = "b" = n in one transaction and
    prints n once both are acknowledged. ``stored`` is the "n" found after the
    last kill and ``acked`` the highest n ever printed: they differ when a kill
    lands after an increment's append but before its transaction is
    acknowledged. Then "n" is one past "a", and a child killed before it
    acknowledges anything leaves it so, so "a" is held to what was
    acknowledged, never to the stored "n".
    """

    def __init__(self) -> None:
        self.stored = 0
        self.acked = 0

    def after_kill(self, printed: list[int], n: Any, a: Any, b: Any) -> None:
        """Check one reopened store against the lines the killed child printed."""
        assert a == b, f"half a transaction: a={a} b={b}"
        if printed:
            assert printed[0] == self.stored + 1, "each child continues from what is stored"
            assert printed == list(range(printed[0], printed[-1] + 1)), printed
            self.acked = printed[-1]
        base = printed[-1] if printed else self.stored
        # The kill may land after the increment's append but before its
        # acknowledgement: then one more than acknowledged is stored.
        assert n is not None and base <= n <= base + 1, f"acknowledged {base}, found n={n}"
        assert (a or 0) >= self.acked, f"acknowledged {self.acked}, found a={a}"
        assert (a or 0) <= n, f"a={a} is past n={n}"
        self.stored = int(n)


async def read_crash_keys(path: Path) -> tuple[Any, Any, Any]:
    a = ms.FileStateAdapter(path)
    try:
        return await a.get("g", "n"), await a.get("g", "a"), await a.get("g", "b")
    finally:
        await a.close()


def kill_writer(proc: subprocess.Popen[str]) -> list[int]:
    """SIGKILL a crash child; the values it printed in whole lines."""
    proc.send_signal(signal.SIGKILL)
    out = rest_of_output(proc)
    assert proc.returncode == -signal.SIGKILL
    return [int(x) for x in out.split("\n")[:-1] if x]  # the last piece may be half a line


@pytest.mark.parametrize(
    ("mode", "compact_min", "kills"),
    [("always", 4 << 20, 6), ("batch", 4 << 20, 6), ("never", 4 << 20, 6), ("never", 0, 4), ("batch", 300, 4)],
    ids=["always", "batch", "never", "never-compacting", "batch-compacting"],
)
def test_sigkill_at_random_moments_loses_no_acknowledged_write(
    tmp_path: Path, mode: str, compact_min: int, kills: int
) -> None:
    rng = random.Random(f"{mode}-{compact_min}")
    path = tmp_path / "s"
    ledger = CrashLedger()
    for _ in range(kills):
        proc = start_writer(path, mode, "crash", 0, compact_min)
        go(proc)
        time.sleep(rng.uniform(0.02, 0.3))
        printed = kill_writer(proc)
        ledger.after_kill(printed, *anyio.run(read_crash_keys, path))
        assert not [p for p in os.listdir(path) if ".tmp" in p]
    assert ledger.acked > 0, "the writer never got to write"


def test_a_child_killed_before_acknowledging_leaves_the_unacknowledged_increment(tmp_path: Path) -> None:
    # The state a kill between the increment and its transaction leaves: n is
    # one past a. A child killed before it writes anything must find no fault.
    path = tmp_path / "s"

    async def prepare() -> None:
        a = ms.FileStateAdapter(path)
        await a.set("g", "a", 5)
        await a.set("g", "b", 5)
        await a.set("g", "n", 6)
        await a.close()

    anyio.run(prepare)
    ledger = CrashLedger()
    ledger.after_kill([1, 2, 3, 4, 5], *anyio.run(read_crash_keys, path))
    proc = start_writer(path, "always", "crash", 0)  # never released: acknowledges nothing
    ledger.after_kill(kill_writer(proc), *anyio.run(read_crash_keys, path))
    assert (ledger.acked, ledger.stored) == (5, 6)


@pytest.mark.parametrize(
    ("printed", "found", "message"),
    [
        ([1, 2, 3], (3, 2, 2), "found a=2"),  # the last acknowledged transaction lost
        ([1, 2, 3], (2, 2, 2), "found n=2"),  # the last acknowledged increment lost
        ([1, 2, 3], (3, 3, 2), "half a transaction"),
        ([1, 2, 3], (5, 3, 3), "found n=5"),  # an increment nobody made
        ([2, 3], (3, 3, 3), "continues from what is stored"),
    ],
)
def test_the_crash_ledger_refuses_a_lost_write(printed: list[int], found: tuple[int, int, int], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        CrashLedger().after_kill(printed, *found)


def test_the_crash_ledger_holds_a_to_what_was_acknowledged_not_to_what_was_stored() -> None:
    ledger = CrashLedger()
    ledger.after_kill([1, 2, 3, 4, 5], 6, 5, 5)  # killed after the increment of 6
    ledger.after_kill([], 6, 5, 5)  # killed before acknowledging anything
    ledger.after_kill([], 7, 5, 5)  # killed after another increment
    ledger.after_kill([], 7, 7, 7)  # ... or after its transaction too
    with pytest.raises(AssertionError, match="found a=4"):
        ledger.after_kill([], 7, 4, 4)
    ledger.after_kill([8], 8, 8, 8)
    assert (ledger.acked, ledger.stored) == (8, 8)


@pytest.mark.parametrize("mode", ["always", "batch"])
def test_runs_under_trio_with_group_commit_and_compaction(tmp_path: Path, mode: str) -> None:
    async def main() -> list[int]:
        a = ms.FileStateAdapter(tmp_path / "s", fsync=mode, compact_min_bytes=0)  # type: ignore[arg-type]
        got: list[int] = []

        async def writer() -> None:
            for _ in range(25):
                got.append(await a.increment("g", "n"))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(writer)
        await a.compact()
        await a.close()
        return got

    assert sorted(anyio.run(main, backend="trio")) == list(range(1, 101))

    async def reopen() -> Any:
        a = ms.FileStateAdapter(tmp_path / "s")
        try:
            return await a.get("g", "n")
        finally:
            await a.close()

    assert anyio.run(reopen) == 100


# A MOVED record (type 2), and the JSON marker that stores written before that type existed still hold.
MARKERS = [record(b"2", version=2), record(b'{"moved":2}')]


@pytest.mark.parametrize("marker", MARKERS, ids=["moved-record", "legacy-json-marker"])
async def test_a_compaction_that_died_after_its_marker_loses_nothing(tmp_path: Path, marker: bytes) -> None:
    """The MOVED record is written before the renames; alone at the end of the current log it is dropped."""
    ends = await _store_with_records(tmp_path / "s", 3)
    write_at(tmp_path / "s" / "log", ends[-1], marker)
    a = ms.FileStateAdapter(tmp_path / "s")
    assert await a.keys("g") == ["k0", "k1", "k2"]
    assert a._log.offset == ends[-1]
    await a.set("g", "k3", 3)
    await a.close()
    b = ms.FileStateAdapter(tmp_path / "s")
    assert await b.get("g", "k3") == 3
    await b.close()


@pytest.mark.parametrize("marker", MARKERS, ids=["moved-record", "legacy-json-marker"])
async def test_a_marker_followed_by_records_is_damage(tmp_path: Path, marker: bytes) -> None:
    ends = await _store_with_records(tmp_path / "s", 2)
    write_at(tmp_path / "s" / "log", ends[-1], marker + record(b'[["g","late",1]]'))
    with pytest.raises(ms.CorruptStoreError) as info:
        ms.FileStateAdapter(tmp_path / "s")
    assert info.value.details["offset"] == ends[-1]


async def test_a_process_behind_a_compaction_follows_its_marker(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    b = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.set("g", "k", 1)
    assert await b.get("g", "k") == 1
    old_gen = b._log.gen
    await a.set("g", "k", 2)  # b has not seen this one yet...
    await a.compact()  # ...and its log is replaced
    assert await b.get("g", "k") == 2
    assert b._log.gen == a._log.gen == old_gen + 1
    await a.close()
    await b.close()


@pytest.mark.parametrize("marker", MARKERS, ids=["moved-record", "legacy-json-marker"])
async def test_a_process_behind_follows_either_marker(tmp_path: Path, marker: bytes) -> None:
    """A process reading an old log follows the marker at its end to the snapshot and the new log."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    b = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.set("g", "k", 1)
    assert await b.get("g", "k") == 1
    # What a compaction does, by hand: snapshot, new log, then the marker at the old log's end.
    header, body = file_format.encode_snapshot(
        file_format.Snapshot(log_gen=2, base_gen=1, base_offset=a._log.offset, data={"g": {"k": 2}})
    )
    old_end = a._log.offset
    await a.close()
    (tmp_path / "s" / "snapshot").write_bytes(header + body)
    write_at(tmp_path / "s" / "log", old_end, marker)
    os.replace(tmp_path / "s" / "log", tmp_path / "s" / "log.old")
    (tmp_path / "s" / "log").write_bytes(struct.pack("<8sHQ", b"MOTIALOG", 1, 2))
    assert await b.get("g", "k") == 2  # the next operation finds the marker and follows it
    assert b._log.gen == 2
    await b.close()


async def test_compaction_ends_the_old_log_with_a_moved_record(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.set("g", "k", 1)
    end = a._log.offset
    fd = os.open(tmp_path / "s" / "log", os.O_RDONLY)
    try:
        await a.compact()
        length, crc = struct.unpack("<II", os.pread(fd, 8, end))
        body = os.pread(fd, length, end + 8)
    finally:
        os.close(fd)
    assert zlib.crc32(body) == crc
    assert body == bytes([file_format.RecordType.MOVED]) + b"2"
    await a.close()


# --------------------------------------------------------------- bit flips


async def _build_for_sweep(path: Path, compacted: bool) -> dict[str, dict[str, Any]]:
    """A small store of assorted records (after a compaction: a snapshot, and records on both sides)."""
    a = ms.FileStateAdapter(path, fsync="never")
    await a.set("g", "a", {"x": [1, 2]})
    await a.push("g", "list", 1, "two")
    await a.transaction("g", [{"type": "set", "key": "t1", "value": None}, {"type": "increment", "key": "n"}])
    await a.set("h", "k", "v")
    if compacted:
        await a.compact()
    await a.delete("h", "k")
    await a.increment("g", "n", -3)
    await a.set_field("g", "a", "y", True)
    await a.set("g", "last", 10**20)
    state = {group: {key: await a.get(group, key) for key in await a.keys(group)} for group in await a.groups()}
    await a.close()
    return state


@pytest.mark.parametrize("compacted", [False, True], ids=["log", "snapshot-and-log"])
async def test_no_bit_flip_silently_loses_an_acknowledged_record(tmp_path: Path, compacted: bool) -> None:
    """Flip one or two bits of every byte of the files: the store opens with every record, or refuses.

    Refusing is CorruptStoreError (a header's format version may also read as
    a newer version); a refused open leaves the files as they were.
    """
    expected = await _build_for_sweep(tmp_path / "orig", compacted)
    files = {
        name: (tmp_path / "orig" / name).read_bytes() for name in ("log", "snapshot") if compacted or name == "log"
    }
    records_end = len(files["log"].rstrip(b"\0"))
    work = tmp_path / "w"
    work.mkdir()
    opened = refused = 0
    for name, raw in files.items():
        swept = len(raw) if name == "snapshot" else records_end + 16  # and a little of the zeros after
        for offset in range(swept):
            for mask in (1 << (offset % 8), (1 << (offset % 8)) | (1 << ((offset + 3) % 8))):
                for other, content in files.items():
                    (work / other).write_bytes(content)
                damaged = bytearray(raw)
                damaged[offset] ^= mask
                (work / name).write_bytes(bytes(damaged))
                try:
                    a = ms.FileStateAdapter(work, fsync="never")
                except ms.CorruptStoreError:
                    refused += 1
                    assert (work / name).read_bytes() == bytes(damaged), f"{name}@{offset}: refused but rewritten"
                    continue
                except ms.UnavailableError as e:
                    assert offset in (8, 9) and "format version" in str(e), f"{name}@{offset} ^ {mask}: {e}"
                    refused += 1
                    continue
                got = {g: {k: await a.get(g, k) for k in await a.keys(g)} for g in await a.groups()}
                await a.close()
                assert got == expected, f"{name}@{offset} ^ {mask:#x}: opened without complaint but lost data"
                opened += 1
    assert refused + opened == sum(
        2 * n for n in ((len(raw) if name == "snapshot" else records_end + 16) for name, raw in files.items())
    )


async def test_a_log_generation_damaged_into_the_snapshots_base_is_refused(tmp_path: Path) -> None:
    """Only the old log a compaction died before replacing may have the snapshot's base generation."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    for i in range(5):
        await a.set("g", f"k{i}", i)
    await a.compact()
    await a.set("g", "after", 1)
    await a.close()
    log_path = tmp_path / "s" / "log"
    raw = log_path.read_bytes()
    assert struct.unpack_from("<Q", raw, 10)[0] == 2
    log_path.write_bytes(raw[:10] + struct.pack("<Q", 1) + raw[18:])
    with pytest.raises(ms.CorruptStoreError, match="generation 1"):
        ms.FileStateAdapter(tmp_path / "s")


async def test_a_first_log_whose_generation_reads_zero_is_refused(tmp_path: Path) -> None:
    await _store_with_records(tmp_path / "s", 2)
    log_path = tmp_path / "s" / "log"
    raw = log_path.read_bytes()
    log_path.write_bytes(raw[:10] + struct.pack("<Q", 0) + raw[18:])
    with pytest.raises(ms.CorruptStoreError, match="generation 0"):
        ms.FileStateAdapter(tmp_path / "s")
    assert log_path.read_bytes() == raw[:10] + struct.pack("<Q", 0) + raw[18:]


# ------------------------------------------------------ a removed directory


@pytest.mark.parametrize("how", ["removed", "replaced", "lock-deleted"])
async def test_writes_fail_once_the_store_directory_is_removed_or_replaced(tmp_path: Path, how: str) -> None:
    """No split brain: an adapter whose files left the path refuses writes, changing nothing, firing nothing."""
    path = tmp_path / "s"
    a = ms.FileStateAdapter(path, fsync="never")
    changes: list[Any] = []
    a.add_change_sink(changes.extend)
    await a.set("g", "k", 1)
    await a.push("g", "l", 1)
    changes.clear()
    if how == "removed":
        shutil.rmtree(path)
    elif how == "replaced":
        os.rename(path, tmp_path / "elsewhere")
    else:
        os.unlink(path / "lock")
    newcomer = ms.FileStateAdapter(path, fsync="never")
    if how != "lock-deleted":
        assert await newcomer.get("g", "k") is None  # a new, empty store at the path
    for write in (
        a.set("g", "k", 2),
        a.set("g", "new", 1),
        a.push("g", "l", 2),
        a.delete("g", "k"),
        a.transaction("g", [{"type": "set", "key": "t", "value": 1}, {"type": "delete", "key": "k"}]),
        a.clear("g"),
    ):
        with pytest.raises(ms.UnavailableError, match="removed or replaced") as info:
            await write
        assert info.value.code == "UNAVAILABLE"
    assert changes == [], "a refused write fires no change event"
    assert await a.get("g", "k") == 1 and await a.get("g", "l") == [1]  # memory kept only what was stored
    assert await a.keys("g") == ["k", "l"]
    await newcomer.set("g", "k", 3)
    await a.close()
    await newcomer.close()


# ------------------------------------------------------------ compaction


def _watch_compactions(monkeypatch: Any) -> dict[str, int]:
    """Count compactions and the most that ever ran at once in this process."""
    seen = {"running": 0, "most": 0, "runs": 0}
    lock = threading.Lock()
    real = store_module.LogSession.compact_once

    def compact_once(self: Any) -> bool:
        with lock:
            seen["running"] += 1
            seen["runs"] += 1
            seen["most"] = max(seen["most"], seen["running"])
        try:
            time.sleep(0.001)  # widen the window a race needs
            return bool(real(self))
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(store_module.LogSession, "compact_once", compact_once)
    return seen


async def test_concurrent_compactions_in_one_process_all_succeed(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    seen = _watch_compactions(monkeypatch)
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never", compact_min_bytes=0)

    async def writer() -> None:
        for i in range(50):
            await a.set("g", f"k{i % 7}", i)
            await a.increment("g", "n")

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(a.compact)
        tg.start_soon(writer)
    assert seen["runs"] >= 20 and seen["most"] == 1, seen
    assert await a.get("g", "n") == 50
    await a.close()
    assert not [r for r in caplog.records if "compaction failed" in r.getMessage()]
    assert sorted(os.listdir(tmp_path / "s")) == ["lock", "log", "snapshot"]
    b = ms.FileStateAdapter(tmp_path / "s")
    assert await b.get("g", "n") == 50 and await b.get("g", "k6") == 48
    await b.close()


async def test_a_cancelled_compaction_never_overlaps_the_next(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    seen = _watch_compactions(monkeypatch)
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never", compact_min_bytes=0)
    for i in range(20):
        await a.set("g", f"k{i}", "x" * 100)
    for delay in (0, 0.0005, 0.001, 0.002, 0.004):
        # Cancelled both ways: by an anyio scope and by asyncio itself.
        with anyio.move_on_after(delay):
            await a.compact()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(a.compact(), delay)
        for _ in range(10):  # each write may start an automatic compaction
            await a.increment("g", "n")
    await a.compact()
    assert seen["most"] == 1, seen
    assert await a.get("g", "n") == 50
    await a.close()
    assert not [r for r in caplog.records if "compaction failed" in r.getMessage()]
    assert sorted(os.listdir(tmp_path / "s")) == ["lock", "log", "snapshot"]


async def test_a_failing_compaction_backs_off_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: Any, caplog: Any
) -> None:
    """A full disk: the snapshot cannot be written. Writes go on; compaction is retried rarely, not after each one."""
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never", compact_min_bytes=0)
    attempts = []
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:
        attempts.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "write", full_disk)
    for i in range(200):
        await a.increment("g", "n")
        if i % 50 == 0:
            await anyio.sleep(0.01)  # let a background compaction run and fail
    compaction = a._log.compaction
    if compaction is not None:
        await anyio.to_thread.run_sync(compaction.join)
    assert 1 <= len(attempts) <= 2, f"{len(attempts)} compaction attempts for 200 writes: no backoff"
    assert not [p for p in os.listdir(tmp_path / "s") if ".tmp" in p], "the temporary file was left behind"
    failures = [r for r in caplog.records if "compaction failed" in r.getMessage()]
    assert len(failures) == len(attempts) and failures[0].exc_info is not None
    assert "ENOSPC" in failures[0].getMessage() or "No space" in failures[0].getMessage()
    # The disk has room again and the backoff is over: the next write compacts.
    monkeypatch.setattr(store_module.os, "write", real_write)
    a._log.retry_at = 0.0
    gen = a._log.gen
    await a.increment("g", "n")
    if a._log.compaction is not None:
        await anyio.to_thread.run_sync(a._log.compaction.join)
    assert a._log.gen == gen + 1
    assert await a.get("g", "n") == 201
    await a.close()


async def test_change_sinks_come_and_go_on_a_closed_store(tmp_path: Path) -> None:
    """Removing a listener after close (a manager shutting down) must not touch the closed files."""
    a = ms.FileStateAdapter(tmp_path / "s")
    remove = a.add_change_sink(lambda changes: None)
    await a.close()
    remove()
    a.add_change_sink(lambda changes: None)()


# ------------------------------------------------------- integer boundaries

_READER = """
import asyncio, sys
import motia_state as ms

async def main():
    a = ms.FileStateAdapter(sys.argv[1], fsync="never")
    await a.get("g", "warm")
    print("ready", flush=True)
    sys.stdin.readline()  # the parent writes meanwhile: this read catches up from the log
    for key in ("max", "min"):
        value = await a.get("g", key)
        print(key, type(value).__name__, len(str(value)), str(value)[:2], flush=True)
    await a.close()

asyncio.run(main())
"""


async def test_integers_at_the_digit_limit_survive_reopening_and_catching_up(tmp_path: Path) -> None:
    """The limit counts the characters of the decimal text, sign included: what is stored can be read back."""
    digits = ms.values.MAX_INT_DIGITS
    largest, lowest = 10**digits - 1, -(10 ** (digits - 1) - 1)
    path = tmp_path / "s"
    a = ms.FileStateAdapter(path, fsync="never")
    await a.set("g", "warm", 1)
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline() == "ready\n"
        end = a._log.offset
        for too_long in (-(10**digits - 1), -(10 ** (digits - 1)), 10**digits):
            with pytest.raises(ms.LimitExceededError):
                await a.set("g", "bad", too_long)
            with pytest.raises(ms.LimitExceededError):
                await a.push("g", "list", too_long)
        assert a._log.offset == end, "a refused integer reached the log"
        assert await a.set("g", "max", largest) == largest
        assert await a.set("g", "min", lowest) == lowest
        reader.stdin.write("go\n")
        reader.stdin.flush()
        out, _ = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0
    assert out.splitlines() == [f"max int {digits} 99", f"min int {digits} -9"]
    await a.close()
    b = ms.FileStateAdapter(path)
    assert await b.get("g", "max") == largest and await b.get("g", "min") == lowest
    assert await b.exists("g", "bad") is False
    await b.compact()
    await b.close()
    c = ms.FileStateAdapter(path)
    assert await c.get("g", "min") == lowest
    await c.close()
