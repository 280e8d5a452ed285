"""The change feed of the memory adapter, and what every feed shares (cursors, filters, waiting)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import anyio
import msgspec
import pytest

import motia_state as ms
from motia_state.feed import current_write_context, write_context


async def _all(stream: Any) -> list[ms.Change]:
    return [change async for change in stream]


async def test_records_every_change_in_commit_order_and_follow_false_ends() -> None:
    state = ms.MemoryStateAdapter()
    await state.set("g", "a", 1)
    await state.increment("g", "a", 2)
    await state.push("h", "l", "x")
    await state.delete("g", "a")
    records = await _all(state.changes(follow=False))
    assert [(c.group, c.key, c.op, c.event, c.old_value, c.new_value) for c in records] == [
        ("g", "a", "set", "created", None, 1),
        ("g", "a", "increment", "updated", 1, 3),
        ("h", "l", "push", "created", None, ["x"]),
        ("g", "a", "delete", "deleted", 3, None),
    ]
    assert [c.cursor for c in records] == ["m.1", "m.2", "m.3", "m.4"]
    assert all(isinstance(c.at, int) and c.depth == 0 and c.origin is None for c in records)
    assert records[0].to_wire()["oldValue"] is None and records[0].to_wire()["newValue"] == 1


async def test_operations_that_store_nothing_make_no_records() -> None:
    state = ms.MemoryStateAdapter()
    await state.set("g", "n", 1)
    assert await state.compare_and_swap("g", "n", 5, 6) is False
    await state.delete("g", "missing")
    await state.pop("g", "missing")
    failed = await state.transaction(
        "g", [{"type": "set", "key": "x", "value": 1}, {"type": "check", "key": "n", "op": "eq", "value": 9}]
    )
    assert not failed.success
    assert [c.cursor for c in await _all(state.changes(follow=False))] == ["m.1"]


async def test_transaction_records_are_contiguous_and_clear_records_each_entry() -> None:
    state = ms.MemoryStateAdapter()
    await state.transaction("g", [{"type": "set", "key": "b", "value": 1}, {"type": "set", "key": "a", "value": 2}])
    await state.clear("g")
    records = await _all(state.changes(follow=False))
    assert [(c.key, c.op, c.event) for c in records] == [
        ("b", "set", "created"),
        ("a", "set", "created"),
        ("a", "clear", "deleted"),
        ("b", "clear", "deleted"),
    ]


async def test_resuming_from_a_cursor_yields_exactly_the_rest() -> None:
    state = ms.MemoryStateAdapter()
    for i in range(10):
        await state.set("g", f"k{i}", i)
    records = await _all(state.changes(follow=False))
    rest = await _all(state.changes(records[3].cursor, follow=False))
    assert rest == records[4:]
    assert await _all(state.changes(records[-1].cursor, follow=False)) == []


async def test_after_now_is_fixed_when_changes_is_called() -> None:
    state = ms.MemoryStateAdapter()
    await state.set("g", "old", 1)
    stream = state.changes("now", follow=False)
    await state.set("g", "new", 2)
    assert [c.key for c in await _all(stream)] == ["new"]


async def test_filters_by_groups_and_keys() -> None:
    state = ms.MemoryStateAdapter()
    await state.set("a", "x", 1)
    await state.set("b", "x", 2)
    await state.set("a", "y", 3)
    assert [c.new_value for c in await _all(state.changes(groups=["a"], follow=False))] == [1, 3]
    assert [c.new_value for c in await _all(state.changes(keys={"x"}, follow=False))] == [1, 2]
    assert [c.new_value for c in await _all(state.changes(groups=["a"], keys=["x"], follow=False))] == [1]
    with pytest.raises(ms.InvalidArgumentError, match="groups"):
        state.changes(groups="a")


async def test_a_follower_sees_a_new_record_and_waits_without_polling() -> None:
    state = ms.MemoryStateAdapter()
    stream = state.changes("now")

    async def write_later() -> None:
        await asyncio.sleep(0.05)
        await state.set("g", "k", 1)

    task = asyncio.create_task(write_later())
    change = await asyncio.wait_for(stream.__anext__(), 5)
    assert (change.key, change.new_value) == ("k", 1)
    await task


async def test_a_writer_on_another_thread_wakes_a_follower() -> None:
    state = ms.MemoryStateAdapter()
    stream = state.changes("now")

    def writer() -> None:
        asyncio.run(state.set("g", "t", "from a thread"))

    thread = threading.Timer(0.05, writer)
    thread.start()
    change = await asyncio.wait_for(stream.__anext__(), 5)
    thread.join()
    assert change.new_value == "from a thread"


def test_a_follower_under_trio() -> None:
    async def main() -> str:
        state = ms.MemoryStateAdapter()
        stream = state.changes("now")
        async with anyio.create_task_group() as tg:

            async def write() -> None:
                await anyio.sleep(0.02)
                await state.set("g", "k", "trio")

            tg.start_soon(write)
            change = await stream.__anext__()
        return str(change.new_value)

    assert anyio.run(main, backend="trio") == "trio"


async def test_closing_the_adapter_ends_a_follower_with_unavailable() -> None:
    state = ms.MemoryStateAdapter()
    stream = state.changes("now")

    async def close_later() -> None:
        await asyncio.sleep(0.02)
        await state.close()

    task = asyncio.create_task(close_later())
    with pytest.raises(ms.UnavailableError):
        await asyncio.wait_for(stream.__anext__(), 5)
    await task


async def test_retention_by_count_keeps_the_newest_and_never_twice_as_many() -> None:
    state = ms.MemoryStateAdapter(feed_retention=5)
    for i in range(1, 101):
        await state.set("g", "k", i)
        info = await state.feed_info()
        assert min(i, 5) <= info["retained"] <= 10
        assert info["last"] == f"m.{i}"
    values = [c.new_value for c in await _all(state.changes(follow=False))]
    assert values == list(range(101 - len(values), 101))
    first = int(str((await state.feed_info())["first"]).split(".")[1])
    assert len(await _all(state.changes(f"m.{first - 1}", follow=False))) == len(values)
    with pytest.raises(ms.CursorExpiredError) as caught:
        state.changes(f"m.{first - 2}")
    assert caught.value.code == "CURSOR_EXPIRED"


async def test_a_reader_that_falls_behind_retention_gets_cursor_expired_not_a_skip() -> None:
    state = ms.MemoryStateAdapter(feed_retention=3)
    await state.set("g", "k", 0)
    stream = state.changes(None, follow=False)
    first = await stream.__anext__()
    assert first.new_value == 0
    for i in range(1, 10):
        await state.set("g", "k", i)
    with pytest.raises(ms.CursorExpiredError):
        await stream.__anext__()


async def test_retention_by_bytes_never_keeps_more_than_twice_the_limit() -> None:
    limit = 10_000
    state = ms.MemoryStateAdapter(feed_retention_bytes=limit)
    value = "x" * 500
    for i in range(200):
        await state.set("g", f"k{i}", value)
    records = await _all(state.changes(follow=False))
    encoded = sum(len(msgspec.json.encode(c)) for c in records)
    assert 10 <= len(records) < 200
    assert encoded <= 2 * limit
    assert sum(len(msgspec.json.encode(c)) for c in records[1:]) >= limit // 2  # not tighter than needed
    assert records[-1].key == "k199"


async def test_retention_by_bytes_counts_objects_at_the_size_checked_when_they_were_set() -> None:
    # A set of an object takes its new value's size from the encoding that
    # checked it against the limits: records of growing objects, updated in
    # place and created, stay within twice the limit and no tighter.
    limit = 12_000
    state = ms.MemoryStateAdapter(feed_retention_bytes=limit)
    for i in range(300):
        await state.set("g", f"k{i % 7}", {"i": i, "pad": ["y" * (i % 90)] * 3, "deep": {"n": [i, None, True]}})
    records = await _all(state.changes(follow=False))
    encoded = [len(msgspec.json.encode(c)) for c in records]
    assert sum(encoded) <= 2 * limit
    assert sum(encoded[1:]) >= limit // 2
    assert records[-1].new_value["i"] == 299 and records[-1].old_value["i"] == 292


def test_import_sized_returns_what_import_value_does_and_the_encoded_size() -> None:
    from motia_state.values import DEFAULT_LIMITS, Limits, encoded_size, import_sized, import_value

    for value in ({"a": [1, 2.5, "é\n"], "b": {}}, [None, True, {"x": "y"}], "s", 3, 2.5, None, (1, 2)):
        copied, size = import_sized(value)
        assert copied == import_value(value)
        assert size == (encoded_size(copied) if type(value) in (dict, list) else -1)
        if type(value) in (dict, list):
            assert copied is not value
    with pytest.raises(ms.LimitExceededError, match="value is larger than 16 bytes"):
        import_sized({"k": "x" * 20}, Limits(max_value_bytes=16))
    with pytest.raises(ms.InvalidArgumentError, match="value must be JSON"):
        import_sized({"k": {1, 2}}, DEFAULT_LIMITS)


async def test_retention_by_bytes_counts_huge_numbers_written_by_increment() -> None:
    # An increment's record is sized without encoding its numbers while they
    # are small; a huge one must still count at its encoded size.
    limit = 20_000
    state = ms.MemoryStateAdapter(feed_retention_bytes=limit)
    await state.set("g", "n", 10**1000)
    for _ in range(100):
        await state.increment("g", "n")
    records = await _all(state.changes(follow=False))
    encoded = sum(len(msgspec.json.encode(c)) for c in records)
    assert 5 <= len(records) < 40  # each record holds two 1,001-digit numbers
    assert encoded <= 2 * limit
    assert records[-1].new_value == 10**1000 + 100


async def test_a_cursor_from_another_store_or_not_a_cursor() -> None:
    state = ms.MemoryStateAdapter()
    await state.set("g", "k", 1)
    with pytest.raises(ms.CursorExpiredError, match="another kind of store"):
        state.changes("f.1")
    with pytest.raises(ms.CursorExpiredError, match="not from this store"):
        state.changes("m.99")
    for bad in ("m.", "m.01", "cursor", 7):
        with pytest.raises(ms.InvalidArgumentError):
            state.changes(bad)  # type: ignore[arg-type]


async def test_feed_retention_zero_turns_the_feed_off_with_a_clear_error() -> None:
    state = ms.MemoryStateAdapter(feed_retention=0)
    await state.set("g", "k", 1)
    with pytest.raises(ms.InvalidArgumentError, match=r"feed is off \(feed_retention=0\)"):
        state.changes()
    with pytest.raises(ms.InvalidArgumentError, match="feed is off"):
        await state.history("g", "k")
    with pytest.raises(ms.InvalidArgumentError, match="feed is off"):
        await state.feed_info()
    with pytest.raises(ms.InvalidArgumentError, match="feed_retention"):
        ms.MemoryStateAdapter(feed_retention=-1)


async def test_history_is_newest_first_and_limited() -> None:
    state = ms.MemoryStateAdapter()
    for i in range(5):
        await state.set("g", "k", i)
        await state.set("g", "other", i)
    history = await state.history("g", "k", limit=3)
    assert [c.new_value for c in history] == [4, 3, 2]
    assert await state.history("g", "nothing") == []


async def test_records_hold_copies_of_the_values() -> None:
    state = ms.MemoryStateAdapter()
    await state.set("g", "k", {"a": [1]})
    (change,) = await _all(state.changes(follow=False))
    change.new_value["a"].append(2)
    assert await state.get("g", "k") == {"a": [1]}
    (again,) = await _all(state.changes(follow=False))
    assert again.new_value == {"a": [1]}


async def test_the_write_context_stamps_depth_and_origin() -> None:
    state = ms.MemoryStateAdapter()
    assert current_write_context() == (0, None)
    with write_context(3, {"step": "score.step.py", "traceId": "t-1"}):
        await state.increment("g", "n")
    await state.increment("g", "n")
    first, second = await _all(state.changes(follow=False))
    assert (first.depth, first.origin) == (3, {"step": "score.step.py", "traceId": "t-1"})
    assert (second.depth, second.origin) == (0, None)


async def test_the_manager_delegates_to_its_adapter() -> None:
    manager = ms.StateManager(ms.MemoryStateAdapter())
    await manager.set("g", "k", 1)
    assert [c.cursor async for c in manager.changes(follow=False)] == ["m.1"]
    assert [c.new_value for c in await manager.history("g", "k")] == [1]
    assert await manager.feed_info() == {"first": "m.1", "last": "m.1", "retained": 1}


async def test_the_feed_options_can_be_configured_by_name(tmp_path: Any) -> None:
    memory = ms.create_state_adapter({"adapter": "memory", "feed_retention": 0})
    with pytest.raises(ms.InvalidArgumentError, match="feed is off"):
        memory.changes()
    file = ms.create_state_adapter({"adapter": "file", "path": str(tmp_path), "feed_retention_bytes": 1 << 20})
    await file.set("g", "k", 1)
    assert (await file.feed_info())["retained"] == 1
    await file.close()


async def test_a_reader_that_stops_waiting_leaves_no_waiter_behind() -> None:
    state = ms.MemoryStateAdapter()
    stream = state.changes("now")
    for _ in range(20):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.__anext__(), 0.001)
    assert state._feed is not None and not state._feed.waiting
    await state.set("g", "k", 1)
    assert (await asyncio.wait_for(stream.__anext__(), 5)).new_value == 1


@pytest.mark.parametrize("listening", [False, True])
async def test_the_internal_handle_and_reserved_groups_make_no_records(tmp_path: Any, listening: bool) -> None:
    for state in (ms.MemoryStateAdapter(), ms.FileStateAdapter(tmp_path / "store")):
        if listening:
            state.add_change_sink(lambda changes: None)
        await state.set("g", "before", 1)
        await state.internal.set("__motia/triggers", "position", "m.1")
        await state.internal.compare_and_swap("__motia/triggers", "position", "m.1", "m.2")
        await state.internal.transaction("__motia/leases", [{"type": "set", "key": "p0", "value": {"owner": 1}}])
        await state.internal.delete("__motia/leases", "p0")
        await state.set("g", "after", 2)
        assert [c.key for c in await _all(state.changes(follow=False))] == ["before", "after"]
        assert await state.internal.get("__motia/triggers", "position") == "m.2"
        with pytest.raises(ms.InvalidArgumentError):
            await state.set("__motia/triggers", "x", 1)
        await state.close()


# Increments of a stored int by an int under names already checked take the
# adapter's inlined path, which appends the ring's fast record itself: the
# tests below warm the names up first so that they exercise that path.


async def _hot(state: ms.MemoryStateAdapter, group: str, key: str) -> None:
    await state.set(group, key, 0)
    await state.increment(group, key)  # checks the names; the next ones are inlined


async def test_hot_increments_record_values_commit_time_and_write_context() -> None:
    state = ms.MemoryStateAdapter()
    await _hot(state, "g", "n")
    before = int(time.time() * 1000)
    await state.increment("g", "n", 5)
    with write_context(2, {"step": "a.step.py", "traceId": "t"}):
        await state.increment("g", "n")
    await state.increment("g", "n", -10)
    after = int(time.time() * 1000)
    records = (await _all(state.changes(follow=False)))[2:]
    assert [(c.op, c.event, c.old_value, c.new_value, c.depth, c.origin) for c in records] == [
        ("increment", "updated", 1, 6, 0, None),
        ("increment", "updated", 6, 7, 2, {"step": "a.step.py", "traceId": "t"}),
        ("increment", "updated", 7, -3, 0, None),
    ]
    assert all(before <= c.at <= after for c in records)
    assert [c.cursor for c in records] == ["m.3", "m.4", "m.5"]
    assert [c.new_value for c in await state.history("g", "n", limit=2)] == [-3, 7]


async def test_hot_increments_keep_retention_by_count() -> None:
    state = ms.MemoryStateAdapter(feed_retention=5)
    await _hot(state, "g", "n")
    for i in range(3, 103):
        await state.increment("g", "n")
        info = await state.feed_info()
        assert min(i, 5) <= info["retained"] <= 10 and info["last"] == f"m.{i}"
    values = [c.new_value for c in await _all(state.changes(follow=False))]
    assert values == list(range(102 - len(values), 102))


async def test_hot_increments_are_sized_exactly_once_the_byte_limit_binds() -> None:
    # A fast record is first counted at the most it can be (names of 64
    # characters); once that bound alone would trim, the ring sizes the
    # records exactly, so it keeps no fewer than the limit allows.
    limit = 6_000
    state = ms.MemoryStateAdapter(feed_retention_bytes=limit)
    keys = [f"key-{i:02d}-" + "x" * 30 for i in range(10)]
    for key in keys:
        await _hot(state, "g", key)
    for i in range(3_000):
        await state.increment("g", keys[i % 10])
        if i % 250 == 0:
            records = await _all(state.changes(follow=False))
            assert sum(len(msgspec.json.encode(c)) for c in records) <= 2 * limit
    records = await _all(state.changes(follow=False))
    encoded = [len(msgspec.json.encode(c)) for c in records]
    assert sum(encoded) <= 2 * limit
    assert sum(encoded[1:]) >= limit // 2  # not tighter than needed
    assert records[-1].new_value == 301 and records[-1].key == keys[-1]


async def test_a_follower_is_woken_by_hot_increments() -> None:
    state = ms.MemoryStateAdapter()
    await _hot(state, "g", "n")
    stream = state.changes("now")
    for value in (2, 3, 4):
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.01)  # the reader is waiting now
        await state.increment("g", "n")
        assert (await asyncio.wait_for(task, 5)).new_value == value


async def test_a_closed_adapter_refuses_hot_increments() -> None:
    state = ms.MemoryStateAdapter()
    await _hot(state, "g", "n")
    await state.close()
    with pytest.raises(ms.UnavailableError):
        await state.increment("g", "n")


async def test_mixed_records_keep_both_limits_and_read_back_in_order() -> None:
    # Fast increments and sets of values that must be encoded to be sized,
    # interleaved, under both limits: what is kept is the newest, in order,
    # within twice each limit and no tighter than the byte limit needs.
    limit = 8_000
    state = ms.MemoryStateAdapter(feed_retention=60, feed_retention_bytes=limit)
    await _hot(state, "g", "n")
    expected: list[Any] = [0, 1]
    for i in range(1_500):
        if i % 3 == 0:
            value = {"i": i, "pad": "x" * (i % 200)}
            await state.set("g", f"k{i % 7}", value)
            expected.append(value)
        else:
            expected.append(await state.increment("g", "n"))
        if i % 100 == 0:
            info = await state.feed_info()
            assert info["retained"] <= 120
    records = await _all(state.changes(follow=False))
    encoded = [len(msgspec.json.encode(c)) for c in records]
    assert sum(encoded) <= 2 * limit and len(records) <= 120
    assert len(records) >= 60 or sum(encoded[1:]) >= limit // 2
    assert [c.new_value for c in records] == expected[-len(records) :]
    first = int(records[0].cursor.split(".")[1])
    assert [c.cursor for c in records] == [f"m.{first + i}" for i in range(len(records))]


async def test_a_reader_changing_an_origin_changes_no_stored_record() -> None:
    state = ms.MemoryStateAdapter()
    origin = {"step": "s", "traceId": "t"}
    with write_context(1, origin):  # one request's writes share its origin
        await state.set("g", "a", 1)
        await state.increment("g", "a")
    first, second = await _all(state.changes(follow=False))
    assert first.origin == second.origin == origin
    first.origin["step"] = "changed"  # type: ignore[index]
    stored = {"step": "s", "traceId": "t"}
    again = await _all(state.changes(follow=False))
    assert [c.origin for c in again] == [stored, stored]
    history = await state.history("g", "a")
    assert [c.origin for c in history] == [stored, stored]
    assert origin == stored, "nor the writer's own dict"
