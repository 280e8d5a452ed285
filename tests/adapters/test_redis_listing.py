"""The Redis listing (``scan``): filters evaluated on the server, paging, bounded steps.

Every test runs on a single server (one shard and four) and on a Redis
Cluster (sixteen shards over three nodes), and compares with the memory
adapter, whose ``scan`` evaluates the predicate in Python.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis

import motia_state as ms
from motia_state.adapters.redis import adapter as redis_adapter
from motia_state.predicates import parse_predicate

from ..helpers import RedisClusterServers, RedisServer

Entry = tuple[str, str, Any]


@pytest.fixture(params=["1 shard", "4 shards", "cluster"])
async def store(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[ms.RedisStateAdapter]:
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        adapter = ms.RedisStateAdapter(f"redis://127.0.0.1:{cluster.port}/0", cluster=True, key_prefix=redis_prefix)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        adapter = ms.RedisStateAdapter(server.url, key_prefix=redis_prefix, shards=int(request.param.split()[0]))
    try:
        yield adapter
    finally:
        await adapter.close()


def _ports(request: pytest.FixtureRequest) -> list[int]:
    """The ports of the servers behind the test's store (every node of a cluster)."""
    if request.node.callspec.params["store"] == "cluster":
        return [node.port for node in request.getfixturevalue("redis_cluster").nodes]
    return [request.getfixturevalue("redis_server").port]


def _bytes_sent(ports: list[int]) -> int:
    """How many bytes the servers have sent to their clients, all told (INFO stats)."""
    total = 0
    for port in ports:
        with redis.Redis(port=port) as client:
            total += int(client.info("stats")["total_net_output_bytes"])
    return total


async def _pages(adapter: ms.StateAdapter, limit: int, **options: Any) -> list[Entry]:
    out: list[Entry] = []
    after = None
    while True:
        page, after = await adapter.scan(after, limit=limit, **options)
        assert len(page) <= limit
        out.extend(page)
        if after is None:
            return out


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    2.5,
    10**30,
    -(10**30),
    1e300,
    "",
    "abc",
    "ABC",
    "é",
    "😀 smile",
    "a/b~c",
    [],
    [1, "x", None],
    [{"n": 3}],
    {},
    {"n": 1, "tag": "red"},
    {"n": 12, "tag": "blue", "list": [1, 2, 3]},
    {"n": -3.25, "tag": None, "a/b": {"~": 5}},
    {"n": "12", "nested": {"deep": [{"x": "y"}]}},
]

PREDICATES: list[dict[str, Any]] = [
    {"op": "gte", "value": 0, "path": "/n"},
    {"op": "lt", "value": 10**31},
    {"op": "gt", "value": 2},
    {"op": "lte", "value": "abc"},
    {"op": "gt", "value": "Z"},
    {"op": "eq", "value": {"n": 1, "tag": "red"}},
    {"op": "eq", "value": 7.0},
    {"op": "neq", "value": None, "path": "/tag"},
    {"op": "contains", "value": "b"},
    {"op": "contains", "value": 2, "path": "/list"},
    {"op": "notContains", "value": "x"},
    {"op": "startsWith", "value": "a"},
    {"op": "endsWith", "value": "smile"},
    {"op": "isNull", "path": "/tag"},
    {"op": "isNotNull"},
    {"op": "exists", "path": "/a~1b/~0"},
    {"op": "missing", "path": "/n"},
    {"op": "type", "value": "array"},
    {"op": "eq", "value": "y", "path": "/nested/deep/0/x"},
    {"op": "eq", "value": 3, "path": "/0/n"},
    {"all": [{"op": "type", "value": "object"}, {"not": {"op": "missing", "path": "/tag"}}]},
    {"any": [{"op": "eq", "value": True}, {"op": "type", "value": "string"}, {"all": []}]},
    {"any": []},
    {"not": {"op": "type", "value": "number"}},
]


async def test_a_filtered_listing_equals_the_python_evaluation(store: ms.RedisStateAdapter) -> None:
    reference = ms.MemoryStateAdapter()
    for i, value in enumerate(VALUES):
        for adapter in (store, reference):
            # Several groups of a few keys each, keys in an order that is not insertion order.
            await adapter.set(f"g{i % 5}", f"k{len(VALUES) - i:02d}", value)
    for raw in PREDICATES:
        where = parse_predicate(raw)
        expected = await _pages(reference, 1000, where=where)
        for limit in (1, 3, 100):
            assert await _pages(store, limit, where=where) == expected, (raw, limit)
        assert await _pages(store, 2, where=where, group="g3") == [e for e in expected if e[0] == "g3"], raw


async def test_values_that_do_not_match_never_leave_redis(
    request: pytest.FixtureRequest, store: ms.RedisStateAdapter
) -> None:
    # 40 values of 100 kB each: 4 MB that a client-side filter would have to read.
    big = {"n": 1, "blob": "x" * 100_000}
    for g in range(8):
        await store.batch(f"group-{g}", [{"type": "set", "key": f"k{k}", "value": big} for k in range(5)])
    await store.set("group-9", "small", {"n": 2})
    ports = _ports(request)
    where = parse_predicate({"op": "eq", "value": 2, "path": "/n"})
    before = _bytes_sent(ports)
    assert await _pages(store, 100, where=where) == [("group-9", "small", {"n": 2})]
    sent = _bytes_sent(ports) - before
    assert sent < 50_000, f"the servers sent {sent} bytes for a page of one small entry"
    # Without the filter the same listing carries the values: the measure sees them.
    before = _bytes_sent(ports)
    assert len(await _pages(store, 100)) == 41
    assert _bytes_sent(ports) - before > 4_000_000


async def test_each_call_of_the_program_examines_a_bounded_chunk(
    store: ms.RedisStateAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_adapter, "SCAN_CALL_BUDGET", 7)
    monkeypatch.setattr(redis_adapter, "SCAN_BUDGET", 30)
    await store.batch("one", [{"type": "set", "key": f"k{k:03d}", "value": k} for k in range(100)])
    await store.batch("two", [{"type": "set", "key": f"k{k:03d}", "value": k} for k in range(5)])
    seen: list[int] = []
    program = store._program

    async def counted(keys: tuple[bytes, ...], header: bytes, *args: Any) -> Any:
        reply = await program(keys, header, *args)
        if header in (b"page", b"walk"):
            seen.append(_examined(header, reply))
        return reply

    monkeypatch.setattr(store, "_program", counted)
    nothing = parse_predicate({"op": "lt", "value": 0})
    page, after = await store.scan(limit=10, where=nothing)
    # A filter that matches nothing: the page comes back empty once its budget is spent, with
    # the position reached, in steps of at most 7 entries each.
    assert page == [] and after == ("one", "k029")
    assert sum(seen) == 30 and max(seen) <= 7
    assert await _pages(store, 10, where=nothing) == []
    fives = parse_predicate({"op": "eq", "value": 4})
    assert await _pages(store, 1, where=fives) == [("one", "k004", 4), ("two", "k004", 4)]
    every = await _pages(store, 9)
    assert every == [("one", f"k{k:03d}", k) for k in range(100)] + [("two", f"k{k:03d}", k) for k in range(5)]


async def test_a_budget_ending_one_short_at_the_end_of_a_group_still_moves_on(
    store: ms.RedisStateAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Steps of 3 entries over groups of 3: after two steps the page's budget
    # has one entry left, and the position is the last key of a group. A step
    # allowed one visit spends it on that group, which has nothing after that
    # key: the listing must still end (a short page to go on from), not ask
    # for the same step again and again.
    monkeypatch.setattr(redis_adapter, "SCAN_CALL_BUDGET", 3)
    monkeypatch.setattr(redis_adapter, "SCAN_BUDGET", 7)
    for g in ("a", "b", "c", "d"):
        await store.batch(g, [{"type": "set", "key": f"k{k}", "value": k} for k in range(3)])
    nothing = parse_predicate({"op": "lt", "value": 0})
    with anyio.fail_after(10):
        page, after = await store.scan(limit=10, where=nothing)
        assert page == [] and after is not None
        assert await _pages(store, 10, where=nothing) == []
        assert len(await _pages(store, 2)) == 12


def _examined(header: bytes, reply: list[Any]) -> int:
    """How many entries one reply of a listing step says it examined, over its groups."""
    numbers = reply[0].split()
    if header == b"walk":  # led by the end flag, and five numbers per group
        return sum(int(seen) for seen in numbers[2::5])
    return sum(int(seen) for seen in numbers[1::4])


async def test_a_listing_of_one_group_reads_no_other(
    store: ms.RedisStateAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    for g in ("a", "b", "c"):
        await store.set(g, "k", g)
    read: list[bytes] = []
    program = store._program

    async def recorded(keys: tuple[bytes, ...], header: bytes, *args: Any) -> Any:
        if header == b"page":
            read.extend(keys)
        return await program(keys, header, *args)

    monkeypatch.setattr(store, "_program", recorded)
    assert await _pages(store, 10, group="b") == [("b", "k", "b")]
    assert read == [(await store._layout()).hash_key("b").encode()]


@pytest.mark.parametrize(
    "keys",
    [
        # Long shared prefixes, a key that is the shared prefix itself, lengths around six bytes.
        ["user:" + f"{i:0{w}d}" for i in range(0, 400, 7) for w in (3, 6, 9)] + ["user:", "user:0", "v", "u"],
        # Random keys over a small alphabet, multi-byte characters and all.
        ["".join(random.Random(n).choices("ab\x7fé😀~0", k=random.Random(-n).randint(1, 12))) for n in range(300)],
    ],
    ids=["prefixes", "random"],
)
async def test_keys_come_in_code_point_order_from_any_position(
    store: ms.RedisStateAdapter, monkeypatch: pytest.MonkeyPatch, keys: list[str]
) -> None:
    keys = sorted(set(keys))
    for start in range(0, len(keys), 100):
        await store.batch("g", [{"type": "set", "key": k, "value": i} for i, k in enumerate(keys[start : start + 100])])
    # Code-point order is UTF-8 byte order, the order Lua sorts by.
    assert keys == sorted(keys, key=lambda k: k.encode())
    expected = [("g", k) for k in keys]
    for limit in (1, 7, 50, 1000):
        assert [(g, k) for g, k, _ in await _pages(store, limit)] == expected, limit
    # From positions that are no key, inside and around the shared prefix.
    for after in ("user:00", "user:0000", "user:", "t", "é", "a~", "zzz"):
        page, _ = await store.scan(("g", after), limit=3)
        assert [k for _, k, _ in page] == [k for k in keys if k.encode() > after.encode()][:3], after
    # In steps of a few entries each, the order holds across steps too.
    monkeypatch.setattr(redis_adapter, "SCAN_CALL_BUDGET", 5)
    everything = parse_predicate({"op": "type", "value": "number"})
    assert [(g, k) for g, k, _ in await _pages(store, 13, where=everything)] == expected
