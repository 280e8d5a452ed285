"""The file store's feed after a writer is killed (SIGKILL): nothing lost, nothing repeated, cursors still resume.

Each child process here writes, prints what was acknowledged, and kills
itself at one exact point (inside a compaction, or at a random moment);
the test then reopens the store and checks the feed record by record.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import motia_state as ms

from ..helpers import finish, go, rest_of_output, start_child

ROOT = Path(__file__).resolve().parents[2]

# argv: path, fsync mode, the function to die in ("os.fsync", "os.replace",
# "fsync_dir"), which call of it (1 = the first during the compaction).
# Before the compaction: 20 acknowledged writes by one adapter; while the
# compaction writes its snapshot (outside the lock), a second adapter of the
# same process appends 5 more, so that the compaction has a tail to carry.
DIE_IN_COMPACTION = """
import asyncio, os, signal, sys
import motia_state as ms
from motia_state.adapters.file import store as store_module

path, mode, name, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

async def main():
    a = ms.FileStateAdapter(path, fsync=mode)
    b = ms.FileStateAdapter(path, fsync=mode)
    for i in range(20):
        await a.set("g", f"k{i % 4}", i)
        print("ack", i, flush=True)
    loop = asyncio.get_running_loop()
    calls = {"os.fsync": 0, "os.replace": 0, "fsync_dir": 0}
    real = {"os.fsync": os.fsync, "os.replace": os.replace, "fsync_dir": store_module.fsync_dir}
    tail_written = False

    def hooked(which):
        def call(*args):
            nonlocal tail_written
            calls[which] += 1
            if which == "os.fsync" and calls[which] == 1 and not tail_written:
                tail_written = True  # the snapshot is written: others append meanwhile
                for j in range(20, 25):
                    asyncio.run_coroutine_threadsafe(b.set("h", f"k{j % 2}", j), loop).result()
                    print("ack", j, flush=True)
            if which == name and calls[which] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return real[which](*args)
        return call

    os.fsync = hooked("os.fsync")
    os.replace = hooked("os.replace")
    store_module.fsync_dir = hooked("fsync_dir")
    await a.compact()
    print("compacted", flush=True)

asyncio.run(main())
"""


def _run(script: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return proc.returncode, proc.stdout


def _expected_feed() -> list[tuple[str, str, int]]:
    return [("g", f"k{i % 4}", i) for i in range(20)] + [("h", f"k{j % 2}", j) for j in range(20, 25)]


async def _check_store(path: Path, expected: list[tuple[str, str, int]]) -> None:
    """The store holds ``expected`` (in commit order) in its feed, its history and its data; cursors resume."""
    store = ms.FileStateAdapter(path)
    try:
        records = [c async for c in store.changes(None, follow=False)]
        assert [c.cursor for c in records] == [f"f.{n}" for n in range(1, len(expected) + 1)]
        assert [(c.group, c.key, c.new_value) for c in records] == expected
        assert await store.feed_info() == {"first": "f.1", "last": f"f.{len(expected)}", "retained": len(expected)}
        # A cursor handed out before the crash resumes exactly after itself.
        rest = [c.cursor async for c in store.changes("f.7", follow=False)]
        assert rest == [f"f.{n}" for n in range(8, len(expected) + 1)]
        history = await store.history("g", "k1")
        assert [c.new_value for c in history] == [i for i in reversed(range(20)) if i % 4 == 1]
        final: dict[tuple[str, str], int] = {}
        for group, key, value in expected:
            final[group, key] = value
        for (group, key), value in final.items():
            assert await store.get(group, key) == value
        # The sequence goes on from there, and survives the next compaction.
        await store.set("g", "after", 1)
        assert (await store.feed_info())["last"] == f"f.{len(expected) + 1}"
        await store.compact()
    finally:
        await store.close()
    again = ms.FileStateAdapter(path)
    try:
        records = [c async for c in again.changes(None, follow=False)]
        assert [c.cursor for c in records] == [f"f.{n}" for n in range(1, len(expected) + 2)]
    finally:
        await again.close()


@pytest.mark.parametrize("mode", ["never", "always"])
@pytest.mark.parametrize(
    ("where", "nth"),
    [
        ("os.fsync", 1),  # the snapshot's temporary file written, not yet synced
        ("os.fsync", 2),  # the head of the new log (header and window) written
        ("os.fsync", 3),  # the tail copied into the new log
        ("os.replace", 1),  # the old log's MOVED record written, nothing renamed
        ("fsync_dir", 1),  # between the renames: the new snapshot beside the old log, not yet synced
        ("os.replace", 2),  # between the renames, the directory synced
        ("fsync_dir", 2),  # both renamed, the directory not yet synced
    ],
)
async def test_a_writer_killed_inside_a_compaction_loses_and_repeats_nothing(
    tmp_path: Path, mode: str, where: str, nth: int
) -> None:
    path = tmp_path / "s"
    # A process that stays up throughout follows the feed from the start.
    live = ms.FileStateAdapter(path, fsync=mode)
    try:
        stream = live.changes(None)
        code, out = _run(DIE_IN_COMPACTION, str(path), mode, where, str(nth))
        assert code == -signal.SIGKILL, out
        acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ack")]
        assert acked == list(range(25))
        followed = [await asyncio.wait_for(stream.__anext__(), 10) for _ in range(25)]
        assert [c.cursor for c in followed] == [f"f.{n}" for n in range(1, 26)]
        assert [(c.group, c.key, c.new_value) for c in followed] == _expected_feed()
        assert (await live.feed_info())["last"] == "f.25"
    finally:
        await live.close()
    await _check_store(path, _expected_feed())
    assert sorted(name for name in os.listdir(path) if ".tmp" in name) == []


def _start_racer(path: Path, mode: str, compact_min: int) -> subprocess.Popen[str]:
    config = {"adapter": "file", "path": str(path), "fsync": mode, "compact_min_bytes": compact_min}
    return start_child(config, "race", 0)


def _printed_before_kill(proc: subprocess.Popen[str]) -> list[int]:
    out = rest_of_output(proc)
    assert proc.returncode == -signal.SIGKILL
    return [int(x) for x in out.split("\n")[:-1] if x]  # the last piece may be half a line


async def _feed_after_kills(path: Path, acked: set[int], last: str | None) -> str:
    """Check the reopened store's feed of "n" against what was acknowledged; returns its last cursor."""
    store = ms.FileStateAdapter(path)
    try:
        records = [c async for c in store.changes(None, follow=False)]
        numbers = [int(c.cursor[2:]) for c in records]
        assert numbers == list(range(1, len(records) + 1)), "the feed has a gap or a repeat"
        values = [c.new_value for c in records]
        assert values == list(range(1, len(values) + 1)), "each increment once, in commit order"
        assert await store.get("g", "n") == len(values)
        assert acked <= set(values), f"acknowledged but not in the feed: {sorted(acked - set(values))[:5]}"
        if last is not None:  # a cursor from before this round resumes exactly after itself
            rest = [c.cursor async for c in store.changes(last, follow=False)]
            assert rest == [c.cursor for c in records[int(last[2:]) :]]
        history = await store.history("g", "n", limit=3)
        assert [c.new_value for c in history] == values[::-1][:3]
        return records[-1].cursor if records else "f.0"
    finally:
        await store.close()


@pytest.mark.parametrize(("mode", "compact_min"), [("never", 300), ("batch", 2000), ("always", 300)])
async def test_writers_killed_at_random_moments_leave_a_feed_without_gaps_or_repeats(
    tmp_path: Path, mode: str, compact_min: int
) -> None:
    rng = random.Random(f"feed-{mode}")
    path = tmp_path / "s"
    acked: set[int] = set()
    last: str | None = None
    # A process that stays up follows the feed through every kill.
    follower = ms.FileStateAdapter(path, fsync=mode)
    followed: list[ms.Change] = []
    try:
        stream = follower.changes(None)
        for _ in range(3):
            procs: list[subprocess.Popen[str]] = []
            try:
                for _ in range(3):
                    procs.append(_start_racer(path, mode, compact_min))
                go(*procs)
                await asyncio.sleep(rng.uniform(0.05, 0.4))
            finally:
                for proc in procs:  # all killed before any is judged: none is left running
                    proc.send_signal(signal.SIGKILL)
                for proc in procs:
                    acked.update(_printed_before_kill(proc))
            last = await _feed_after_kills(path, acked, last)
            assert not [p for p in os.listdir(path) if ".tmp" in p]
            while len(followed) < int(last[2:]):
                followed.append(await asyncio.wait_for(stream.__anext__(), 10))
            assert [c.cursor for c in followed] == [f"f.{n}" for n in range(1, len(followed) + 1)]
            assert [c.new_value for c in followed] == list(range(1, len(followed) + 1))
    finally:
        await follower.close()
    assert acked, "the writers never got to write"


@pytest.mark.parametrize("mode", ["never", "always"])
async def test_a_follower_sees_every_record_of_writers_in_three_processes_once_through_their_compactions(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "s"
    reader = ms.FileStateAdapter(path)
    procs: list[subprocess.Popen[str]] = []
    try:
        stream = reader.changes(None)
        config = {"adapter": "file", "path": str(path), "fsync": mode, "compact_min_bytes": 2000}
        for _ in range(3):
            procs.append(start_child(config, "race", 300))
        go(*procs)
        followed = [await asyncio.wait_for(stream.__anext__(), 30) for _ in range(900)]
        assert [c.cursor for c in followed] == [f"f.{n}" for n in range(1, 901)]
        assert [c.new_value for c in followed] == list(range(1, 901))
        assert (await reader.feed_info())["last"] == "f.900"
        returned = sorted(n for proc in procs for n in finish(proc))
        assert returned == list(range(1, 901))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        await reader.close()
    assert (path / "snapshot").exists(), "the writers compacted"
