"""The Redis feed's stream entries: one per write call, holding all of its records, each with its own cursor."""

from __future__ import annotations

from typing import Any

import msgspec

import motia_state as ms

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
        await client.xadd(feed, {"3": msgspec.msgpack.encode(packed)}, id="0-2")
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
        await state.client.xadd(_feed(redis_prefix), {"3": b"\x93\xa1x\xa1y\xa1z"}, id="0-2")
        try:
            await _all(state.changes(follow=False))
        except ms.StateError as e:
            assert e.code == "CORRUPT"
        else:
            raise AssertionError("read an entry that is not the adapter's")
    finally:
        await state.close()
