"""The file store's feed after a writer is killed (SIGKILL): nothing lost, nothing repeated, cursors still resume.

Each child process here writes, prints what was acknowledged, and kills
itself at one exact point (inside a compaction, or at a random moment);
the test then reopens the store and checks the feed record by record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import motia_state as ms

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
        ("os.replace", 2),  # between the renames: the new snapshot beside the old log
        ("fsync_dir", 1),  # both renamed, the directory not yet synced
    ],
)
async def test_a_writer_killed_inside_a_compaction_loses_and_repeats_nothing(
    tmp_path: Path, mode: str, where: str, nth: int
) -> None:
    path = tmp_path / "s"
    code, out = _run(DIE_IN_COMPACTION, str(path), mode, where, str(nth))
    assert code == -signal.SIGKILL, out
    acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ack")]
    assert acked == list(range(25))
    await _check_store(path, _expected_feed())
    assert sorted(name for name in os.listdir(path) if ".tmp" in name) == []
