"""The change feed of the Redis adapter, its key layout and its listing, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import motia_state as ms
from motia_state.adapters.redis import adapter as redis_adapter
from motia_state.adapters.redis import migrate_legacy_layout
from motia_state.adapters.redis.layout import Layout, RedisLayoutError, iter_legacy_entries
from motia_state.feed import write_context
from motia_state.predicates import parse_predicate

from ..helpers import ROOT, RedisServer
from .test_replay_property import OPERATIONS, _replay, _run, _snapshot


async def _all(stream: Any) -> list[ms.Change]:
    return [change async for change in stream]


def _adapter(server: RedisServer, prefix: str, **options: Any) -> ms.RedisStateAdapter:
    return ms.RedisStateAdapter(server.url, key_prefix=prefix, **options)


@pytest.fixture
async def state(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[ms.RedisStateAdapter]:
    adapter = _adapter(redis_server, redis_prefix)
    yield adapter
    await adapter.close()


def _seen(records: list[ms.Change]) -> list[tuple[Any, ...]]:
    return [(c.group, c.key, c.op, c.event, c.old_value, c.new_value) for c in records]


# ----------------------------------------------------------- what is recorded


async def test_records_every_change_in_commit_order_and_follow_false_ends(state: ms.RedisStateAdapter) -> None:
    before = int(time.time() * 1000)
    await state.set("g", "a", 1)
    await state.increment("g", "a", 2)
    await state.push("h", "l", "x")
    await state.delete("g", "a")
    records = await _all(state.changes(follow=False))
    assert _seen(records) == [
        ("g", "a", "set", "created", None, 1),
        ("g", "a", "increment", "updated", 1, 3),
        ("h", "l", "push", "created", None, ["x"]),
        ("g", "a", "delete", "deleted", 3, None),
    ]
    assert [c.cursor for c in records] == ["r.1", "r.2", "r.3", "r.4"]
    # `at` comes from the Redis server's clock (the same host here).
    assert all(before - 1000 <= c.at <= time.time() * 1000 + 1000 for c in records)
    assert all(c.depth == 0 and c.origin is None for c in records)


async def test_operations_that_store_nothing_make_no_records(state: ms.RedisStateAdapter) -> None:
    await state.set("g", "n", 1)
    assert await state.compare_and_swap("g", "n", 5, 6) is False
    assert await state.delete("g", "missing") is None
    assert await state.pop("g", "missing") is None
    await state.clear("nothing-here")
    failed = await state.transaction(
        "g", [{"type": "set", "key": "x", "value": 1}, {"type": "check", "key": "n", "op": "eq", "value": 9}]
    )
    assert not failed.success
    with pytest.raises(ms.TypeMismatchError):
        await state.push("g", "n", 1)
    assert [c.cursor for c in await _all(state.changes(follow=False))] == ["r.1"]


async def test_transactions_batches_and_clear_record_what_their_events_say(state: ms.RedisStateAdapter) -> None:
    events: list[ms.StateChange] = []
    state.add_change_sink(events.extend)
    await state.transaction("g", [{"type": "set", "key": "b", "value": 1}, {"type": "set", "key": "a", "value": 2}])
    await state.batch(
        "g", [{"type": "increment", "key": "a"}, {"type": "pop", "key": "a"}, {"type": "increment", "key": "a"}]
    )
    await state.transaction("g", [{"type": "update", "key": "b", "updateFn": lambda v: v + 10}])
    await state.batch("g", [{"type": "update", "key": "c", "updateFn": lambda v: 1}, {"type": "increment", "key": "c"}])
    await state.clear("g")
    records = await _all(state.changes(follow=False))
    assert [(c.key, c.op, c.event, c.old_value, c.new_value) for c in records] == [
        (e.key, e.op, e.event, e.old_value, e.new_value) for e in events
    ]
    assert [(c.key, c.op, c.event) for c in records][-3:] == [
        ("a", "clear", "deleted"),
        ("b", "clear", "deleted"),
        ("c", "clear", "deleted"),
    ]


async def test_the_write_context_stamps_depth_and_origin(state: ms.RedisStateAdapter) -> None:
    with write_context(3, {"step": "score.step.py", "traceId": "t-1"}):
        await state.increment("g", "n")
        await state.transaction("g", [{"type": "update", "key": "m", "updateFn": lambda v: 1}])
    with write_context(1, None):
        await state.increment("g", "n")
    await state.increment("g", "n")
    records = await _all(state.changes(follow=False))
    origin = {"step": "score.step.py", "traceId": "t-1"}
    assert [(c.depth, c.origin) for c in records] == [(3, origin), (3, origin), (1, None), (0, None)]


async def test_the_internal_handle_and_reserved_groups_make_no_records(state: ms.RedisStateAdapter) -> None:
    await state.internal.set("__motia/triggers", "position", "r.1")
    await state.internal.transaction("__motia/x", [{"type": "set", "key": "k", "value": 1}])
    await state.internal.set("visible", "k", 1)
    assert await state.feed_info() == {"first": None, "last": None, "retained": 0}
    assert await state.groups() == ["visible"]
    assert "__motia/x" in await state.internal.groups()


# ------------------------------------------------------------------- reading


async def test_resuming_from_a_cursor_yields_exactly_the_rest(state: ms.RedisStateAdapter) -> None:
    for i in range(10):
        await state.set("g", f"k{i}", i)
    records = await _all(state.changes(follow=False))
    assert await _all(state.changes(records[3].cursor, follow=False)) == records[4:]
    assert await _all(state.changes(records[-1].cursor, follow=False)) == []
    assert await state.feed_info() == {"first": "r.1", "last": "r.10", "retained": 10}


async def test_after_now_is_fixed_when_changes_is_called(state: ms.RedisStateAdapter) -> None:
    await state.set("g", "old", 1)
    stream = state.changes("now", follow=False)
    await state.set("g", "new", 2)  # sent before the stream has read anything: still after "now"
    assert [c.key for c in await _all(stream)] == ["new"]


async def test_filters_by_groups_and_keys(state: ms.RedisStateAdapter) -> None:
    await state.set("a", "x", 1)
    await state.set("b", "x", 2)
    await state.set("a", "y", 3)
    assert [c.new_value for c in await _all(state.changes(groups=["a"], follow=False))] == [1, 3]
    assert [c.new_value for c in await _all(state.changes(keys={"x"}, follow=False))] == [1, 2]
    assert [c.new_value for c in await _all(state.changes(groups=["a"], keys=["x"], follow=False))] == [1]
    with pytest.raises(ms.InvalidArgumentError, match="groups"):
        state.changes(groups="a")


async def test_a_follower_sees_a_new_record(state: ms.RedisStateAdapter) -> None:
    stream = state.changes("now")

    async def write_later() -> None:
        await asyncio.sleep(0.05)
        await state.set("g", "k", 1)

    task = asyncio.create_task(write_later())
    change = await asyncio.wait_for(stream.__anext__(), 5)
    assert (change.key, change.new_value) == ("k", 1)
    await task


_WRITER = """
import asyncio, sys, time
import motia_state as ms

async def main():
    state = ms.RedisStateAdapter(sys.argv[1], key_prefix=sys.argv[2])
    await state.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(20):
        await asyncio.sleep(0.03)
        await state.set("g", "k", time.time())
    await state.close()

asyncio.run(main())
"""


async def test_a_reader_sees_another_processs_writes_within_100_ms_without_polling(
    state: ms.RedisStateAdapter, redis_server: RedisServer, redis_prefix: str
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, redis_server.url, redis_prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as child:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        stream = state.changes("now")
        await state.feed_info()  # the stream's start is fixed before the writer goes
        stats = await state.client.info("commandstats")
        xreads = stats.get("cmdstat_xread", {}).get("calls", 0)
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        delays = []
        for _ in range(20):
            change = await asyncio.wait_for(stream.__anext__(), 5)
            delays.append(time.time() - change.new_value)
        # No busy polling: one blocking read per wake-up, not a loop of them.
        stats = await state.client.info("commandstats")
        assert stats["cmdstat_xread"]["calls"] - xreads <= 2 * 20 + 2
        # The median, not the maximum: a loaded machine can hold up any one
        # wake-up, while a follower that waited out its blocking reads
        # (0.8 s) instead of waking on the write would see most changes late.
        assert sorted(delays)[len(delays) // 2] < 0.1, delays
        assert child.wait(10) == 0


async def test_an_idle_follower_waits_in_a_blocking_read(redis_server: RedisServer, redis_prefix: str) -> None:
    state = _adapter(redis_server, redis_prefix, timeout=1.0)
    try:
        stream = state.changes("now")
        stats = await state.client.info("commandstats")
        before = stats.get("cmdstat_xread", {}).get("calls", 0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(stream.__anext__(), 2.0)
        stats = await state.client.info("commandstats")
        assert stats["cmdstat_xread"]["calls"] - before <= 4  # blocks of 0.8 s, not a poll loop
    finally:
        await state.close()


async def test_closing_the_adapter_ends_a_follower_with_unavailable(state: ms.RedisStateAdapter) -> None:
    stream = state.changes("now")

    async def close_later() -> None:
        await asyncio.sleep(0.05)
        await state.close()

    task = asyncio.create_task(close_later())
    with pytest.raises(ms.UnavailableError):
        await asyncio.wait_for(stream.__anext__(), 5)
    await task


# ----------------------------------------------------------------- retention


async def test_retention_by_count_keeps_the_newest_and_expires_older_cursors(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix, feed_retention=5)
    try:
        for i in range(20):
            await state.set("g", "k", i)
        assert await state.feed_info() == {"first": "r.16", "last": "r.20", "retained": 5}
        assert [c.new_value for c in await _all(state.changes(follow=False))] == [15, 16, 17, 18, 19]
        assert len(await _all(state.changes("r.15", follow=False))) == 5
        with pytest.raises(ms.CursorExpiredError) as caught:
            await _all(state.changes("r.14", follow=False))
        assert caught.value.code == "CURSOR_EXPIRED"
    finally:
        await state.close()


async def test_a_reader_that_falls_behind_retention_gets_cursor_expired_not_a_skip(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix, feed_retention=3)
    try:
        await state.set("g", "k", 0)
        stream = state.changes(None, follow=False)
        assert (await stream.__anext__()).new_value == 0
        for i in range(1, 10):
            await state.set("g", "k", i)
        with pytest.raises(ms.CursorExpiredError):
            await stream.__anext__()
        follower = state.changes("r.10")
        for i in range(10, 20):
            await state.set("g", "k", i)
        with pytest.raises(ms.CursorExpiredError):  # the blocking path checks the same way
            await asyncio.wait_for(follower.__anext__(), 5)
    finally:
        await state.close()


async def test_retention_by_bytes_never_keeps_more_than_twice_the_limit(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    limit = 40_000
    state = _adapter(redis_server, redis_prefix, feed_retention_bytes=limit)
    try:
        value = "x" * 1000
        for i in range(300):
            await state.set("g", f"k{i}", value)
        records = await _all(state.changes(follow=False))
        encoded = sum(len(msgspec.json.encode(c)) for c in records)
        assert 5 <= len(records) < 300
        assert encoded <= 2 * limit
        assert records[-1].key == "k299"
    finally:
        await state.close()


async def test_a_cursor_from_another_store_or_not_a_cursor(state: ms.RedisStateAdapter) -> None:
    await state.set("g", "k", 1)
    with pytest.raises(ms.CursorExpiredError, match="another kind of store"):
        state.changes("m.1")
    with pytest.raises(ms.CursorExpiredError, match="shards"):
        await _all(state.changes("r.1.1", follow=False))
    with pytest.raises(ms.CursorExpiredError, match="not from this store"):
        await _all(state.changes("r.99", follow=False))
    for bad in ("r.", "r.01", "cursor", 7):
        with pytest.raises(ms.InvalidArgumentError):
            state.changes(bad)  # type: ignore[arg-type]


async def test_feed_retention_zero_turns_the_feed_off(redis_server: RedisServer, redis_prefix: str) -> None:
    state = _adapter(redis_server, redis_prefix, feed_retention=0)
    try:
        await state.set("g", "k", 1)
        assert await state.client.exists(f"{redis_prefix}{{s0}}:feed") == 0
        with pytest.raises(ms.InvalidArgumentError, match=r"feed is off \(feed_retention=0\)"):
            state.changes()
        with pytest.raises(ms.InvalidArgumentError, match="feed is off"):
            await state.history("g", "k")
        with pytest.raises(ms.InvalidArgumentError, match="feed is off"):
            await state.feed_info()
        with pytest.raises(ms.InvalidArgumentError, match="feed_retention"):
            _adapter(redis_server, redis_prefix, feed_retention=-1)
    finally:
        await state.close()


# ------------------------------------------------------------------- history


async def test_history_is_newest_first_limited_and_searches_in_steps(
    state: ms.RedisStateAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        await state.set("g", "k", i)
        for j in range(4):
            await state.set("g", f"other{j}", i)
    monkeypatch.setattr(redis_adapter, "HISTORY_STEP", 3)  # several program calls per search
    history = await state.history("g", "k", limit=3)
    assert [c.new_value for c in history] == [4, 3, 2]
    assert [c.new_value for c in await state.history("g", "k")] == [4, 3, 2, 1, 0]
    assert await state.history("g", "nothing") == []
    records = {c.cursor: c for c in await _all(state.changes(follow=False))}
    assert all(records[c.cursor] == c for c in history)


# ------------------------------------------------------------------- sharded


async def test_a_sharded_store_reads_every_shard_and_resumes_exactly(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix, shards=4)
    try:
        groups = [f"group-{i}" for i in range(12)]
        for round_ in range(3):
            for g in groups:
                await state.set(g, "k", round_)
        records = await _all(state.changes(follow=False))
        assert len(records) == 36
        assert all(len(c.cursor.split(".")) == 5 for c in records)
        for g in groups:  # per group, commit order
            assert [c.new_value for c in records if c.group == g] == [0, 1, 2]
        for cut in (0, 7, 20, 35):
            rest = await _all(state.changes(records[cut].cursor, follow=False))
            assert sorted(c.cursor for c in rest) == sorted(c.cursor for c in records[cut + 1 :])
        assert [c.new_value for c in await _all(state.changes(groups=["group-3"], follow=False))] == [0, 1, 2]
        info = await state.feed_info()
        assert info["retained"] == 36 and len(info["last"].split(".")) == 5
        assert await _all(state.changes(info["last"], follow=False)) == []
        history = await state.history("group-3", "k")
        assert [c.new_value for c in history] == [2, 1, 0]
        # Reading after a history record: what followed it in its own shard (the
        # other shards start at their newest when history() was called).
        shard = Layout(redis_prefix, 4).shard
        after = next(i for i, c in enumerate(records) if (c.group, c.new_value) == ("group-3", 2))
        later = await _all(state.changes(history[0].cursor, follow=False))
        expected = [c for c in records[after + 1 :] if shard(c.group) == shard("group-3")]
        assert _seen(later) == _seen(expected) != []
        # A follower waits on every shard in one blocking read.
        stream = state.changes("now")
        for g in ("group-0", "group-5", "group-9"):

            async def write_later(g: str = g) -> None:
                await asyncio.sleep(0.05)
                await state.set(g, "k", "late")

            task = asyncio.create_task(write_later())
            change = await asyncio.wait_for(stream.__anext__(), 5)
            assert (change.group, change.new_value) == (g, "late")
            await task
        other = _adapter(redis_server, redis_prefix, shards=2)
        with pytest.raises(RedisLayoutError, match="4 shards, not 2"):
            await other.get("g", "k")
        await other.close()
    finally:
        await state.close()


# ----------------------------------------------------------- replay property


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATIONS, max_size=25), st.sampled_from([1, 3]))
def test_redis_feed_replayed_from_empty_reproduces_the_store(
    redis_server: RedisServer, ops: list[tuple[str, str, Any]], shards: int
) -> None:
    async def main() -> None:
        prefix = f"test:replay:{uuid.uuid4().hex}:"
        state = ms.RedisStateAdapter(redis_server.url, key_prefix=prefix, shards=shards)
        try:
            for op in ops:
                await _run(state, op)
            changes = await _all(state.changes(follow=False))
            assert _replay(changes) == await _snapshot(state)
            if shards == 1:
                assert [c.cursor for c in changes] == [f"r.{n}" for n in range(1, len(changes) + 1)]
        finally:
            await state.close()

    asyncio.run(main())


# --------------------------------------------------------------------- layout


async def test_the_layout_marker_is_written_on_first_use(state: ms.RedisStateAdapter, redis_prefix: str) -> None:
    await state.get("g", "k")
    assert json.loads(await state.client.get(redis_prefix + "layout")) == {"layout": 3, "shards": 1}


async def test_a_store_in_the_layout_before_the_feed_is_refused_and_left_alone(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix)
    try:
        await state.client.hset(redis_prefix + "{orders}", mapping={"b": "2", "a": '{"x":[1]}'})
        await state.client.hset(redis_prefix + "{with%7Dbrace}", "k", "true")
        before = sorted(await state.client.keys(redis_prefix + "*"))
        for attempt in (state.set("g", "k", 1), state.get("orders", "a"), state.groups()):
            with pytest.raises(RedisLayoutError, match="motia-state migrate") as caught:
                await attempt
            assert caught.value.code == "INVALID_ARGUMENT"
        assert sorted(await state.client.keys(redis_prefix + "*")) == before  # nothing written, no marker
        entries = [entry async for entry in iter_legacy_entries(state.client, redis_prefix)]
        assert sorted(entries) == [("orders", "a", {"x": [1]}), ("orders", "b", 2), ("with}brace", "k", True)]
    finally:
        await state.close()


async def test_the_old_layout_moves_in_place_and_then_opens(
    redis_server: RedisServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_adapter, "MIGRATE_STEP", 2)  # a group larger than one copy step
    old = _adapter(redis_server, redis_prefix)
    try:
        await old.client.hset(redis_prefix + "{orders}", mapping={"b": "2", "a": '{"x":[1]}', "c": "null"})
        await old.client.hset(redis_prefix + "{__motia/positions}", "t", '"r.1"')
        await old.client.hset(redis_prefix + "{with%7Dbrace}", "k", "true")
        assert await migrate_legacy_layout(old) == 5
        assert await old.get("orders", "a") == {"x": [1]} and await old.get("with}brace", "k") is True
        assert await old.internal.get("__motia/positions", "t") == "r.1"
        assert [entry async for entry in iter_legacy_entries(old.client, redis_prefix)] == []
        assert await old.feed_info() == {"first": None, "last": None, "retained": 0}  # moving is no change
        fresh = _adapter(redis_server, redis_prefix)
        assert await fresh.groups() == ["orders", "with}brace"]
        assert await fresh.get_group("orders") == [{"x": [1]}, 2, None]
        await fresh.close()
        assert await migrate_legacy_layout(old) == 0  # again: nothing left to move
    finally:
        await old.close()


async def test_a_marker_of_another_layout_is_refused(redis_server: RedisServer, redis_prefix: str) -> None:
    state = _adapter(redis_server, redis_prefix)
    try:
        await state.client.set(redis_prefix + "layout", json.dumps({"layout": 4, "shards": 1}))
        with pytest.raises(RedisLayoutError, match="motia-state migrate"):
            await state.set("g", "k", 1)
    finally:
        await state.close()


# -------------------------------------------------------------------- listing


async def _pages(state: ms.RedisStateAdapter, limit: int, **options: Any) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    after = None
    while True:
        page, after = await state.scan(after, limit=limit, **options)
        assert len(page) <= limit
        out.extend(page)
        if after is None:
            return out


@pytest.mark.parametrize("shards", [1, 4])
async def test_scan_pages_through_every_entry_in_group_then_key_order(
    redis_server: RedisServer, redis_prefix: str, shards: int
) -> None:
    state = _adapter(redis_server, redis_prefix, shards=shards)
    try:
        expected = []
        for g in ["b", "a", "ü", "a:b", "z{x}"]:
            for k in ["k2", "k10", "k1", "é"]:
                await state.set(g, k, f"{g}/{k}")
                expected.append((g, k, f"{g}/{k}"))
        await state.internal.set("__motia/hidden", "k", 1)
        expected.sort()
        for limit in (1, 3, 7, 100):
            assert await _pages(state, limit) == expected
        assert await _pages(state, 2, group="a") == [e for e in expected if e[0] == "a"]
        ends_k1 = parse_predicate({"op": "endsWith", "value": "k1"})
        assert await _pages(state, 2, where=ends_k1) == [e for e in expected if e[1] == "k1"]
        page, after = await state.scan(("a", "k2"), limit=1)  # keys in code-point order: k1 k10 k2 é
        assert page == [("a", "é", "a/é")] and after == ("a", "é")
        page, after = await state.scan(after, limit=1)
        assert page == [("a:b", "k1", "a:b/k1")] and after == ("a:b", "k1")
        with pytest.raises(ms.InvalidArgumentError, match="limit"):
            await state.scan(limit=0)
    finally:
        await state.close()


async def test_scan_skips_a_group_dropped_by_its_ttl(redis_server: RedisServer, redis_prefix: str) -> None:
    state = _adapter(redis_server, redis_prefix, ttl=0.05)
    try:
        await state.set("gone", "k", 1)
        await asyncio.sleep(0.1)
        assert await _pages(state, 10) == []
        assert await state.groups() == []
    finally:
        await state.close()


async def test_the_fallback_adapter_serves_the_feed_of_the_adapter_it_chose(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    on_redis = ms.FallbackStateAdapter(_adapter(redis_server, redis_prefix))
    in_memory = ms.FallbackStateAdapter(ms.RedisStateAdapter("redis://127.0.0.1:1/0", timeout=0.2, feed_retention=2))
    try:
        early = on_redis.changes(follow=False)  # before the first operation chose the adapter
        await on_redis.set("g", "k", 1)
        assert [c.cursor for c in await _all(early)] == ["r.1"]
        assert [c.new_value for c in await on_redis.history("g", "k")] == [1]
        for i in range(3):
            await in_memory.set("g", "k", i)
        info = await in_memory.feed_info()
        assert info["last"] == "m.3" and 2 <= info["retained"] <= 4  # the memory store's retention
    finally:
        await on_redis.close()
        await in_memory.close()


async def test_a_configuration_sets_the_feed_options(redis_server: RedisServer, redis_prefix: str) -> None:
    config = {"adapter": "redis", "url": redis_server.url, "key_prefix": redis_prefix}
    state = ms.create_state_adapter({**config, "feed_retention": 2, "feed_retention_bytes": 1 << 20, "shards": 2})
    try:
        assert isinstance(state, ms.RedisStateAdapter)
        for i in range(5):
            await state.set("g", "k", i)
        assert [c.new_value for c in await _all(state.changes(follow=False))] == [3, 4]
        assert json.loads(await state.client.get(redis_prefix + "layout"))["shards"] == 2
    finally:
        await state.close()
