"""One adapter used from several event loops: one ``asyncio.run`` after another, and threads with loops of their own.

The memory and file adapters keep no state bound to a loop. The Redis
adapter gives every loop a redis-py client of its own (redis-py's
connections and locks belong to the loop that made them), closed when that
loop ends; so all three serve any loop, and ``close()`` may run in yet
another one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms

from ..helpers import RedisClusterServers, RedisServer


@pytest.fixture(params=["memory", "file", "redis", "redis-unpipelined"])
def make(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str) -> Callable[[], ms.StateAdapter]:
    kind = request.param
    if kind == "memory":
        return ms.MemoryStateAdapter
    if kind == "file":
        return lambda: ms.FileStateAdapter(tmp_path / "store", fsync="never")
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: ms.RedisStateAdapter(server.url, key_prefix=redis_prefix, auto_pipeline=kind == "redis")


def test_one_asyncio_run_after_another(make: Callable[[], ms.StateAdapter]) -> None:
    adapter = make()  # made outside any loop
    state = ms.StateManager(adapter)
    assert asyncio.run(state.increment("g", "n")) == 1
    assert asyncio.run(state.increment("g", "n")) == 2
    result = asyncio.run(state.transaction("g", [{"type": "increment", "key": "n"}, {"type": "get", "key": "n"}]))
    assert result.success and result.results == [3, 3]
    assert asyncio.run(state.batch("g", [{"type": "set", "key": "m", "value": 1}])).results[0].value == 1
    assert asyncio.run(state.get_group("g")) == [1, 3]

    async def concurrently() -> list[Any]:
        return await asyncio.gather(*(state.increment("g", "n") for _ in range(50)))

    assert sorted(asyncio.run(concurrently())) == list(range(4, 54))
    asyncio.run(state.close())
    with pytest.raises(ms.UnavailableError):
        asyncio.run(state.get("g", "n"))


def test_threads_with_loops_of_their_own_share_one_adapter(make: Callable[[], ms.StateAdapter]) -> None:
    adapter = make()
    failures: list[BaseException] = []
    returned: list[Any] = []

    def work() -> None:
        async def main() -> None:
            returned.extend(await asyncio.gather(*(adapter.increment("g", "n") for _ in range(150))))
            tx = await adapter.transaction("g", [{"type": "increment", "key": "n", "delta": 1000}])
            assert tx.success, tx.error

        try:
            asyncio.run(main())
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []

    async def finish() -> Any:
        try:
            return await adapter.get("g", "n")
        finally:
            await adapter.close()

    assert asyncio.run(finish()) == 4 * 150 + 4 * 1000
    assert len(set(returned)) == len(returned) == 600  # every increment got its own value


def test_close_reaches_a_loop_still_running_in_another_thread(redis_server: RedisServer, redis_prefix: str) -> None:
    adapter = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix)
    other = asyncio.new_event_loop()
    runner = threading.Thread(target=other.run_forever)
    runner.start()
    try:
        used = asyncio.run_coroutine_threadsafe(adapter.increment("g", "n"), other)
        assert used.result(10) == 1

        async def close_here() -> None:
            await adapter.increment("g", "n")
            await adapter.close()

        asyncio.run(close_here())
        later = asyncio.run_coroutine_threadsafe(adapter.get("g", "n"), other)
        with pytest.raises(ms.UnavailableError):
            later.result(10)
    finally:
        other.call_soon_threadsafe(other.stop)
        runner.join(10)
        other.run_until_complete(other.shutdown_asyncgens())
        other.close()


def test_a_given_client_serves_other_loops_through_a_copy(redis_server: RedisServer, redis_prefix: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    adapter = ms.RedisStateAdapter(client=client, key_prefix=redis_prefix)
    assert asyncio.run(adapter.increment("g", "n")) == 1
    assert asyncio.run(adapter.increment("g", "n")) == 2
    asyncio.run(adapter.close())


def test_a_given_cluster_client_in_a_second_loop_says_what_to_do(redis_cluster: RedisClusterServers) -> None:
    import redis.asyncio

    client = redis.asyncio.RedisCluster.from_url(f"redis://127.0.0.1:{redis_cluster.port}")
    adapter = ms.RedisStateAdapter(client=client, key_prefix="loops:")
    assert asyncio.run(adapter.set("g", "k", 1)) == 1
    with pytest.raises(ms.InvalidArgumentError, match="build it from a URL") as caught:
        asyncio.run(adapter.get("g", "k"))
    assert caught.value.code == "INVALID_ARGUMENT"
    # Built from a URL instead, every loop gets its own client.
    by_url = ms.RedisStateAdapter(f"redis://127.0.0.1:{redis_cluster.port}", cluster=True, key_prefix="loops:")
    assert asyncio.run(by_url.get("g", "k")) == 1
    assert asyncio.run(by_url.get("g", "k")) == 1
    asyncio.run(by_url.close())
