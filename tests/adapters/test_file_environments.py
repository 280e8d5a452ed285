"""The file store in odd environments: files it may not open, a full disk, odd paths, nested stores."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import motia_state as ms

ROOT = Path(__file__).resolve().parents[2]


async def _store_with_a_value(path: Path) -> None:
    a = ms.FileStateAdapter(path)
    await a.set("g", "k", 1)
    await a.close()


@pytest.mark.parametrize("name", ["lock", "log"])
async def test_a_store_file_that_cannot_be_opened_is_unavailable_not_a_raw_os_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "s"
    await _store_with_a_value(path)
    (path / name).unlink()
    (path / name).mkdir()  # opening it for writing fails (EISDIR), as a read-only file system does (EROFS)
    with pytest.raises(ms.errors.UnavailableError, match="cannot open the store") as caught:
        ms.FileStateAdapter(path)
    assert caught.value.code == "UNAVAILABLE"
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens files whatever their mode")
async def test_a_read_only_store_directory_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "s"
    await _store_with_a_value(path)
    for name in os.listdir(path):
        os.chmod(path / name, 0o400)
    os.chmod(path, 0o500)
    try:
        with pytest.raises(ms.errors.UnavailableError, match="cannot open the store"):
            ms.FileStateAdapter(path)
    finally:
        os.chmod(path, 0o700)
        for name in os.listdir(path):
            os.chmod(path / name, 0o600)


# argv: path, fsync mode. Files may grow to 200 kB at most (RLIMIT_FSIZE:
# writes past it fail with EFBIG, as on a full disk); the child writes until
# a run of writes has failed, printing each acknowledged write and the code
# of each failure.
FULL_DISK = """
import asyncio, resource, sys
import motia_state as ms

async def main():
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
    state = ms.FileStateAdapter(sys.argv[1], fsync=sys.argv[2], compact_min_bytes=30_000)
    failed = 0
    for i in range(2000):
        try:
            await state.set("g", f"k{i % 40}", [i, "x" * 2000])
        except ms.errors.StateError as e:
            print("error", e.code, flush=True)
            failed += 1
            if failed > 20:
                break
        else:
            print("ack", i, flush=True)
    await state.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["never", "always"])
async def test_a_full_disk_fails_writes_as_unavailable_and_keeps_every_acknowledged_one(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    lines = child.stdout.split("\n")
    acked = [int(line.split()[1]) for line in lines if line.startswith("ack")]
    codes = {line.split()[1] for line in lines if line.startswith("error")}
    assert codes == {"UNAVAILABLE"}, child.stdout
    assert 20 < len(acked) < 2000
    store = ms.FileStateAdapter(path)
    try:
        latest = {f"k{i % 40}": i for i in acked}
        for key, i in latest.items():
            assert (await store.get("g", key))[0] == i
        # The feed holds exactly the acknowledged writes, numbered without gaps or repeats.
        records = [c async for c in store.changes(None, follow=False)]
        assert [c.new_value[0] for c in records] == acked[len(acked) - len(records) :]
        assert records[-1].cursor == f"f.{len(acked)}"
        numbers = [int(c.cursor[2:]) for c in records]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    finally:
        await store.close()
    assert [name for name in os.listdir(path) if ".tmp" in name] == []


async def test_after_another_process_cuts_a_torn_record_away_the_next_append_still_grows_the_file_first(
    tmp_path: Path,
) -> None:
    # A torn tail is told from damage by the zeros the file always has ahead
    # of its records. Cutting a torn record away shortens the file; a process
    # that had grown the file earlier must not then append past its end, or
    # its own append cut short by a crash would look like damage.
    path = tmp_path / "s"
    a, b = ms.FileStateAdapter(path, fsync="never"), ms.FileStateAdapter(path, fsync="never")
    try:
        await a.set("g", "a", 1)
        await b.set("g", "b", 1)  # both have seen the file grown
        end = b._log.offset
        torn = ms.adapters.file.format.record(ms.adapters.file.format.RecordType.CHANGES, b'[["g","c",1]]')
        with open(path / "log", "r+b") as f:  # a third writer killed halfway through its append
            f.seek(end)
            f.write(torn[: len(torn) // 2])
        assert await a.get("g", "c") is None  # a meets the torn record and cuts it away
        assert os.path.getsize(path / "log") == end
        await b.set("g", "b", 2)
        assert os.path.getsize(path / "log") > b._log.offset, "zeros ahead of the records again"
        # b's next append, cut short by a crash, is a torn tail, not damage.
        half = torn[: len(torn) // 2]
        with open(path / "log", "r+b") as f:
            f.seek(b._log.offset)
            f.write(half)
    finally:
        await a.close()
        await b.close()
    again = ms.FileStateAdapter(path)
    try:
        assert await again.get("g", "b") == 2
        assert await again.get("g", "c") is None
    finally:
        await again.close()


async def test_stores_on_a_path_with_spaces_and_unicode_one_nested_in_the_other_stay_apart(tmp_path: Path) -> None:
    outer_path = tmp_path / "a dir with spaces ✓ ünï" / "s"
    inner_path = outer_path / "inner store ✓"
    outer, inner = ms.FileStateAdapter(outer_path), ms.FileStateAdapter(inner_path)
    follower = ms.FileStateAdapter(outer_path)
    try:
        stream = follower.changes("now")
        await inner.set("g", "k", "inner")  # wakes the outer store's watch, adds nothing to its feed
        await outer.set("g", "k", "outer")
        change = await asyncio.wait_for(stream.__anext__(), 10)
        assert (change.cursor, change.new_value) == ("f.1", "outer")
        await outer.compact()
        await inner.compact()
    finally:
        for store in (outer, inner, follower):
            await store.close()
    outer, inner = ms.FileStateAdapter(outer_path), ms.FileStateAdapter(inner_path)
    try:
        assert await outer.get("g", "k") == "outer"
        assert await inner.get("g", "k") == "inner"
        assert (await outer.feed_info())["last"] == (await inner.feed_info())["last"] == "f.1"
    finally:
        await outer.close()
        await inner.close()
    assert sorted(os.listdir(outer_path)) == ["inner store ✓", "lock", "log", "snapshot"]


async def test_an_operation_whose_log_record_would_pass_the_record_bound_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound is 2 GiB, reached only with limits raised far past their
    # defaults; lowered here so that a small value meets it.
    from motia_state.adapters.file import store as store_module

    path = tmp_path / "s"
    a = ms.FileStateAdapter(path)
    await a.set("g", "k", "small")
    monkeypatch.setattr(store_module, "MAX_RECORD", 1000)
    with pytest.raises(ms.LimitExceededError, match="one log record holds; nothing was written"):
        await a.set("g", "k", "x" * 2000)
    with pytest.raises(ms.LimitExceededError):
        await a.transaction("g", [{"type": "set", "key": "new", "value": "y" * 2000}])
    assert await a.get("g", "k") == "small" and await a.get("g", "new") is None
    assert [c.key for c in [c async for c in a.changes(None, follow=False)]] == ["k"]
    await a.set("g", "k", "fits")  # the store goes on
    await a.close()
    monkeypatch.undo()
    again = ms.FileStateAdapter(path)
    assert await again.get_group("g") == ["fits"]
    assert [c.new_value async for c in again.changes(None, follow=False)] == ["small", "fits"]
    await again.close()


def test_a_feed_retention_a_log_record_cannot_hold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ms.InvalidArgumentError, match="feed_retention_bytes: at most"):
        ms.FileStateAdapter(tmp_path / "s", feed_retention_bytes=1 << 31)
    assert not (tmp_path / "s").exists(), "nothing is created for a refused option"


async def test_a_compaction_syncs_the_directory_between_its_two_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A power loss may keep a later rename and drop an earlier one unless the
    # directory is synced between them: the new log beside the old snapshot
    # is refused on open. What the disk keeps cannot be tested here; the
    # order of the calls that decide it can.
    from motia_state.adapters.file import store as store_module

    path = tmp_path / "s"
    a = ms.FileStateAdapter(path)
    await a.set("g", "k", 1)
    steps: list[str] = []
    replace, sync = os.replace, store_module.fsync_dir

    def recording_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        steps.append(f"rename {Path(dst).name}")
        replace(src, dst)

    def recording_sync(directory: Path) -> None:
        steps.append("sync dir")
        sync(directory)

    monkeypatch.setattr(store_module.os, "replace", recording_replace)
    monkeypatch.setattr(store_module, "fsync_dir", recording_sync)
    await a.compact()
    monkeypatch.undo()
    assert steps == ["rename snapshot", "sync dir", "rename log", "sync dir"]
    await a.set("g", "k", 2)
    await a.close()
    again = ms.FileStateAdapter(path)
    assert await again.get("g", "k") == 2
    await again.close()
