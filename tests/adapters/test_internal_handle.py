"""``adapter.internal`` on the memory and file adapters: reserved groups, no change events, durable writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms
from motia_state.adapters.base import write_operations
from motia_state.adapters.file import store as store_module
from motia_state.adapters.memory import InternalTable

RESERVED = "__motia/triggers"


@pytest.fixture(params=["memory", "file"])
async def adapter(request: Any, tmp_path: Path) -> AsyncIterator[ms.MemoryStateAdapter]:
    a = ms.MemoryStateAdapter() if request.param == "memory" else ms.FileStateAdapter(tmp_path / "s", fsync="never")
    yield a
    await a.close()


async def test_internal_writes_reach_reserved_groups_and_fire_no_change_events(adapter: ms.MemoryStateAdapter) -> None:
    events: list[Any] = []
    adapter.add_change_sink(events.extend)
    internal = adapter.internal
    assert await internal.set(RESERVED, "pos", {"offset": 1}) == {"offset": 1}
    assert await internal.compare_and_swap(RESERVED, "pos", {"offset": 1}, {"offset": 2}) is True
    assert await internal.compare_and_swap(RESERVED, "pos", {"offset": 1}, {"offset": 9}) is False
    result = await internal.transaction(
        RESERVED,
        [{"type": "set", "key": "lease", "value": "w1"}, {"type": "increment", "key": "n"}],
    )
    assert result.success and result.results == ["w1", 1]
    await internal.set(RESERVED, "gone", 1)
    assert await internal.delete(RESERVED, "gone") == 1
    assert await internal.get(RESERVED, "pos") == {"offset": 2}
    assert await internal.keys(RESERVED) == ["lease", "n", "pos"]
    assert await internal.get_group(RESERVED) == ["w1", 1, {"offset": 2}]
    assert events == [], "internal writes fire no change events"
    # The handle is the same table: an ordinary group written through it is
    # seen by the public API, and public writes still fire their events.
    await internal.set("g", "k", 1)
    assert await adapter.get("g", "k") == 1 and events == []
    await adapter.set("g", "k", 2)
    assert [(e.trace_id, e.key, e.new_value) for e in events] == [("g", "k", 2)]


async def test_internal_handle_checks_its_arguments(adapter: ms.MemoryStateAdapter) -> None:
    internal = adapter.internal
    with pytest.raises(ms.InvalidArgumentError):
        await internal.set("", "k", 1)
    with pytest.raises(ms.InvalidArgumentError):
        await internal.set(RESERVED, "", 1)
    with pytest.raises(ms.InvalidArgumentError):
        await internal.set(RESERVED, "k", float("nan"))
    await adapter.close()
    with pytest.raises(ms.UnavailableError, match="closed"):
        await internal.get(RESERVED, "k")


async def test_internal_writes_to_a_file_store_survive_reopening_and_reach_other_processes(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    b = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.internal.set(RESERVED, "pos", 7)
    assert await b.internal.get(RESERVED, "pos") == 7  # caught up from the log like any record
    await a.compact()
    await a.close()
    await b.close()
    c = ms.FileStateAdapter(tmp_path / "s")
    assert await c.internal.get(RESERVED, "pos") == 7
    await c.close()


async def test_internal_writes_are_acknowledged_only_after_fsync_in_mode_always(
    tmp_path: Path, monkeypatch: Any
) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    synced_at: list[int] = []
    monkeypatch.setattr(store_module, "_datasync", lambda fd: synced_at.append(a._log.appended))
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("set", (RESERVED, "k", 1)),
        ("compare_and_swap", (RESERVED, "k", 1, 2)),
        ("transaction", (RESERVED, [{"type": "set", "key": "t", "value": 1}])),
        ("delete", (RESERVED, "k")),
    ]
    assert {name for name, _ in calls} == write_operations(InternalTable)
    for name, args in calls:
        before = a._log.appended
        await getattr(a.internal, name)(*args)
        assert a._log.appended > before, name
        assert synced_at and synced_at[-1] == a._log.appended, f"internal {name} returned before its fsync"
    await a.close()


async def test_reserved_groups_stay_out_of_the_public_api(adapter: ms.MemoryStateAdapter) -> None:
    await adapter.internal.set(RESERVED, "pos", 1)
    await adapter.set("g", "k", 1)
    assert await adapter.groups() == ["g"]
    with pytest.raises(ms.InvalidArgumentError, match="reserved"):
        await adapter.get(RESERVED, "pos")
    with pytest.raises(ms.InvalidArgumentError, match="reserved"):
        await adapter.set(RESERVED, "pos", 2)
    with pytest.raises(ms.InvalidArgumentError, match="reserved"):
        await adapter.keys(RESERVED)
    assert await adapter.internal.get(RESERVED, "pos") == 1


async def test_a_reopened_file_store_keeps_its_reserved_groups_hidden(tmp_path: Path) -> None:
    a = ms.FileStateAdapter(tmp_path / "s", fsync="never")
    await a.internal.set(RESERVED, "pos", 1)
    await a.close()
    b = ms.FileStateAdapter(tmp_path / "s")
    assert await b.groups() == []
    assert await b.internal.keys(RESERVED) == ["pos"]
    await b.close()
