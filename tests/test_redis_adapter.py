"""The Redis adapter against a real redis-server (started by the fixtures).

The shared vectors run in test_vectors.py; these tests pin what only Redis
has: processes racing through one server, TTL, outages and recovery, the
cluster-ready key layout, the exact bytes stored, and the factory.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.adapters.redis import adapter as redis_module

from .conformance import adapter_call, limits_kwargs, load_cases, run_case
from .helpers import RedisServer, finish, free_port, go, start_child

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
def test_a_group_is_one_hash_whose_tag_is_the_whole_escaped_group(group: str, redis_prefix: str) -> None:
    a = ms.RedisStateAdapter("redis://127.0.0.1:1/0", key_prefix=redis_prefix)
    key = a.hash_key(group)
    tag = key[key.index("{") + 1 : key.index("}")]
    assert redis_module._unescape_group(tag) == group, "the tag is the entire group, nothing cut at a brace"
    assert key == f"{redis_prefix}{{{tag}}}"
    assert key_slot(key) == crc16(tag.encode()) % 16384
    # Every entry of the group is a field of this one key: one slot per group.
    other = a.hash_key(group + "x")
    assert other != key


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


async def test_groups_scans_and_never_uses_keys(adapter: ms.RedisStateAdapter, monkeypatch: Any) -> None:
    async def no_keys(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("KEYS blocks Redis; groups() must SCAN")

    monkeypatch.setattr(adapter.client, "keys", no_keys)
    names = ["with}brace", "{tag}", "a*b", "per%cent"] + [f"g{i}" for i in range(1500)]
    pipe = adapter.client.pipeline(transaction=False)
    for name in names:
        pipe.hset(adapter.hash_key(name), "k", "1")
    await pipe.execute()
    await adapter.client.set(adapter.key_prefix + "{not-a-group}", "a string, not a hash")
    assert await adapter.groups() == sorted(names)
    await adapter.clear("with}brace")
    assert "with}brace" not in await adapter.groups()


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
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, ttl=1.0)
    await a.set("short", "k", 1)
    await a.set("kept", "k", 1)
    pttl = await a.client.pttl(a.hash_key("short"))
    assert 0 < pttl <= 1000
    started = anyio.current_time()
    while anyio.current_time() - started < 1.3:  # writes refresh the TTL; reads do not
        await anyio.sleep(0.25)
        await a.increment("kept", "n")
        await a.get("short", "k")  # a read, which must not refresh the TTL
    assert await a.get("kept", "k") == 1, "written every 0.25 s: alive after 1.3 s"
    assert await a.get("short", "k") is None, "no write for 1.3 s with a 1 s TTL: gone"
    await anyio.sleep(1.2)
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


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"adapter": "redis", "url": "http://x"}, "url"),
        ({"adapter": "redis", "ttl": -1}, "ttl"),
        ({"adapter": "redis", "ttl": "1h"}, "ttl"),
        ({"adapter": "redis", "key_prefix": "a{b}:"}, "key_prefix"),
        ({"adapter": "redis", "timeout": 0}, "timeout"),
        ({"adapter": "redis", "fallback": "file"}, "fallback"),
        ({"adapter": "redis", "hosts": []}, "hosts"),
    ],
)
def test_bad_redis_configurations_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ms.InvalidArgumentError) as info:
        ms.create_state_adapter(config)
    assert str(info.value).startswith(field + ":"), str(info.value)


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


@pytest.mark.parametrize(("name", "case"), CASES[::5], ids=[c[0] for c in CASES[::5]])
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
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
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


async def test_a_long_batch_goes_in_slices_and_keeps_every_result_in_order(
    adapter: ms.RedisStateAdapter, redis_server: RedisServer
) -> None:
    from redis.asyncio import Redis

    from motia_state.adapters.redis.adapter import BATCH_SLICE

    n = BATCH_SLICE * 2 + 10
    ops: list[dict[str, Any]] = [{"id": i, "type": "increment", "key": "n"} for i in range(n)]
    ops[BATCH_SLICE + 5] = {"id": "bad", "type": "pop", "key": "n"}  # TYPE_MISMATCH, alone
    ops[BATCH_SLICE + 6] = {"id": "u", "type": "update", "key": "n", "updateFn": lambda v: v * 1000}
    stats = Redis(port=redis_server.port)
    await adapter.increment("g", "warm")  # loads the function library, outside the count
    try:
        await stats.config_resetstat()
        result = await adapter.batch("g", ops)
        calls = await stats.info("commandstats")
    finally:
        await stats.aclose()
    values = [(r.id, r.value, r.code) for r in result.results]
    assert values[: BATCH_SLICE + 5] == [(i, i + 1, None) for i in range(BATCH_SLICE + 5)]
    assert values[BATCH_SLICE + 5] == ("bad", None, "TYPE_MISMATCH")
    assert values[BATCH_SLICE + 6] == ("u", (BATCH_SLICE + 5) * 1000, None)
    assert values[-1] == (n - 1, (BATCH_SLICE + 5) * 1000 + n - BATCH_SLICE - 7, None)
    assert await adapter.get("g", "n") == values[-1][1]
    # the records before the update record go in 2 calls, its swap is 1, the records after it 2
    script_calls = sum(v["calls"] for k, v in calls.items() if k in ("cmdstat_fcall", "cmdstat_evalsha"))
    assert script_calls == 5
