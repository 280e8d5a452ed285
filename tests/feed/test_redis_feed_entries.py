"""The Redis feed's stream entries: one per write call, holding all of its records, each with its own cursor."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

import motia_state as ms
from motia_state.adapters.redis.layout import RedisLayoutError, upgrade_layout

from ..helpers import RedisServer


async def _all(stream: Any) -> list[ms.Change]:
    return [change async for change in stream]


def _adapter(server: RedisServer, prefix: str, **options: Any) -> ms.RedisStateAdapter:
    return ms.RedisStateAdapter(server.url, key_prefix=prefix, **options)


def _feed(prefix: str, shard: int = 0) -> str:
    return f"{prefix}{{s{shard}}}:feed"


def _numbers(records: list[ms.Change]) -> list[int]:
    return [int(c.cursor[2:]) for c in records]


async def test_entries_of_several_records_and_entries_field_by_field_read_alike(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix)
    try:
        await state.get("g", "k")  # the layout marker
        feed, client = _feed(redis_prefix), state.client
        fields = {"g": "g", "k": "a", "o": "set", "a": "", "b": "1", "x": "1700000000001 0"}
        await client.xadd(feed, fields, id="0-1")
        packed = ['1700000000002 2 {"step":"s","traceId":"t"}', "g"]
        packed += ["a", "increment", "1", "2", "b", "set", "", '"x"', "a", "delete", "2", ""]
        await client.xadd(feed, {"3": "\0".join(packed)}, id="0-2")
        await client.execute_command("XSETID", feed, "0-4")
        await client.xadd(feed, fields | {"k": "c", "x": "1700000000003 0"}, id="0-5")
        records = await _all(state.changes(follow=False))
        assert [(c.cursor, c.key, c.op, c.event, c.old_value, c.new_value, c.at, c.depth) for c in records] == [
            ("r.1", "a", "set", "created", None, 1, 1700000000001, 0),
            ("r.2", "a", "increment", "updated", 1, 2, 1700000000002, 2),
            ("r.3", "b", "set", "created", None, "x", 1700000000002, 2),
            ("r.4", "a", "delete", "deleted", 2, None, 1700000000002, 2),
            ("r.5", "c", "set", "created", None, 1, 1700000000003, 0),
        ]
        assert records[1].origin == {"step": "s", "traceId": "t"}
        for n in range(6):  # after any record, inside an entry too
            assert _numbers(await _all(state.changes(f"r.{n}", follow=False))) == list(range(n + 1, 6))
        assert [c.cursor for c in await state.history("g", "a")] == ["r.4", "r.2", "r.1"]
        assert [c.cursor for c in await state.history("g", "a", limit=2)] == ["r.4", "r.2"]
        assert await state.feed_info() == {"first": "r.1", "last": "r.5", "retained": 5}
    finally:
        await state.close()


async def test_an_entry_that_is_not_ours_is_corrupt_not_a_crash(redis_server: RedisServer, redis_prefix: str) -> None:
    state = _adapter(redis_server, redis_prefix)
    try:
        await state.set("g", "k", 1)
        await state.client.xadd(_feed(redis_prefix), {"3": b"x\0y\0z"}, id="0-2")
        try:
            await _all(state.changes(follow=False))
        except ms.StateError as e:
            assert e.code == "CORRUPT"
        else:
            raise AssertionError("read an entry that is not the adapter's")
    finally:
        await state.close()


async def test_a_batch_is_one_stream_entry_whose_records_keep_their_own_cursors(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix)
    try:
        await state.set("g", "first", 0)
        await state.batch("g", [{"type": "increment", "key": f"k{i}", "delta": i} for i in range(100)])
        await state.set("g", "last", 1)
        assert await state.client.xlen(_feed(redis_prefix)) == 3
        records = await _all(state.changes(follow=False))
        assert _numbers(records) == list(range(1, 103))
        assert [c.key for c in records] == ["first", *(f"k{i}" for i in range(100)), "last"]
        assert [c.new_value for c in records[1:101]] == list(range(100))
        assert await state.feed_info() == {"first": "r.1", "last": "r.102", "retained": 102}
        # Resuming after any record, the first and last of the entry included, yields exactly what follows it.
        for n in (0, 1, 2, 38, 100, 101, 102):
            assert _numbers(await _all(state.changes(f"r.{n}", follow=False))) == list(range(n + 1, 103))
        # A key filter inside the entry keeps the records' own cursors.
        picked = await _all(state.changes("r.41", keys=["k39", "k70"], follow=False))
        assert [(c.key, c.cursor) for c in picked] == [("k70", "r.72")]
    finally:
        await state.close()


async def test_a_follower_resuming_inside_an_entry_gets_its_rest_then_other_processes_writes(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix)
    other = _adapter(redis_server, redis_prefix)
    try:
        await state.transaction("g", [{"type": "set", "key": f"t{i}", "value": i} for i in range(10)])
        follower = state.changes("r.4")
        got = [await asyncio.wait_for(follower.__anext__(), 5) for _ in range(6)]
        assert [(c.key, c.cursor) for c in got] == [(f"t{i}", f"r.{i + 1}") for i in range(4, 10)]
        waiting = asyncio.ensure_future(asyncio.wait_for(_take(follower, 3), 5))
        await asyncio.sleep(0.1)  # the follower is blocked in XREAD by now
        await other.batch("h", [{"type": "set", "key": "x", "value": 1}, {"type": "push", "key": "y", "value": 2}])
        await other.set("h", "z", 3)
        assert [(c.group, c.key, c.cursor) for c in await waiting] == [
            ("h", "x", "r.11"),
            ("h", "y", "r.12"),
            ("h", "z", "r.13"),
        ]
        await follower.aclose()  # type: ignore[attr-defined]
    finally:
        await other.close()
        await state.close()


async def _take(stream: Any, n: int) -> list[ms.Change]:
    return [await stream.__anext__() for _ in range(n)]


async def test_history_inside_entries_gives_each_records_own_cursor(state_pair: Any) -> None:
    state = state_pair
    await state.batch("g", [{"type": "increment", "key": "a"}, {"type": "set", "key": "b", "value": 1}] * 3)
    await state.increment("g", "a")
    history = await state.history("g", "a")
    # A batch records each operation that wrote: "a" at records 1, 3 and 5 of its entry, then alone at 7.
    assert [(c.new_value, c.cursor) for c in history] == [(4, "r.7"), (3, "r.5"), (2, "r.3"), (1, "r.1")]
    everything = await _all(state.changes(follow=False))
    for record in history:
        after = await _all(state.changes(record.cursor, follow=False))
        assert after == [c for c in everything if _numbers([c])[0] > _numbers([record])[0]]
    assert len(await state.history("g", "a", limit=2)) == 2


@pytest.fixture
async def state_pair(redis_server: RedisServer, redis_prefix: str) -> Any:
    adapter = _adapter(redis_server, redis_prefix)
    yield adapter
    await adapter.close()


async def test_retention_counts_records_not_entries(redis_server: RedisServer, redis_prefix: str) -> None:
    for limit, size in ((10, 7), (5, 20), (64, 33), (300, 100)):
        prefix = f"{redis_prefix}{limit}:"
        state = _adapter(redis_server, prefix, feed_retention=limit)
        try:
            written = 0
            for round_ in range(12):
                await state.batch("g", [{"type": "set", "key": f"k{i}", "value": round_} for i in range(size)])
                written += size
                info = await state.feed_info()
                # At least the newest `limit` records, never twice as many.
                assert min(limit, written) <= info["retained"] < 2 * limit, (limit, size, info)
                assert info["last"] == f"r.{written}"
            records = await _all(state.changes(follow=False))
            assert _numbers(records) == list(range(written - len(records) + 1, written + 1))
            first = int(info["first"][2:])
            assert len(await _all(state.changes(f"r.{first - 1}", follow=False))) == info["retained"]
            with pytest.raises(ms.CursorExpiredError):
                await _all(state.changes(f"r.{first - 2}", follow=False))
        finally:
            await state.close()


async def test_a_transaction_larger_than_half_the_retention_still_keeps_its_records_contiguous(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix, feed_retention=4)
    try:
        await state.transaction("g", [{"type": "set", "key": f"k{i}", "value": i} for i in range(9)])
        records = await _all(state.changes(follow=False))
        assert [c.key for c in records] == [f"k{i}" for i in range(9 - len(records), 9)]
        assert 4 <= len(records) < 8 and records[-1].cursor == "r.9"
    finally:
        await state.close()


async def test_nothing_is_appended_for_calls_that_store_nothing(state_pair: Any, redis_prefix: str) -> None:
    state = state_pair
    await state.set("g", "k", 1)
    await state.compare_and_swap("g", "k", 2, 3)
    await state.pop("g", "missing")
    failed = await state.transaction(
        "g",
        [
            {"type": "set", "key": "x", "value": 1},
            {"type": "increment", "key": "k"},
            {"type": "push", "key": "k", "value": 0},
        ],
    )
    assert not failed.success and failed.code == "TYPE_MISMATCH"
    await state.batch("g", [{"type": "get", "key": "k"}, {"type": "delete", "key": "nothing"}])
    assert await state.client.xlen(_feed(redis_prefix)) == 1
    assert (await state.feed_info())["retained"] == 1


# ----------------------------------------------------------- layout 2 upgrade


async def _layout_two(state: ms.RedisStateAdapter, prefix: str) -> None:
    """A store as the previous layout wrote it: marker 2, one stream entry per record, field by field."""
    client = state.client
    await client.set(prefix + "layout", json.dumps({"layout": 2, "shards": 1}))
    await client.hset(prefix + "{s0}:g:orders", mapping={"a": "3", "b": '"x"'})
    await client.zadd(prefix + "{s0}:groups", {"orders": 0})
    for n, (key, op, old, new) in enumerate(
        [("a", "set", "", "1"), ("b", "set", "", '"x"'), ("a", "increment", "1", "3")], start=1
    ):
        fields = {"g": "orders", "k": key, "o": op, "a": old, "b": new, "x": f"{1700000000000 + n} 1"}
        await client.xadd(_feed(prefix), fields, id=f"0-{n}")


async def test_a_layout_two_store_is_refused_until_upgraded_then_keeps_its_records_and_cursors(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    state = _adapter(redis_server, redis_prefix)
    try:
        await _layout_two(state, redis_prefix)
        before = sorted(await state.client.keys(redis_prefix + "*"))
        for attempt in (state.set("orders", "c", 1), state.get("orders", "a"), state.feed_info()):
            with pytest.raises(RedisLayoutError, match=r"layout 2.*motia-state migrate") as caught:
                await attempt
            assert caught.value.code == "INVALID_ARGUMENT"
        assert sorted(await state.client.keys(redis_prefix + "*")) == before
        assert await state.client.xlen(_feed(redis_prefix)) == 3  # nothing appended

        assert await upgrade_layout(state.client, redis_prefix) is True
        assert await upgrade_layout(state.client, redis_prefix) is False  # once only
        assert json.loads(await state.client.get(redis_prefix + "layout")) == {"layout": 3, "shards": 1}
        fresh = _adapter(redis_server, redis_prefix)
        try:
            assert await fresh.get_group("orders") == [3, "x"]
            old = await _all(fresh.changes("r.1", follow=False))
            assert [(c.key, c.op, c.event, c.old_value, c.new_value, c.cursor, c.depth) for c in old] == [
                ("b", "set", "created", None, "x", "r.2", 1),
                ("a", "increment", "updated", 1, 3, "r.3", 1),
            ]
            await fresh.batch("orders", [{"type": "increment", "key": "a"}, {"type": "delete", "key": "b"}])
            assert _numbers(await _all(fresh.changes("r.2", follow=False))) == [3, 4, 5]
            assert [(c.new_value, c.cursor) for c in await fresh.history("orders", "a")] == [
                (4, "r.4"),
                (3, "r.3"),
                (1, "r.1"),
            ]
            assert await fresh.feed_info() == {"first": "r.1", "last": "r.5", "retained": 5}
        finally:
            await fresh.close()
    finally:
        await state.close()


async def test_the_next_layout_is_refused(redis_server: RedisServer, redis_prefix: str) -> None:
    state = _adapter(redis_server, redis_prefix)
    try:
        await state.client.set(redis_prefix + "layout", msgspec.json.encode({"layout": 4, "shards": 1}))
        with pytest.raises(RedisLayoutError, match="layout 4"):
            await state.set("g", "k", 1)
        assert await upgrade_layout(state.client, redis_prefix) is False
    finally:
        await state.close()


async def test_both_limits_at_once_keep_the_newest_records_contiguous(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # The byte limit trims past where the count limit would start: trimming by count then has nothing to do.
    state = _adapter(redis_server, redis_prefix, feed_retention=500, feed_retention_bytes=30_000)
    try:
        for i in range(40):
            await state.batch("g", [{"type": "set", "key": f"k{j}", "value": "x" * 200} for j in range(20)])
            await state.set("g", "small", i)
        records = await _all(state.changes(follow=False))
        assert _numbers(records) == list(range(841 - len(records), 841))
        assert 0 < len(records) < 500
        assert (await state.feed_info())["retained"] == len(records)
        assert [c.new_value for c in await state.history("g", "small", limit=3)] == [39, 38, 37]
    finally:
        await state.close()


# ----------------------------------------------------------- reading while the feed moves


async def test_reading_from_the_oldest_record_while_trimming_moves_it_starts_at_the_new_oldest(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # after=None names no position of the reader's own: if trimming moves the oldest retained record
    # between the shard's bounds being read and its first entries, the reader starts from the new oldest.
    state = _adapter(redis_server, redis_prefix, feed_retention=4)
    other = _adapter(redis_server, redis_prefix, feed_retention=4)
    try:
        for i in range(6):
            await state.set("g", "k", i)
        read = state._read_shards

        async def trimmed_first(*args: Any) -> Any:
            state._read_shards = read  # type: ignore[method-assign]
            for i in range(10):
                await other.set("g", "k", 100 + i)
            return await read(*args)

        state._read_shards = trimmed_first  # type: ignore[method-assign]
        records = await _all(state.changes(None, follow=False))
        assert records[-1].cursor == "r.16" and 4 <= len(records) < 8
        assert _numbers(records) == list(range(17 - len(records), 17))
    finally:
        await other.close()
        await state.close()


async def test_a_stream_emptied_by_hand_keeps_its_numbering_for_readers(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # XTRIM to nothing keeps the stream's last ID (the next entry continues from it): "now", None
    # and a cursor at the end resume there; a cursor before it is expired, not silently resumed.
    state = _adapter(redis_server, redis_prefix)
    try:
        for i in range(5):
            await state.set("g", "k", i)
        await state.client.xtrim(_feed(redis_prefix), maxlen=0)
        assert await state.client.xlen(_feed(redis_prefix)) == 0
        assert (await state.feed_info())["retained"] == 0
        with pytest.raises(ms.CursorExpiredError):
            await _all(state.changes("r.3", follow=False))
        now, oldest, at_end = state.changes("now"), state.changes(None), state.changes("r.5")
        await state.set("g", "k", 5)
        for stream in (now, oldest, at_end):
            assert (await asyncio.wait_for(stream.__anext__(), 5)).cursor == "r.6"
            await stream.aclose()  # type: ignore[attr-defined]
        with pytest.raises(ms.CursorExpiredError):
            await _all(state.changes("r.3", follow=False))
        with pytest.raises(ms.CursorExpiredError):
            await _all(state.changes("r.7", follow=False))
    finally:
        await state.close()


async def test_a_batch_larger_than_the_byte_limit_keeps_the_stream_within_twice_it(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # One call's records are split into entries of at most half the byte limit, so trimming whole
    # entries can keep the stream within the limit (a single entry of the whole batch could not).
    limit = 100_000
    state = _adapter(redis_server, redis_prefix, feed_retention_bytes=limit)
    try:
        for round_ in range(3):
            await state.batch("g", [{"type": "set", "key": f"k{i}", "value": f"{round_}" * 5000} for i in range(200)])
            assert await state.client.memory_usage(_feed(redis_prefix), samples=0) <= 2 * limit
            records = await _all(state.changes(follow=False))
            assert records and _numbers(records) == list(range(200 * round_ + 201 - len(records), 200 * round_ + 201))
            assert records[-1].key == "k199" and records[-1].new_value == f"{round_}" * 5000
    finally:
        await state.close()
