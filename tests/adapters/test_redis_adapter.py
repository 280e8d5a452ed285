"""The Redis adapter against a real redis-server (started by the fixtures).

The shared vectors run in test_vectors.py; these tests pin what only Redis
has: processes racing through one server, TTL, outages and recovery, the
cluster-ready key layout, the exact bytes stored, and the factory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

import motia_state as ms
from motia_state.adapters.redis.layout import Layout, escape_group, unescape_group
from motia_state.adapters.redis.program import FUNCTION

from ..conformance import adapter_call, limits_kwargs, load_cases, redis_params, run_case
from ..helpers import RedisServer, finish, free_port, go, start_child

CASES = load_cases()


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    """The cluster slot of ``key``, hash tags included (as CLUSTER KEYSLOT computes it)."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end != -1 and end != start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % 16384


@pytest.fixture
async def adapter(redis_server: RedisServer, redis_prefix: str) -> Any:
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix)
    yield a
    await a.close()


# ----------------------------------------------------------------- layout


def test_key_slot_matches_redis_cluster_examples() -> None:
    assert key_slot("foo") == 12182
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers") == key_slot("user1000")


@pytest.mark.parametrize("group", ["orders", "a:b", "with}brace", "{tag}", "%7D", "per%cent", "ünï", "*?[x]"])
def test_a_groups_hash_shares_its_shards_slot_and_names_the_whole_escaped_group(group: str, redis_prefix: str) -> None:
    a = ms.RedisStateAdapter("redis://127.0.0.1:1/0", key_prefix=redis_prefix, shards=16)
    layout = Layout(redis_prefix, 16)
    key = a.hash_key(group)
    shard = layout.shard(group)
    assert key == f"{redis_prefix}{{s{shard}}}:g:{escape_group(group)}"
    assert unescape_group(key.split("}:g:", 1)[1]) == group, "the whole group follows the tag, nothing cut at a brace"
    # The hash, its shard's feed and its shard's index: one slot, so one script may write all three.
    assert key_slot(key) == key_slot(layout.feeds[shard].decode()) == key_slot(layout.indexes[shard].decode())
    assert a.hash_key(group + "x") != key


def test_the_cluster_shards_spread_over_three_primaries() -> None:
    layout = Layout("motia:state:", 16)
    slots = [key_slot(feed.decode()) for feed in layout.feeds]
    assert len(set(slots)) == 16
    assert {0 if s < 5461 else 1 if s < 10923 else 2 for s in slots} == {0, 1, 2}


async def test_entries_are_stored_as_exact_json_text_in_the_groups_hash(
    adapter: ms.RedisStateAdapter,
) -> None:
    await adapter.increment("g", "big", 2**70)
    await adapter.increment("g", "big", 1)
    await adapter.increment("g", "f", 0.1)
    await adapter.increment("g", "f", 0.2)
    await adapter.increment("g", "whole", 1.5)
    await adapter.increment("g", "whole", 0.5)
    await adapter.set("g", "empty", [])
    await adapter.push("g", "list", {"a": []}, "x,]")
    raw = await adapter.client.hgetall(adapter.hash_key("g"))
    assert raw[b"big"] == b"1180591620717411303425"
    assert raw[b"f"] == b"0.30000000000000004"
    assert raw[b"whole"] == b"2.0"
    assert raw[b"empty"] == b"[]"
    assert raw[b"list"] == b'[{"a":[]},"x,]"]'
    assert await adapter.get("g", "whole") == 2.0 and type(await adapter.get("g", "whole")) is float


async def test_prefixes_keep_applications_apart(redis_server: RedisServer, redis_prefix: str) -> None:
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix + "a:")
    b = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix + "b:")
    await a.set("g", "k", 1)
    assert await b.groups() == [] and await b.get("g", "k") is None
    assert await a.groups() == ["g"]
    await a.close()
    await b.close()


async def test_groups_come_from_the_group_index_never_keys_nor_scan(
    adapter: ms.RedisStateAdapter, monkeypatch: Any
) -> None:
    names = ["with}brace", "{tag}", "a*b", "per%cent"] + [f"g{i}" for i in range(300)]
    for name in names:
        await adapter.set(name, "k", 1)

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("KEYS blocks Redis and SCAN walks the whole keyspace; groups() reads the index")

    monkeypatch.setattr(adapter.client, "keys", refused)
    monkeypatch.setattr(adapter.client, "scan", refused)
    monkeypatch.setattr(adapter.client, "scan_iter", refused)
    await adapter.client.set(adapter.key_prefix + "{not-a-group}", "a string, not a hash")
    assert await adapter.groups() == sorted(names)
    await adapter.clear("with}brace")
    await adapter.delete("a*b", "k")  # its last entry: the group leaves the index
    assert await adapter.groups() == sorted(set(names) - {"with}brace", "a*b"})


# --------------------------------------------------------------- races


def test_two_processes_racing_on_one_key_get_exactly_1_to_n(redis_server: RedisServer, redis_prefix: str) -> None:
    config = {"adapter": "redis", "url": redis_server.url, "key_prefix": redis_prefix}
    n = 400
    procs = [start_child(config, "race", n) for _ in range(2)]
    go(*procs)
    values = sorted(v for p in procs for v in finish(p))
    assert values == list(range(1, 2 * n + 1))


def test_a_transaction_races_with_single_operations(redis_server: RedisServer, redis_prefix: str) -> None:
    config = {"adapter": "redis", "url": redis_server.url, "key_prefix": redis_prefix}
    n = 300
    procs = [start_child(config, "txn", n), start_child(config, "race", n), start_child(config, "txn", n)]
    go(*procs)
    values = sorted(v for p in procs for v in finish(p))
    assert values == list(range(1, 3 * n + 1))

    async def check() -> None:
        a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix)
        assert await a.get("g", "n") == 3 * n
        assert await a.get("g", "t") == 2 * n
        await a.close()

    anyio.run(check)


async def test_transactions_with_update_functions_commit_only_if_nothing_moved(
    adapter: ms.RedisStateAdapter,
) -> None:
    async def one(i: int) -> None:
        ops = [
            {"type": "update", "key": "n", "updateFn": lambda v: (v or 0) + 1},
            {"type": "push", "key": "log", "value": i},
        ]
        result = await adapter.transaction("g", ops)
        assert result.success, result

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
    assert await adapter.get("g", "n") == 50
    assert sorted(await adapter.get("g", "log")) == list(range(50))


# ------------------------------------------------------------------- TTL


async def test_a_group_expires_after_ttl_without_writes(redis_server: RedisServer, redis_prefix: str) -> None:
    # A 2 s TTL for writes every 0.25 s: "kept" outlives a loaded machine's
    # pauses between them.
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, ttl=2.0)
    await a.set("short", "k", 1)
    await a.set("kept", "k", 1)
    pttl = await a.client.pttl(a.hash_key("short"))
    assert 0 < pttl <= 2000
    started = anyio.current_time()
    while anyio.current_time() - started < 2.5:  # writes refresh the TTL; reads do not
        await anyio.sleep(0.25)
        await a.increment("kept", "n")
        await a.get("short", "k")  # a read, which must not refresh the TTL
    assert await a.get("kept", "k") == 1, "written every 0.25 s: alive after 2.5 s"
    assert await a.get("short", "k") is None, "no write for 2.5 s with a 2 s TTL: gone"
    await anyio.sleep(2.2)
    assert await a.groups() == []
    await a.close()


async def test_without_ttl_groups_do_not_expire(adapter: ms.RedisStateAdapter) -> None:
    await adapter.set("g", "k", 1)
    assert await adapter.client.pttl(adapter.hash_key("g")) == -1


# -------------------------------------------------------------- failures


async def test_redis_down_is_unavailable_quickly_and_recovery_is_automatic(tmp_path: Path) -> None:
    server = RedisServer(str(tmp_path), appendfsync="always").start()
    try:
        a = ms.RedisStateAdapter(server.url, timeout=1.0)
        acked = 0
        for _ in range(200):
            acked = await a.increment("g", "n")
        server.stop(kill=True)  # SIGKILL: no chance to save anything more
        started = time.monotonic()
        with pytest.raises(ms.UnavailableError) as info:
            await a.increment("g", "n")
        assert info.value.code == "UNAVAILABLE"
        assert time.monotonic() - started < 5, "an outage must fail fast, not hang"
        server.start()  # same port, same directory: the AOF is replayed
        for _ in range(50):
            try:
                value = await a.get("g", "n")
                break
            except ms.UnavailableError:
                await anyio.sleep(0.1)
        assert value == acked, "appendfsync always: every acknowledged increment survived"
        assert await a.increment("g", "n") == acked + 1
        await a.close()
    finally:
        server.stop()


async def test_an_unreachable_redis_is_an_error_not_a_silent_fallback() -> None:
    a = ms.create_state_adapter(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(ms.UnavailableError):
        await a.get("g", "k")
    assert time.monotonic() - started < 5
    await a.close()


async def test_fallback_memory_is_explicit_and_warns(caplog: Any) -> None:
    a = ms.create_state_adapter({"adapter": "redis", "url": f"redis://127.0.0.1:{free_port()}/0", "fallback": "memory"})
    assert isinstance(a, ms.FallbackStateAdapter)
    manager = ms.StateManager(a)
    events: list[Any] = []
    manager.on_change(events.append)
    with caplog.at_level(logging.WARNING):
        assert await manager.increment("g", "n") == 1
    assert isinstance(a.active, ms.MemoryStateAdapter)
    assert any("NOT shared" in r.getMessage() for r in caplog.records)
    assert [e.new_value for e in events] == [1]
    await manager.close()


async def test_fallback_uses_redis_when_it_answers(redis_server: RedisServer, redis_prefix: str) -> None:
    a = ms.create_state_adapter(
        {"adapter": "redis", "url": redis_server.url, "key_prefix": redis_prefix, "fallback": "memory"}
    )
    assert await a.increment("g", "n") == 1
    assert isinstance(a, ms.FallbackStateAdapter) and isinstance(a.active, ms.RedisStateAdapter)
    # The runtime's handle goes to the chosen adapter's.
    assert await a.internal.set("__motia/x", "k", 1) == 1
    assert await a.active.internal.get("__motia/x", "k") == 1
    assert (await a.internal.transaction("__motia/x", [{"type": "get", "key": "k"}])).results == [1]
    assert await a.groups() == ["g"]
    await a.close()


async def test_a_closed_adapter_refuses_operations(redis_server: RedisServer, redis_prefix: str) -> None:
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix)
    await a.close()
    with pytest.raises(ms.UnavailableError, match="closed"):
        await a.get("g", "k")


# ------------------------------------------------------------------ factory


async def test_factory_builds_redis_adapters(redis_server: RedisServer, redis_prefix: str) -> None:
    a = ms.create_state_adapter(redis_server.url)
    assert isinstance(a, ms.RedisStateAdapter) and a.key_prefix == "motia:state:" and a.ttl is None
    await a.close()
    b = ms.create_state_adapter(
        {"adapter": "redis", "url": redis_server.url, "key_prefix": redis_prefix, "ttl": 30, "timeout": 2}
    )
    assert isinstance(b, ms.RedisStateAdapter) and b.key_prefix == redis_prefix and b.ttl == 30
    await b.set("g", "k", 1)
    assert 0 < await b.client.pttl(b.hash_key("g")) <= 30_000
    await b.close()
    c = ms.create_state_adapter({"adapter": "redis", "url": redis_server.url, "auto_pipeline": False})
    assert isinstance(c, ms.RedisStateAdapter) and c._pipeline is None
    await c.close()
    d = ms.create_state_adapter({"adapter": "redis", "url": redis_server.url})
    assert isinstance(d, ms.RedisStateAdapter) and d._pipeline is not None
    await d.close()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"adapter": "redis", "url": "http://x"}, "url"),
        ({"adapter": "redis", "ttl": -1}, "ttl"),
        ({"adapter": "redis", "ttl": "1h"}, "ttl"),
        ({"adapter": "redis", "key_prefix": "a{b}:"}, "key_prefix"),
        ({"adapter": "redis", "timeout": 0}, "timeout"),
        ({"adapter": "redis", "fallback": "file"}, "fallback"),
        ({"adapter": "redis", "auto_pipeline": "yes"}, "auto_pipeline"),
        ({"adapter": "redis", "hosts": []}, "hosts"),
        ({"adapter": "redis", "ttl": math.inf}, "ttl"),
        ({"adapter": "redis", "ttl": math.nan}, "ttl"),
        ({"adapter": "redis", "ttl": -0.5}, "ttl"),
        ({"adapter": "redis", "ttl": 0}, "ttl"),
        ({"adapter": "redis", "ttl": True}, "ttl"),
        ({"adapter": "redis", "ttl": 10**400}, "ttl"),
        ({"adapter": "redis", "timeout": math.nan}, "timeout"),
        ({"adapter": "redis", "timeout": math.inf}, "timeout"),
        ({"adapter": "redis", "timeout": -1}, "timeout"),
        ({"adapter": "redis", "url": "redis://127.0.0.1:6379/abc"}, "url"),
        ({"adapter": "redis", "url": "redis://127.0.0.1:6379/-1"}, "url"),
        ({"adapter": "redis", "url": "redis://127.0.0.1:6379/1/2"}, "url"),
        ({"adapter": "redis", "url": "redis://127.0.0.1:6379/0?db=abc"}, "url"),
        ("redis://127.0.0.1:6379/abc", "url"),
    ],
)
def test_bad_redis_configurations_name_the_field(config: Any, field: str) -> None:
    with pytest.raises(ms.InvalidArgumentError) as info:
        ms.create_state_adapter(config)
    assert str(info.value).startswith(field + ":"), str(info.value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "redis://h:1/15", "unix:///s"])
def test_good_redis_urls_are_accepted(url: str) -> None:
    assert ms.RedisStateAdapter(url).url == url


@pytest.mark.parametrize(("option", "value"), [("ttl", math.inf), ("ttl", math.nan), ("timeout", math.nan)])
def test_bad_seconds_are_refused_by_the_constructor(option: str, value: float) -> None:
    with pytest.raises(ms.InvalidArgumentError, match=f"^{option}: expected a positive, finite number"):
        ms.RedisStateAdapter(**{option: value})


def test_under_trio_the_adapter_says_it_needs_asyncio(redis_server: RedisServer, redis_prefix: str) -> None:
    import trio

    async def main() -> None:
        a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix)
        for call in (a.get("g", "k"), a.set("g", "k", 1), a.groups(), a.transaction("g", []), a.ping()):
            with pytest.raises(ms.InvalidArgumentError, match="runs on asyncio"):
                await call

    trio.run(main)


def test_importing_the_package_does_not_import_redis_py() -> None:
    import subprocess

    code = (
        "import sys, motia_state, motia_state.adapters.redis; "
        "ms = motia_state.create_state_adapter('memory:'); "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_without_redis_py_the_error_names_the_extra(monkeypatch: Any) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ms.StateError, match=r"motia-state\[redis\]"):
        ms.RedisStateAdapter()


# ------------------------------------------------ functions and scripts


async def test_a_flushed_function_library_is_loaded_again(adapter: ms.RedisStateAdapter) -> None:
    assert adapter._program.functions, "Redis 7 serves the rules as a function library"
    assert await adapter.increment("g", "n") == 1
    await adapter.client.function_flush()
    assert await adapter.increment("g", "n") == 2
    await adapter.client.function_flush()
    result = await adapter.batch("g", [{"type": "increment", "key": "n"}, {"type": "push", "key": "l", "value": 1}])
    assert [item.value for item in result.results] == [3, [1]]


async def test_the_script_path_gives_the_same_results_and_reloads_on_noscript(
    adapter: ms.RedisStateAdapter,
) -> None:
    adapter._program.functions = False  # as with Redis 6 or a cluster client
    assert await adapter.increment("g", "n", 2**70) == 2**70
    await adapter.client.script_flush()
    assert await adapter.increment("g", "n") == 2**70 + 1
    await adapter.client.script_flush()
    result = await adapter.batch("g", [{"id": "a", "type": "get", "key": "n"}, {"type": "pop", "key": "n"}])
    assert result.results[0].value == 2**70 + 1 and result.results[1].code == "TYPE_MISMATCH"
    tx = await adapter.transaction(
        "g", [{"type": "set", "key": "x", "value": []}, {"type": "push", "key": "x", "items": []}]
    )
    assert tx.success and tx.results == [[], []]


@pytest.mark.parametrize(("name", "case"), redis_params(CASES[::5]))
async def test_vectors_through_the_script_path(
    name: str, case: dict[str, Any], redis_server: RedisServer, redis_prefix: str
) -> None:
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, limits=ms.Limits(**limits_kwargs(case)))
    a._program.functions = False
    try:
        await run_case(case, adapter_call(ms.StateManager(a)), None)
    finally:
        await a.close()


def test_cli_runs_a_step_on_redis(redis_server: RedisServer, redis_prefix: str, tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    step = tmp_path / "count.step.py"
    step.write_text("async def handler(data, ctx):\n    return await ctx.state.increment('cli', 'n')\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    outs = []
    for _ in range(2):  # two separate runtimes, one shared state
        proc = subprocess.run(
            [sys.executable, "-m", "motia_state.cli", "run", str(step), "--state", redis_server.url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout))
    assert outs[1] == outs[0] + 1


@pytest.mark.parametrize("with_update", [False, True])
async def test_a_long_batch_is_one_program_call_and_keeps_every_result_in_order(
    adapter: ms.RedisStateAdapter, redis_server: RedisServer, with_update: bool
) -> None:
    from redis.asyncio import Redis

    n, bad = 600, 305
    ops: list[dict[str, Any]] = [{"id": i, "type": "increment", "key": "n"} for i in range(n)]
    ops[bad] = {"id": "bad", "type": "pop", "key": "n"}  # TYPE_MISMATCH, alone
    if with_update:
        ops[bad + 1] = {"id": "u", "type": "update", "key": "n", "updateFn": lambda v: v * 1000}
    stats = Redis(port=redis_server.port)
    await adapter.increment("g", "warm")  # loads the function library, outside the count
    try:
        await stats.config_resetstat()
        result = await adapter.batch("g", ops)
        calls = await stats.info("commandstats")
    finally:
        await stats.aclose()
    values = [(r.id, r.value, r.code) for r in result.results]
    assert values[:bad] == [(i, i + 1, None) for i in range(bad)]
    assert values[bad] == ("bad", None, "TYPE_MISMATCH")
    if with_update:
        assert values[bad + 1] == ("u", bad * 1000, None)
        assert values[-1] == (n - 1, bad * 1000 + n - bad - 2, None)
    else:
        assert values[-1] == (n - 1, n - 1, None)
    assert await adapter.get("g", "n") == values[-1][1]
    # Without update records the batch runs on the server; with one, it is
    # computed here on what one HMGET read and committed by one call.
    script_calls = sum(v["calls"] for k, v in calls.items() if k in ("cmdstat_fcall", "cmdstat_evalsha"))
    assert script_calls == 1
    assert calls.get("cmdstat_hmget", {"calls": 0})["calls"] == (1 if with_update else 0)


# ------------------------------------------------- integers and damaged texts


@pytest.mark.parametrize("sign", [1, -1])
async def test_an_integer_result_past_the_limit_counts_its_sign_and_is_never_stored(
    adapter: ms.RedisStateAdapter, sign: int
) -> None:
    from motia_state.values import MAX_INT_DIGITS

    # The longest integer text that reads back: MAX_INT_DIGITS characters, sign included.
    longest = sign * (10 ** (MAX_INT_DIGITS - (1 if sign < 0 else 0)) - 1)
    assert len(str(longest)) == MAX_INT_DIGITS
    await adapter.set("g", "n", longest - sign)
    assert await adapter.increment("g", "n", sign) == longest
    with pytest.raises(ms.LimitExceededError):
        await adapter.increment("g", "n", sign)
    tx = await adapter.transaction("g", [{"type": "increment", "key": "n", "delta": sign}])
    assert tx.code == "LIMIT_EXCEEDED"
    assert (await adapter.batch("g", [{"type": "decrement", "key": "n", "delta": -sign}])).results[0].code == (
        "LIMIT_EXCEEDED"
    )
    assert await adapter.get("g", "n") == longest
    assert await adapter.get_group("g") == [longest]


def test_the_lua_program_has_a_rule_for_every_operation_type() -> None:
    import re

    from motia_state.adapters.redis.program import SOURCE
    from motia_state.records import OPERATION_TYPES

    rules = set(re.findall(r"^(?:function )?apply\.(\w+)", SOURCE, re.MULTILINE))
    assert rules == set(OPERATION_TYPES)


def test_the_lua_program_knows_the_integer_limit() -> None:
    from motia_state.adapters.redis.program import SOURCE
    from motia_state.values import MAX_INT_DIGITS

    assert f"if #new > {MAX_INT_DIGITS} then" in SOURCE


async def test_a_stored_text_that_cannot_be_read_is_a_state_error_on_every_path(
    adapter: ms.RedisStateAdapter,
) -> None:
    # Written by something other than this adapter: one character too long to read back.
    await adapter.client.hset(adapter.hash_key("g"), "bad", "-" + "9" * 4300)
    await adapter.set("g", "ok", 1)
    unsafe: list[Callable[[], Awaitable[Any]]] = [
        lambda: adapter.get("g", "bad"),
        lambda: adapter.get_group("g"),
        lambda: adapter.update("g", "bad", lambda v: 1),
        lambda: adapter.transaction("g", [{"type": "get", "key": "bad"}]),
        lambda: adapter.transaction(
            "g", [{"type": "get", "key": "bad"}, {"type": "update", "key": "x", "updateFn": len}]
        ),
        lambda: adapter.delete("g", "bad"),
    ]
    for n, call in enumerate(unsafe):
        with pytest.raises(ms.StateError) as info:
            await call()
        assert info.value.code == "CORRUPT", (n, info.value)
        assert "cannot be read" in info.value.message, n
    await adapter.client.hset(adapter.hash_key("g"), "bad", "-" + "9" * 4300)
    batch = await adapter.batch("g", [{"type": "get", "key": "bad"}, {"type": "increment", "key": "ok"}])
    assert batch.results[0].code == "CORRUPT" and batch.results[1].value == 2


# ------------------------------------------------------------ predicates (Lua)

_ABSENT = object()

# (stored value or _ABSENT, normalized predicate, holds): the table of the contract.
PREDICATE_CASES: list[tuple[Any, dict[str, Any], bool]] = [
    (1, {"op": "eq", "value": 1.0, "path": ""}, True),
    (True, {"op": "eq", "value": 1, "path": ""}, False),
    ("1", {"op": "eq", "value": 1, "path": ""}, False),
    (_ABSENT, {"op": "eq", "value": None, "path": ""}, True),
    (_ABSENT, {"op": "neq", "value": None, "path": ""}, False),
    ({"a": [1, {"b": 2}], "c": None}, {"op": "eq", "value": {"c": None, "a": [1.0, {"b": 2}]}, "path": ""}, True),
    (2**70, {"op": "eq", "value": 2**70 + 1, "path": ""}, False),
    (2**70, {"op": "gt", "value": 2**70 - 1, "path": ""}, True),
    (-(2**70), {"op": "lt", "value": -(2**70) + 1, "path": ""}, True),
    (2**53 + 1, {"op": "gt", "value": 9007199254740992.0, "path": ""}, True),
    (2**53 + 1, {"op": "lt", "value": 9007199254740994.0, "path": ""}, True),
    (9007199254740992.0, {"op": "lt", "value": 2**53 + 1, "path": ""}, True),
    (3, {"op": "gt", "value": 2.5, "path": ""}, True),
    (2, {"op": "gt", "value": 2.5, "path": ""}, False),
    (-3, {"op": "lt", "value": -2.5, "path": ""}, True),
    (-2, {"op": "lt", "value": -2.5, "path": ""}, False),
    (0, {"op": "gte", "value": -0.0, "path": ""}, True),
    (0.1, {"op": "lte", "value": 0.1, "path": ""}, True),
    (1.5, {"op": "gt", "value": 1.25, "path": ""}, True),
    (10**400, {"op": "gt", "value": 1e300, "path": ""}, True),
    (True, {"op": "gt", "value": 0, "path": ""}, False),
    (1, {"op": "gt", "value": False, "path": ""}, False),
    ("1", {"op": "lt", "value": 2, "path": ""}, False),
    ("b", {"op": "gt", "value": "a", "path": ""}, True),
    ("B", {"op": "lt", "value": "a", "path": ""}, True),  # code points, not a collation
    (2, {"op": "gt", "value": 2, "path": ""}, False),
    (2.0, {"op": "gt", "value": 2, "path": ""}, False),
    ("ab", {"op": "gt", "value": "a", "path": ""}, True),
    ("é", {"op": "gt", "value": "z", "path": ""}, True),
    ("\U0001f600", {"op": "gt", "value": "\uffff", "path": ""}, True),  # UTF-8 order is code-point order
    ('a"b', {"op": "gte", "value": 'a"b', "path": ""}, True),
    (_ABSENT, {"op": "gt", "value": 0, "path": ""}, False),
    (None, {"op": "lt", "value": 0, "path": ""}, False),
    ([1, [2], {"x": 3}], {"op": "contains", "value": [2.0], "path": ""}, True),
    ([1, [2], {"x": 3}], {"op": "contains", "value": {"x": 3}, "path": ""}, True),
    ([1, 2], {"op": "contains", "value": 3, "path": ""}, False),
    ([1, 2], {"op": "notContains", "value": 3, "path": ""}, True),
    ("hello", {"op": "contains", "value": "ell", "path": ""}, True),
    ("hello", {"op": "contains", "value": "", "path": ""}, True),
    ("a.c", {"op": "contains", "value": ".", "path": ""}, True),
    ("abc", {"op": "contains", "value": "%", "path": ""}, False),
    ("a\nb", {"op": "contains", "value": "\n", "path": ""}, True),
    ({"a": 1}, {"op": "contains", "value": "a", "path": ""}, False),
    (_ABSENT, {"op": "contains", "value": 1, "path": ""}, False),
    (_ABSENT, {"op": "notContains", "value": 1, "path": ""}, True),
    (5, {"op": "notContains", "value": 5, "path": ""}, True),
    ("hello", {"op": "startsWith", "value": "he", "path": ""}, True),
    ("hello", {"op": "startsWith", "value": "lo", "path": ""}, False),
    ("hello", {"op": "endsWith", "value": "lo", "path": ""}, True),
    ("hello", {"op": "endsWith", "value": "", "path": ""}, True),
    ("lo", {"op": "endsWith", "value": "hello", "path": ""}, False),
    (["he"], {"op": "startsWith", "value": "he", "path": ""}, False),
    ("ü✓", {"op": "endsWith", "value": "✓", "path": ""}, True),
    (None, {"op": "isNull", "path": ""}, True),
    (_ABSENT, {"op": "isNull", "path": ""}, True),
    (0, {"op": "isNull", "path": ""}, False),
    (0, {"op": "isNotNull", "path": ""}, True),
    (None, {"op": "isNotNull", "path": ""}, False),
    (_ABSENT, {"op": "isNotNull", "path": ""}, False),
    (None, {"op": "exists", "path": ""}, True),
    (_ABSENT, {"op": "exists", "path": ""}, False),
    (_ABSENT, {"op": "missing", "path": ""}, True),
    (None, {"op": "missing", "path": ""}, False),
    *[
        (value, {"op": "type", "value": name, "path": ""}, True)
        for value, name in [
            (None, "null"),
            (False, "boolean"),
            (1, "number"),
            (1.5, "number"),
            ("s", "string"),
            ([], "array"),
            ({}, "object"),
        ]
    ],
    (True, {"op": "type", "value": "number", "path": ""}, False),
    (_ABSENT, {"op": "type", "value": "null", "path": ""}, False),
    # JSON Pointer paths
    ({"a": {"b": [10, 20]}}, {"op": "eq", "value": 20, "path": "/a/b/1"}, True),
    ({"a": {"b": [10, 20]}}, {"op": "missing", "path": "/a/b/2"}, True),
    ({"a": {"b": [10, 20]}}, {"op": "missing", "path": "/a/b/01"}, True),
    ({"a": {"b": [10, 20]}}, {"op": "missing", "path": "/a/b/-"}, True),
    ({"a": {"b": [10, 20]}}, {"op": "missing", "path": "/a/b/0/c"}, True),
    ({"a": 1}, {"op": "eq", "value": None, "path": "/a/x"}, True),
    ({"a": 1}, {"op": "isNull", "path": "/zz"}, True),
    ({"a/b": 1, "m~n": 2}, {"op": "eq", "value": 1, "path": "/a~1b"}, True),
    ({"a/b": 1, "m~n": 2}, {"op": "eq", "value": 2, "path": "/m~0n"}, True),
    ({"~1": 3}, {"op": "eq", "value": 3, "path": "/~01"}, True),
    ({"": {"": 4}}, {"op": "eq", "value": 4, "path": "//"}, True),
    ({'q"\\\n': 5}, {"op": "eq", "value": 5, "path": '/q"\\\n'}, True),
    ({"é\U0001f600": 6}, {"op": "eq", "value": 6, "path": "/é\U0001f600"}, True),
    ({"a": None}, {"op": "exists", "path": "/a"}, True),
    ({"a": None}, {"op": "isNull", "path": "/a"}, True),
    ("str", {"op": "missing", "path": "/0"}, True),
    (_ABSENT, {"op": "missing", "path": "/a"}, True),
    ([[1, 2]], {"op": "contains", "value": 2, "path": "/0"}, True),
    # combinators
    (5, {"all": []}, True),
    (5, {"any": []}, False),
    (5, {"all": [{"op": "gt", "value": 1, "path": ""}, {"op": "lt", "value": 9, "path": ""}]}, True),
    (5, {"all": [{"op": "gt", "value": 1, "path": ""}, {"op": "lt", "value": 4, "path": ""}]}, False),
    (5, {"any": [{"op": "eq", "value": 4, "path": ""}, {"op": "eq", "value": 5, "path": ""}]}, True),
    (5, {"not": {"op": "eq", "value": 5, "path": ""}}, False),
    (
        {"s": "open", "n": 2},
        {
            "not": {
                "any": [{"op": "neq", "value": "open", "path": "/s"}, {"all": [{"op": "lt", "value": 1, "path": "/n"}]}]
            }
        },
        True,
    ),
]


@pytest.mark.parametrize(("stored", "predicate", "holds"), PREDICATE_CASES)
async def test_the_lua_predicate_twin_follows_the_contract(
    adapter: ms.RedisStateAdapter, stored: Any, predicate: dict[str, Any], holds: bool
) -> None:
    import msgspec

    if stored is not _ABSENT:
        await adapter.set("g", "k", stored)
    check = [b"check", b"k", msgspec.json.encode(predicate), b""]
    (batch_text,) = await adapter._run("g", check, "batch")
    assert batch_text == (b"=true" if holds else b"=false")
    tx = await adapter._run("g", [*check, b"get", b"k", b"", b""], "tx")
    if holds:
        assert tx[0] == b"true"
    else:
        assert tx[:3] == [b"ERR", 0, b"CONFLICT"], tx
    assert await adapter.exists("g", "k") is (stored is not _ABSENT), "a check changes nothing"


# --------------------------------------------------------- results and cost


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize("with_update", [False, True])
async def test_results_over_the_limit_are_refused_before_anything_is_stored(
    adapter: ms.RedisStateAdapter, kind: str, with_update: bool
) -> None:
    events: list[Any] = []
    adapter.add_change_sink(events.append)
    big = "x" * (1024 * 1024)
    await adapter.set("g", "big", big)
    events.clear()
    limit = adapter._max_result
    head: list[dict[str, Any]] = [{"type": "set", "key": "other", "value": 1}]
    if with_update:
        head.append({"type": "update", "key": "u", "updateFn": lambda v: 1})
    get = {"type": "get", "key": "big"}
    over = head + [get] * (limit // len(big) + 1)
    with pytest.raises(ms.LimitExceededError, match="nothing was stored"):
        await getattr(adapter, kind)("g", over)
    assert await adapter.keys("g") == ["big"] and events == []
    # Each result is the string, its quotes and a comma: this many fit.
    fitting = head + [get] * (limit // (len(big) + 3) - 1)
    result = await getattr(adapter, kind)("g", fitting)
    assert await adapter.get("g", "other") == 1, result


async def test_a_transaction_of_growing_results_stops_at_the_limit_without_building_them(
    adapter: ms.RedisStateAdapter,
) -> None:
    # Each push returns the whole array: the results grow quadratically and
    # are refused as soon as their size passes the limit, before they are built.
    ops = [{"type": "push", "key": "l", "items": ["y" * 100]} for _ in range(10_000)]
    started = time.perf_counter()
    with pytest.raises(ms.LimitExceededError):
        await adapter.transaction("g", ops)
    assert time.perf_counter() - started < 5
    assert await adapter.exists("g", "l") is False


# --------------------------------------------------- the runtime's own groups


async def test_the_internal_handle_writes_reserved_groups_without_events(adapter: ms.RedisStateAdapter) -> None:
    events: list[Any] = []
    adapter.add_change_sink(events.append)
    inner = adapter.internal
    group = "__motia/triggers"
    await adapter.set("visible", "k", 1)
    events.clear()
    assert await inner.set(group, "pos", 1) == 1
    assert await inner.compare_and_swap(group, "pos", 1, 2) is True
    tx = await inner.transaction(
        group, [{"type": "increment", "key": "pos"}, {"type": "set", "key": "lease", "value": "a"}]
    )
    assert tx.success and tx.results == [3, "a"]
    assert await inner.get(group, "pos") == 3
    assert await inner.keys(group) == ["lease", "pos"]
    assert await inner.get_group(group) == ["a", 3]
    assert await inner.delete(group, "lease") == "a"
    assert events == [], "the internal handle fires no change events"
    assert await adapter.groups() == ["visible"], "reserved groups are hidden"
    assert await inner.groups() == [group, "visible"]
    with pytest.raises(ms.InvalidArgumentError):
        inner.add_change_sink(events.append)
    # The public API refuses the runtime's groups.
    for call in (
        lambda: adapter.set(group, "pos", 0),
        lambda: adapter.get(group, "pos"),
        lambda: adapter.transaction(group, []),
        lambda: adapter.batch(group, []),
        lambda: adapter.clear(group),
    ):
        with pytest.raises(ms.InvalidArgumentError, match="reserved"):
            await call()
    assert await inner.get(group, "pos") == 3
    # The adapter's own events still flow.
    await adapter.set("visible", "k", 2)
    assert len(events) == 1
    await adapter.close()
    with pytest.raises(ms.UnavailableError):
        await inner.get(group, "pos")


async def test_big_integer_sums_are_exact_across_digit_chunks(adapter: ms.RedisStateAdapter) -> None:
    import random

    rng = random.Random(7)
    edges = [10**k + d for k in (13, 14, 15, 27, 28, 29, 100) for d in (-1, 0, 1)]
    numbers = edges + [rng.randrange(-(10**60), 10**60) for _ in range(200)]
    records: list[dict[str, Any]] = []
    expected: list[int] = []
    for n, x in enumerate(numbers):
        y = rng.choice(numbers) * rng.choice((1, -1))
        records += [{"type": "set", "key": f"k{n}", "value": x}, {"type": "increment", "key": f"k{n}", "delta": y}]
        expected += [x, x + y]
    result = await adapter.batch("g", records)
    assert [item.value for item in result.results] == expected


async def test_a_long_transaction_costs_its_size_once_not_once_per_record(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # Applying each record to the whole stored text made this quadratic:
    # ~10 s on the machine where the working copies take ~60 ms.
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, timeout=120)
    try:
        await a.set("g", "l", ["y" * 100] * 3000)
        ops = [{"type": "pop", "key": "l"}, {"type": "shift", "key": "l"}] * 1500
        ops += [{"type": "setField", "key": "o", "field": "f", "value": n} for n in range(3000)]
        started = time.perf_counter()
        result = await a.transaction("g", ops)
        elapsed = time.perf_counter() - started
        assert result.success and result.results[:3000] == ["y" * 100] * 3000
        assert result.results[-1] == {"f": 2999}
        assert await a.get("g", "l") == [] and await a.get("g", "o") == {"f": 2999}
        assert elapsed < 3, f"{elapsed:.1f} s"
    finally:
        await a.close()


async def test_comparing_a_large_value_with_a_small_one_costs_the_small_one(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, timeout=120)
    try:
        await a.set("g", "l", ["y" * 100] * 3000)
        await a.set("g", "o", {f"f{n}": "y" * 100 for n in range(3000)})
        ops = [{"type": "compareAndSwap", "key": "l", "expected": ["y" * 100], "value": 0}] * 1500
        ops += [{"type": "compareAndSwap", "key": "o", "expected": {"f0": "y" * 100}, "value": 0}] * 1500
        started = time.perf_counter()
        result = await a.batch("g", ops)
        elapsed = time.perf_counter() - started
        assert [item.value for item in result.results] == [False] * 3000
        assert elapsed < 3, f"{elapsed:.1f} s"
    finally:
        await a.close()


async def test_checks_read_what_earlier_records_of_the_same_call_wrote(adapter: ms.RedisStateAdapter) -> None:
    import msgspec

    def record(*slots: Any) -> list[bytes]:
        return [
            s if isinstance(s, bytes) else msgspec.json.encode(s) if not isinstance(s, str) else s.encode()
            for s in slots
        ]

    def check(key: str, op: str, path: str, value: Any = None) -> list[bytes]:
        pred: dict[str, Any] = {"op": op, "path": path} | ({} if value is None else {"value": value})
        return record("check", key, pred, b"")

    await adapter.set("g", "l", [1, 2, 3])
    await adapter.set("g", "o", {"a": {"b": 1}, "c": 2})
    flat = [
        *check("l", "eq", "/2", 3),
        *record("push", "l", b"4,[5]", b""),
        *check("l", "eq", "/4/0", 5),
        *record("shift", "l", b"", b""),
        *check("l", "eq", "/0", 2),
        *check("l", "eq", "", [2, 3, 4, [5]]),
        *record("unshift", "l", b'"z"', b""),
        *check("l", "eq", "/0", "z"),
        *check("l", "missing", "/5"),
        *check("o", "eq", "/a/b", 1),
        *record("setField", "o", b'"d~/"', b"7"),
        *check("o", "eq", "/d~0~1", 7),
        *record("deleteField", "o", b'"a"', b""),
        *check("o", "missing", "/a"),
        *record("setField", "o", b'"a"', b"[0]"),
        *check("o", "eq", "/a/0", 0),
        *check("o", "eq", "", {"c": 2, "d~/": 7, "a": [0]}),
        *record("set", "o", b"5", b""),
        *check("o", "missing", "/a"),
        *check("o", "eq", "", 5),
    ]
    reply = await adapter._run("g", flat, "tx")
    assert reply[0] != b"ERR", reply
    checks = [r for r in reply if r in (b"true", b"false")]
    assert checks == [b"true"] * 13, reply


async def test_calls_with_different_headers_interleaved_each_keep_their_own(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # The program remembers the last call header it parsed; two stores on
    # one server with different feed settings, written turn about, must
    # each still get exactly what their own header says.
    with_feed = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix + "a:")
    without = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix + "b:", feed_retention=0)
    try:
        for _ in range(3):
            await with_feed.increment("g", "n")
            await without.increment("g", "n")
        assert await with_feed.get("g", "n") == 3
        assert await without.get("g", "n") == 3
        assert [c.new_value async for c in with_feed.changes(None, follow=False)] == [1, 2, 3]
        raw = redis.Redis.from_url(redis_server.url)
        try:
            assert raw.keys(f"{redis_prefix}b:*feed*") == []
        finally:
            raw.close()
    finally:
        await with_feed.close()
        await without.close()


async def test_a_malformed_call_header_is_refused_with_a_clear_error(adapter: ms.RedisStateAdapter) -> None:
    client = redis.Redis.from_url(adapter.url)
    try:
        await adapter.set("g", "n", 1)  # loads the program
        with pytest.raises(redis.ResponseError, match="malformed call header: one 9 x"):
            client.fcall(FUNCTION.decode(), 3, "{x}h", "{x}s", "{x}z", "one 9 x", "g", "0", "increment", "n", "1")
        assert client.exists("{x}h") == 0
    finally:
        client.close()


async def test_a_read_on_a_connection_closed_while_pooled_is_sent_again(tmp_path: Path) -> None:
    server = RedisServer(str(tmp_path)).start()
    try:
        a = ms.RedisStateAdapter(server.url, timeout=1.0)
        try:
            # Several connections in the pool, then a restart the event loop has not seen yet.
            await asyncio.gather(*(a.increment(f"g{i}", "n") for i in range(8)))
            server.stop(kill=True)
            server.start()  # no persistence: empty
            assert [await a.get(f"g{i}", "n") for i in range(8)] == [None] * 8
            assert [await a.exists(f"g{i}", "n") for i in range(8)] == [False] * 8
        finally:
            await a.close()
    finally:
        server.stop()
