"""The file store's change feed: in the log, across processes, through compaction and reopening."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms
from motia_state.adapters.file import format as file_format
from motia_state.feed import write_context

WRITER = """
import asyncio, sys, time
import motia_state as ms

async def main():
    state = ms.FileStateAdapter(sys.argv[1])
    for i in range(int(sys.argv[2])):
        time.sleep(0.05)
        await state.set("g", "k", i)
    await state.close()

asyncio.run(main())
"""


async def _all(stream: Any) -> list[ms.Change]:
    return [change async for change in stream]


def _writer(path: Path, count: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(count)], env=env)


async def _follow_other_process(path: Path, count: int) -> list[float]:
    reader = ms.FileStateAdapter(path)
    stream = reader.changes("now")
    child = _writer(path, count)
    delays = []
    try:
        for i in range(count):
            change = await asyncio.wait_for(stream.__anext__(), 10)
            delays.append(time.time() * 1000 - change.at)
            assert change.new_value == i
    finally:
        child.wait(10)
        await reader.close()
    return delays


async def test_a_reader_in_another_process_sees_a_change_within_100_ms(tmp_path: Path) -> None:
    # The median, not the maximum: a loaded machine can hold up any one
    # wake-up (or the writer between taking the time and writing), while a
    # reader that only polled every 0.5 s would see most changes late.
    delays = await _follow_other_process(tmp_path / "store", 9)
    assert sorted(delays)[len(delays) // 2] < 100, delays


async def _sees_the_writes_of_another_process_within_a_poll(reader: ms.FileStateAdapter, path: Path) -> None:
    stream = reader.changes("now")
    child = _writer(path, 5)
    delays = []
    try:
        for i in range(5):
            change = await asyncio.wait_for(stream.__anext__(), 10)
            assert change.new_value == i
            delays.append(time.time() * 1000 - change.at)
    finally:
        child.wait(10)
        await reader.close()
    # One poll interval (0.5 s) plus room for a loaded machine; the median,
    # as a loaded machine can hold up any one wake-up (or the writer between
    # taking the time and writing).
    assert sorted(delays)[len(delays) // 2] < 2000, delays


async def test_without_inotify_a_reader_still_sees_the_change_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "store"
    reader = ms.FileStateAdapter(path)
    reader._log.use_inotify = False
    await _sees_the_writes_of_another_process_within_a_poll(reader, path)


async def test_records_are_in_the_log_and_survive_reopening(tmp_path: Path) -> None:
    state = ms.FileStateAdapter(tmp_path)
    with write_context(1, {"step": "s.step.py", "traceId": "t"}):
        await state.set("g", "k", 1)
    await state.transaction("g", [{"type": "increment", "key": "k"}, {"type": "set", "key": "j", "value": 0}])
    await state.delete("g", "k")
    before = await _all(state.changes(follow=False))
    await state.close()
    again = ms.FileStateAdapter(tmp_path)
    try:
        after = await _all(again.changes(follow=False))
        assert after == before
        assert [(c.cursor, c.event, c.depth, c.origin) for c in after] == [
            ("f.1", "created", 1, {"step": "s.step.py", "traceId": "t"}),
            ("f.2", "updated", 0, None),
            ("f.3", "created", 0, None),
            ("f.4", "deleted", 0, None),
        ]
        assert after[0].at == before[0].at
        await again.set("g", "k", 5)
        rest = await _all(again.changes(before[-1].cursor, follow=False))
        assert [(c.cursor, c.new_value) for c in rest] == [("f.5", 5)]
    finally:
        await again.close()


async def test_two_adapters_on_one_store_share_one_sequence(tmp_path: Path) -> None:
    a, b = ms.FileStateAdapter(tmp_path), ms.FileStateAdapter(tmp_path)
    try:
        await a.set("g", "x", 1)
        await b.set("g", "y", 2)
        await a.set("g", "z", 3)
        seen_by_a = [(c.cursor, c.key) for c in await _all(a.changes(follow=False))]
        seen_by_b = [(c.cursor, c.key) for c in await _all(b.changes(follow=False))]
        assert seen_by_a == seen_by_b == [("f.1", "x"), ("f.2", "y"), ("f.3", "z")]
    finally:
        await a.close()
        await b.close()


async def test_compaction_keeps_the_window_and_a_cursor_past_it_expires(tmp_path: Path) -> None:
    state = ms.FileStateAdapter(tmp_path, feed_retention=5)
    for i in range(20):
        await state.set("g", "k", i)
    await state.compact()
    await state.set("g", "k", 20)
    await state.close()
    again = ms.FileStateAdapter(tmp_path, feed_retention=5)
    try:
        info = await again.feed_info()
        assert info["last"] == "f.21" and 5 <= info["retained"] <= 10
        values = [c.new_value for c in await _all(again.changes(follow=False))]
        assert values == list(range(21 - len(values), 21))
        assert [c.new_value for c in await again.history("g", "k", limit=2)] == [20, 19]
        assert await again.get("g", "k") == 20
        with pytest.raises(ms.CursorExpiredError):
            again.changes("f.10")
    finally:
        await again.close()


async def test_the_window_does_not_count_toward_the_next_compaction(tmp_path: Path) -> None:
    state = ms.FileStateAdapter(tmp_path, compact_min_bytes=1 << 20)
    for i in range(3000):
        await state.set("g", f"k{i}", "x" * 100)
    await state.compact()
    log = state._log
    assert log._window > 0
    assert log.compact_at - log.offset >= 1 << 20  # a whole floor ahead, past the window
    await state.close()


async def test_retention_by_bytes_in_the_file_store(tmp_path: Path) -> None:
    state = ms.FileStateAdapter(tmp_path, feed_retention_bytes=20_000)
    try:
        for i in range(100):
            await state.set("g", f"k{i}", "y" * 1000)
        info = await state.feed_info()
        assert 18 <= info["retained"] <= 40
        assert info["last"] == "f.100"
    finally:
        await state.close()


async def test_feed_retention_zero_turns_the_file_feed_off(tmp_path: Path) -> None:
    state = ms.FileStateAdapter(tmp_path, feed_retention=0)
    try:
        await state.set("g", "k", 1)
        with pytest.raises(ms.InvalidArgumentError, match="feed is off"):
            state.changes()
    finally:
        await state.close()
    with pytest.raises(ms.InvalidArgumentError, match="feed_retention"):
        ms.FileStateAdapter(tmp_path, feed_retention=-1)


def _write_version_1_store(path: Path) -> None:
    """A store as the previous format wrote it: version 1 headers, CHANGES records, no feed."""
    path.mkdir(mode=0o700)
    snapshot = b'{"log_gen":2,"base_gen":1,"base_offset":14,"data":{"g":{"a":1,"b":[1,2]}}}'
    header = file_format.SNAP_HEADER.pack(file_format.SNAP_MAGIC, 1, len(snapshot), __import__("zlib").crc32(snapshot))
    (path / "snapshot").write_bytes(header + snapshot)
    log = file_format.LOG_HEADER.pack(file_format.LOG_MAGIC, 1, 2)
    log += file_format.record(file_format.RecordType.CHANGES, b'[["g","a",2],["h","c","new"]]')
    log += file_format.record(file_format.RecordType.CHANGES, b'[["g","b"]]')
    (path / "log").write_bytes(log + bytes(64))
    for name in ("snapshot", "log"):
        os.chmod(path / name, 0o600)


def _versions(path: Path) -> tuple[int, int]:
    log = file_format.LOG_HEADER.unpack((path / "log").read_bytes()[: file_format.LOG_HEADER.size])
    snap = file_format.SNAP_HEADER.unpack((path / "snapshot").read_bytes()[: file_format.SNAP_HEADER.size])
    return log[1], snap[1]


async def test_a_store_of_the_previous_format_opens_and_is_upgraded_at_its_next_compaction(tmp_path: Path) -> None:
    path = tmp_path / "old"
    _write_version_1_store(path)
    state = ms.FileStateAdapter(path)
    try:
        assert await state.get_group("g") == [2]
        assert await state.get("h", "c") == "new"
        assert await state.feed_info() == {"first": None, "last": None, "retained": 0}
        await state.set("g", "n", 1)
        assert _versions(path) == (1, 1)
        await state.compact()
        assert _versions(path) == (2, 2)
    finally:
        await state.close()
    again = ms.FileStateAdapter(path)
    try:
        assert await again.get_group("g") == [2, 1]
        assert [(c.cursor, c.key) for c in await _all(again.changes(follow=False))] == [("f.1", "n")]
    finally:
        await again.close()


async def test_a_store_of_an_unknown_future_version_is_refused(tmp_path: Path) -> None:
    state = ms.FileStateAdapter(tmp_path)
    await state.close()
    raw = bytearray((tmp_path / "log").read_bytes())
    raw[8:10] = (3).to_bytes(2, "little")
    (tmp_path / "log").write_bytes(bytes(raw))
    with pytest.raises(ms.UnavailableError, match="format version 3"):
        ms.FileStateAdapter(tmp_path)


class _NoInotifyLibc:
    """A libc whose inotify_init1 fails as it does once the user's inotify instances are used up (EMFILE)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def inotify_init1(self, flags: int) -> int:
        return -1


async def test_when_the_kernel_refuses_inotify_the_watch_falls_back_to_its_slow_poll(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from motia_state.adapters.file import watch as watch_module

    path = tmp_path / "store"
    assert watch_module.LogWatch(tmp_path).notified or not sys.platform.startswith("linux")
    monkeypatch.setattr(watch_module.ctypes, "CDLL", _NoInotifyLibc)
    assert not watch_module.LogWatch(tmp_path).notified
    reader = ms.FileStateAdapter(path)
    await _sees_the_writes_of_another_process_within_a_poll(reader, path)


async def test_a_follower_left_behind_by_another_process_compaction_gets_cursor_expired_never_a_skip(
    tmp_path: Path,
) -> None:
    reader = ms.FileStateAdapter(tmp_path)
    writer = ms.FileStateAdapter(tmp_path, feed_retention=5)  # its own session, as another process has
    try:
        for i in range(3):
            await writer.set("g", "k", i)
        stream = reader.changes(None)
        assert [(await stream.__anext__()).new_value for _ in range(3)] == [0, 1, 2]
        for i in range(3, 40):
            await writer.set("g", "k", i)
        await writer.compact()
        with pytest.raises(ms.CursorExpiredError):
            await asyncio.wait_for(stream.__anext__(), 10)
        # What the compaction kept is still there, under the same cursors.
        kept = await _all(reader.changes(None, follow=False))
        assert [c.cursor for c in kept] == [f"f.{c.new_value + 1}" for c in kept]
        assert kept[-1].cursor == "f.40"
    finally:
        await reader.close()
        await writer.close()


async def test_an_upgrade_compaction_that_died_between_its_renames_keeps_data_and_feed(tmp_path: Path) -> None:
    path = tmp_path / "old"
    _write_version_1_store(path)
    state = ms.FileStateAdapter(path, fsync="never")
    for i in range(5):
        await state.set("g", f"n{i}", i)
    old_log = (path / "log").read_bytes()[: state._log.offset]
    before = [(c.cursor, c.key, c.new_value) for c in await _all(state.changes(follow=False))]
    await state.compact()
    await state.close()
    # The new (version 2) snapshot beside the old (version 1) log, which ends with the compaction's marker.
    (path / "log").write_bytes(old_log + file_format.moved_record(3) + bytes(64))
    assert _versions(path) == (1, 2)
    again = ms.FileStateAdapter(path)
    try:
        assert [(c.cursor, c.key, c.new_value) for c in await _all(again.changes(follow=False))] == before
        assert await again.get_group("g") == [2, 0, 1, 2, 3, 4]
        assert await again.get("h", "c") == "new"
        await again.set("g", "z", 1)
        await again.compact()
        assert _versions(path) == (2, 2)
        assert (await again.feed_info())["last"] == "f.6"
    finally:
        await again.close()
