"""The Redis adapter against a live three-primary Redis Cluster.

The vectors run on it too (tests/adapters/test_vectors.py). A group is one hash
whose hash tag is the group, so every script touches one slot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms

from ..helpers import RedisClusterServers, finish, go, start_child
from .test_redis_adapter import key_slot


def cluster_adapter(cluster: RedisClusterServers, prefix: str, **options: Any) -> ms.RedisStateAdapter:
    return ms.RedisStateAdapter(f"redis://127.0.0.1:{cluster.port}/0", cluster=True, key_prefix=prefix, **options)


async def test_groups_spread_over_every_node_and_all_are_listed(
    redis_cluster: RedisClusterServers, redis_prefix: str
) -> None:
    adapter = cluster_adapter(redis_cluster, redis_prefix)
    try:
        names = [f"order-{i}" for i in range(30)]
        for name in names:
            await adapter.push(name, "items", name)
        slots = {key_slot(adapter.hash_key(name)) for name in names}
        assert {0 if s < 5461 else 1 if s < 10923 else 2 for s in slots} == {0, 1, 2}  # all three nodes hold some
        assert await adapter.groups() == sorted(names)
        for name in names[:10]:
            await adapter.clear(name)
        assert await adapter.groups() == sorted(names[10:])
    finally:
        await adapter.close()


async def test_batches_and_transactions_with_update_fns_on_a_cluster(
    redis_cluster: RedisClusterServers, redis_prefix: str
) -> None:
    adapter = cluster_adapter(redis_cluster, redis_prefix)
    try:
        result = await adapter.batch(
            "g",
            [
                {"id": 1, "type": "increment", "key": "n", "delta": 2},
                {"id": 2, "type": "pop", "key": "n"},  # TYPE_MISMATCH, alone
                {"id": 3, "type": "update", "key": "n", "updateFn": lambda v: v * 10},
                {"id": 4, "type": "push", "key": "q", "items": [1]},
            ],
        )
        assert [(r.id, r.value, r.code) for r in result.results] == [
            (1, 2, None),
            (2, None, "TYPE_MISMATCH"),
            (3, 20, None),
            (4, [1], None),
        ]

        async def one(i: int) -> None:
            ops = [
                {"type": "update", "key": "n", "updateFn": lambda v: v + 1},
                {"type": "push", "key": "log", "value": i},
            ]
            assert (await adapter.transaction("g", ops)).success

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(one, i)
        assert await adapter.get("g", "n") == 50
        assert sorted(await adapter.get("g", "log")) == list(range(30))
    finally:
        await adapter.close()


def test_two_processes_racing_on_a_cluster_get_exactly_1_to_n(
    redis_cluster: RedisClusterServers, redis_prefix: str
) -> None:
    config = {"adapter": "redis", "url": f"redis://127.0.0.1:{redis_cluster.port}/0", "cluster": True}
    config["key_prefix"] = redis_prefix
    n = 300
    procs = [start_child(config, "race", n) for _ in range(2)]
    go(*procs)
    assert sorted(v for p in procs for v in finish(p)) == list(range(1, 2 * n + 1))


async def test_a_lost_cluster_is_unavailable_and_the_adapter_recovers(tmp_path: Path) -> None:
    cluster = RedisClusterServers(str(tmp_path)).start()
    adapter = cluster_adapter(cluster, "lost:", timeout=1.0)
    try:
        assert await adapter.increment("g", "n") == 1
        for node in cluster.nodes:
            node.stop(kill=True)
        for call in (adapter.increment("g", "n"), adapter.groups(), adapter.batch("g", [{"type": "get", "key": "n"}])):
            with anyio.fail_after(15), pytest.raises(ms.UnavailableError):
                await call
        for node in cluster.nodes:  # same ports, same nodes files: the same cluster comes back
            node.start()
        with anyio.fail_after(30):
            while True:
                try:
                    assert await adapter.increment("g", "n") == 1  # no persistence: the data went with it
                    break
                except ms.UnavailableError:
                    await anyio.sleep(0.1)
    finally:
        await adapter.close()
        cluster.stop()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("ClusterDownError", "UNAVAILABLE"),  # redis-py drops the CLUSTERDOWN prefix from the message
        ("MasterDownError", "UNAVAILABLE"),
        ("TryAgainError", "UNAVAILABLE"),
        ("ReadOnlyError", "UNAVAILABLE"),
        ("OutOfMemoryError", "UNAVAILABLE"),
        ("BusyLoadingError", "UNAVAILABLE"),
        ("RedisClusterException", "UNAVAILABLE"),
        ("ResponseError", "INTERNAL"),  # a refused command is our bug, not an outage
    ],
)
def test_redis_errors_map_to_codes(error: str, code: str, redis_prefix: str) -> None:
    import redis.exceptions

    adapter = ms.RedisStateAdapter("redis://127.0.0.1:1/0", key_prefix=redis_prefix)
    assert adapter._translate(getattr(redis.exceptions, error)("boom")).code == code
