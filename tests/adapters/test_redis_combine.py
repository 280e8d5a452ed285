"""Single operations meeting on one Redis group go out as one program call, against a real redis-server.

``motia_state.adapters.redis.combine.Combiner``: under contention the
operations on one group are sent together in the program's batch mode.
These tests pin that it happens (counted on the server), that every caller
still gets exactly its own result or error, that each operation keeps its
own feed record and stamp, and what cancellation, closing and a reply too
large for one call do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio

import motia_state as ms
from motia_state.feed import write_context

from ..helpers import RedisServer

pytestmark = pytest.mark.parametrize("auto_pipeline", [False, True], ids=["plain", "pipelined"])


@pytest.fixture
async def adapter(redis_server: RedisServer, redis_prefix: str, auto_pipeline: bool) -> Any:
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, auto_pipeline=auto_pipeline)
    await a.increment("warm", "up")  # connected, the program loaded
    yield a
    await a.close()


async def program_calls(adapter: ms.RedisStateAdapter) -> int:
    """FCALLs the server has run so far (every test's server is shared: count differences)."""
    stats = await adapter.client.info("commandstats")
    return int(stats.get("cmdstat_fcall", {}).get("calls", 0))


async def test_operations_meeting_on_a_group_share_one_call(adapter: ms.RedisStateAdapter) -> None:
    before = await program_calls(adapter)
    results = await asyncio.gather(*(adapter.increment("g", f"k{i}", i + 1) for i in range(64)))
    calls = await program_calls(adapter) - before - 1  # INFO itself is no FCALL; the last count is
    assert results == [i + 1 for i in range(64)]
    # The first goes alone, at once; the 63 behind it go together.
    assert calls <= 3, calls
    assert adapter._combiner.combined >= 63
    assert [await adapter.get("g", f"k{i}") for i in range(64)] == [i + 1 for i in range(64)]


async def test_a_hot_key_hands_out_each_value_once_and_in_each_callers_order(adapter: ms.RedisStateAdapter) -> None:
    async def worker() -> list[int]:
        return [await adapter.increment("g", "hot") for _ in range(25)]

    got = await asyncio.gather(*(worker() for _ in range(16)))
    for mine in got:
        assert mine == sorted(mine)
    assert sorted(v for mine in got for v in mine) == list(range(1, 16 * 25 + 1))
    # Each increment has its own feed record, old and new, in commit order.
    feed = [c async for c in adapter.changes(None, groups=["g"], follow=False)]
    assert [(c.old_value, c.new_value) for c in feed] == [(n - 1 if n > 1 else None, n) for n in range(1, 401)]
    assert adapter._combiner.batches > 0


async def test_each_combined_operation_gets_its_own_result_or_error(adapter: ms.RedisStateAdapter) -> None:
    await adapter.set("g", "text", "abc")
    await adapter.set("g", "list", [1])
    await adapter.set("g", "cas", 5)
    await adapter.set("g", "doc", {"a": 1})
    hold = asyncio.ensure_future(adapter.increment("g", "first"))  # in flight: the rest wait behind it
    results = await asyncio.gather(
        adapter.increment("g", "n", 5),
        adapter.increment("g", "text"),
        adapter.push("g", "list", 2),
        adapter.push("g", "text", 1),
        adapter.compare_and_swap("g", "cas", 5, 6),
        adapter.compare_and_swap("g", "cas", 5, 7),
        adapter.set_field("g", "list", "f", 1),
        adapter.pop("g", "list"),
        adapter.delete_field("g", "doc", "a"),
        adapter.delete("g", "missing"),
        adapter.decrement("g", "n", 2),
        return_exceptions=True,
    )
    assert await hold == 1
    assert results[0] == 5
    assert isinstance(results[1], ms.TypeMismatchError) and results[1].code == "TYPE_MISMATCH"
    assert results[2] == [1, 2]
    assert isinstance(results[3], ms.TypeMismatchError)
    assert results[4] is True and results[5] is False
    assert isinstance(results[6], ms.TypeMismatchError)
    assert results[7] == 2
    assert results[8] == {}
    assert results[9] is None
    assert results[10] == 3
    assert adapter._combiner.combined >= 11
    # Failed operations stored nothing; the rest did, each as alone.
    assert await adapter.get("g", "text") == "abc"
    assert await adapter.get("g", "cas") == 6
    assert await adapter.get("g", "list") == [1]
    feed = [(c.key, c.op) async for c in adapter.changes(None, groups=["g"], follow=False)]
    assert feed[-7:] == [
        ("first", "increment"),
        ("n", "increment"),
        ("list", "push"),
        ("cas", "compareAndSwap"),
        ("list", "pop"),
        ("doc", "deleteField"),
        ("n", "decrement"),
    ]


async def test_writers_with_different_stamps_keep_their_own(adapter: ms.RedisStateAdapter) -> None:
    async def write(depth: int, step: str | None) -> None:
        with write_context(depth, None if step is None else {"step": step, "traceId": "t"}):
            await adapter.increment("g", f"k{depth}")

    hold = asyncio.ensure_future(adapter.increment("g", "first"))
    await asyncio.gather(*(write(d, None if d == 0 else f"s{d}") for d in range(4)), write(0, None))
    await hold
    feed = [c async for c in adapter.changes(None, groups=["g"], follow=False)]
    stamps = {(c.key, c.depth, None if c.origin is None else c.origin["step"]) for c in feed}
    assert stamps == {("first", 0, None), ("k0", 0, None), ("k1", 1, "s1"), ("k2", 2, "s2"), ("k3", 3, "s3")}
    assert await adapter.get("g", "k0") == 2


async def test_a_caller_cancelled_while_it_waits_is_never_sent(adapter: ms.RedisStateAdapter) -> None:
    hold = asyncio.ensure_future(adapter.increment("g", "first"))
    tasks = [asyncio.ensure_future(adapter.increment("g", f"k{i}")) for i in range(10)]
    await asyncio.sleep(0)  # every one queued behind the first
    for task in tasks[::2]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert await hold == 1
    assert all(isinstance(r, asyncio.CancelledError) for r in done[::2])
    assert done[1::2] == [1] * 5
    assert [await adapter.get("g", f"k{i}") for i in range(10)] == [None, 1] * 5


async def test_results_too_large_together_run_one_by_one(
    redis_server: RedisServer, redis_prefix: str, auto_pipeline: bool
) -> None:
    # Each push returns its whole array (about 30 bytes); eight of them pass 100 bytes.
    limits = ms.Limits(max_value_bytes=64, max_result_bytes=100)
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, limits=limits, auto_pipeline=auto_pipeline)
    try:
        await a.increment("warm", "up")
        hold = asyncio.ensure_future(a.increment("g", "first"))
        results = await asyncio.gather(*(a.push("g", f"l{i}", "x" * 20, i) for i in range(8)))
        assert await hold == 1
        assert results == [["x" * 20, i] for i in range(8)]
        assert a._combiner.batches == 0, "the batch call wrote nothing and is not counted"
        feed = [c.key async for c in a.changes(None, groups=["g"], follow=False)]
        assert sorted(feed) == sorted(["first", *(f"l{i}" for i in range(8))])
    finally:
        await a.close()


async def test_closing_fails_what_waits_as_unavailable(
    redis_server: RedisServer, redis_prefix: str, auto_pipeline: bool
) -> None:
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, auto_pipeline=auto_pipeline)
    await a.increment("warm", "up")
    blocker = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        # The first call is held by the server, whose writes are paused
        # (the pause is in effect once its reply arrives, and lasts until
        # it is lifted below, however loaded the machine); the others wait
        # behind it.
        await blocker.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        first = asyncio.ensure_future(a.increment("g", "n"))
        await asyncio.sleep(0.02)
        waiting = [asyncio.ensure_future(a.increment("g", "n")) for _ in range(5)]
        await asyncio.sleep(0)
        await a.close()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, ms.UnavailableError) for r in results), results
        await blocker.execute_command("CLIENT", "UNPAUSE")
        await asyncio.gather(first, return_exceptions=True)
        check = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix)
        try:
            assert await check.get("g", "n") in (None, 1), "the waiting ones were never sent"
        finally:
            await check.close()
    finally:
        await blocker.execute_command("CLIENT", "UNPAUSE")
        await blocker.aclose()
