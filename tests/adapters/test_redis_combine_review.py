"""Combined operations and the direct call path of the Redis adapter: what each must keep of a call alone.

Operations that meet on one group go out as one call of the program's
batch mode (``combine.py``), and without ``auto_pipeline`` every program
call is packed and read by ``round_trip`` on a pooled connection. These
tests pin what a caller must not be able to tell apart from its
operation running alone: the group's TTL refreshed by each write, a
damaged entry failing only its own operation, closing never leaving a
waiter hanging, and the next operation after Redis dropped the pool's
idle connections succeeding.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions

import motia_state as ms
from motia_state.adapters.redis.combine import Combiner

from ..helpers import RedisServer

MODES = pytest.mark.parametrize("auto_pipeline", [False, True], ids=["plain", "pipelined"])


@pytest.fixture
async def make(redis_server: RedisServer, redis_prefix: str) -> Any:
    made: list[ms.RedisStateAdapter] = []

    async def make(**options: Any) -> ms.RedisStateAdapter:
        a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, **options)
        made.append(a)
        await a.increment("warm", "up")  # connected, the program loaded
        return a

    yield make
    for a in made:
        await a.client.delete(a.hash_key("g"))
        await a.close()


async def hold_the_group(a: ms.RedisStateAdapter) -> asyncio.Future[Any]:
    """An operation in flight on group "g" that writes nothing: what is issued next waits behind it."""
    hold = asyncio.ensure_future(a.delete("g", "missing"))
    await asyncio.sleep(0)
    return hold


@MODES
async def test_combined_writes_that_cancel_out_still_refresh_the_ttl(make: Any, auto_pipeline: bool) -> None:
    a = await make(ttl=100, auto_pipeline=auto_pipeline)
    await a.set("g", "x", 1)
    hash_key = a.hash_key("g")
    await a.client.pexpire(hash_key, 5000)  # as if the group's TTL had run down to 5 s
    hold = await hold_the_group(a)
    # Alone, each of these two writes refreshes the TTL (and each has its feed record).
    assert await asyncio.gather(a.set("g", "y", 2), a.delete("g", "y")) == [2, 2]
    assert await hold is None
    assert a._combiner.combined >= 2, "the two writes went out as one call"
    assert await a.client.pttl(hash_key) > 90_000
    feed = [(c.key, c.op) async for c in a.changes(None, groups=["g"], follow=False)]
    assert feed[-2:] == [("y", "set"), ("y", "delete")]
    # A batch's operations are writes each, as they are alone.
    await a.client.pexpire(hash_key, 5000)
    await a.batch("g", [{"type": "set", "key": "z", "value": 1}, {"type": "delete", "key": "z"}])
    assert await a.client.pttl(hash_key) > 90_000


@MODES
@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
async def test_a_damaged_entry_fails_only_its_own_combined_operation(
    make: Any, auto_pipeline: bool, functions: bool
) -> None:
    a = await make(auto_pipeline=auto_pipeline)
    a._program.functions = functions  # False: scripts, as on Redis < 7
    await a.set("g", "ok", 1)
    # Not JSON (written by something else): the program stops on it.
    await a.client.hset(a.hash_key("g"), "bad", b"abc")
    with pytest.raises(ms.InternalError):
        await a.increment("g", "bad")
    hold = await hold_the_group(a)
    results = await asyncio.gather(
        a.increment("g", "ok"), a.increment("g", "bad"), a.increment("g", "ok"), return_exceptions=True
    )
    assert await hold is None
    assert results[0] == 2 and results[2] == 3, results
    assert isinstance(results[1], ms.InternalError), results
    assert await a.get("g", "ok") == 3
    feed = [(c.key, c.new_value) async for c in a.changes(None, groups=["g"], follow=False)]
    assert feed[-2:] == [("ok", 2), ("ok", 3)], "each increment recorded once"


@MODES
async def test_operations_after_redis_dropped_the_idle_connections_succeed(
    redis_server: RedisServer, redis_prefix: str, auto_pipeline: bool
) -> None:
    name = f"review-{abs(hash(redis_prefix))}-{int(auto_pipeline)}"
    client = redis.asyncio.Redis.from_url(redis_server.url, client_name=name)
    a = ms.RedisStateAdapter(client=client, key_prefix=redis_prefix, auto_pipeline=auto_pipeline)
    killer = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        # Several groups at once: several pooled connections.
        assert await asyncio.gather(*(a.increment(f"g{i}", "n") for i in range(4))) == [1] * 4
        ids = [c["id"] for c in await killer.client_list() if c.get("name") == name]
        assert ids
        for client_id in ids:  # as a restart or the server's idle timeout does
            await killer.client_kill_filter(_id=client_id)
        await asyncio.sleep(0.1)
        # Nothing had been sent on them: the next operations get live connections.
        results = await asyncio.gather(*(a.increment(f"g{i}", "n") for i in range(4)), return_exceptions=True)
        assert results == [2] * 4
    finally:
        for i in range(4):
            await killer.delete(a.hash_key(f"g{i}"))
        await killer.aclose()
        await a.close()


async def test_closing_before_a_sending_task_starts_fails_what_waits() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[Any] = loop.create_future()
    sent: list[tuple[Any, ...]] = []

    async def send(keys: tuple[bytes, ...], header: bytes, group: bytes, stamp: bytes, *args: Any) -> Any:
        sent.append(args)
        if len(sent) == 1:
            return await first
        return [b"OK", len(args) // 4, *([b"=1"] * (len(args) // 4))]

    combiner = Combiner(send, redis.exceptions)
    keys = (b"h", b"s", b"z")

    def call(key: bytes) -> asyncio.Future[Any]:
        return asyncio.ensure_future(combiner.call(keys, b"one", b"batch", b"g", b"0", (b"increment", key, b"1")))

    alone = call(b"a")
    await asyncio.sleep(0)
    waiting = call(b"b")
    await asyncio.sleep(0)
    # The first reply and the close in one turn of the loop: the first
    # caller resumes and starts the task that sends what waits, and the
    # close cancels that task before it ever runs.
    first.set_result(b"=1")
    closing = asyncio.ensure_future(combiner.aclose())
    assert await alone == b"=1"
    await closing
    with pytest.raises(redis.exceptions.ConnectionError):
        await asyncio.wait_for(waiting, 2)
    assert len(sent) == 1, "what waited was never sent"


async def test_a_caller_cancelled_while_it_reads_gives_its_connection_back_once(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # The direct path: a pooled connection per call (the pipeline keeps one of its own).
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, auto_pipeline=False)
    blocker = redis.asyncio.Redis.from_url(redis_server.url)
    pool = a.client.connection_pool
    try:
        await a.increment("warm", "up")
        # The server answers no write until the pause is lifted below: the
        # pause is in effect once its reply arrives, however loaded the machine.
        await blocker.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        reading = asyncio.ensure_future(a.increment("g", "n"))
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert not pool._in_use_connections, "released"
        await blocker.execute_command("CLIENT", "UNPAUSE")
        # The reply owed to the cancelled call went with its connection: the next call reads its own.
        assert await a.increment("g", "m", 5) == 5
        assert len(pool._available_connections) == len(set(map(id, pool._available_connections)))
        assert not pool._in_use_connections
        assert await a.get("g", "n") in (None, 1)
    finally:
        await blocker.execute_command("CLIENT", "UNPAUSE")  # never left paused for the tests after
        await blocker.aclose()
        await a.client.delete(a.hash_key("g"))
        await a.close()


async def test_a_sending_task_cancelled_before_it_starts_leaves_nothing_waiting_forever() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[Any] = loop.create_future()
    sent: list[tuple[Any, ...]] = []

    async def send(keys: tuple[bytes, ...], header: bytes, group: bytes, stamp: bytes, *args: Any) -> Any:
        sent.append(args)
        if len(sent) == 1:
            return await first
        return b"=2"

    combiner = Combiner(send, redis.exceptions)
    keys = (b"h", b"s", b"z")

    def call(key: bytes) -> asyncio.Future[Any]:
        return asyncio.ensure_future(combiner.call(keys, b"one", b"batch", b"g", b"0", (b"increment", key, b"1")))

    alone = call(b"a")
    await asyncio.sleep(0)
    waiting = call(b"b")
    await asyncio.sleep(0)

    async def cancel_every_sender() -> None:
        # As code that cancels every task of the loop (and goes on) would.
        for task in list(combiner._drainers):
            task.cancel()

    first.set_result(b"=1")
    canceller = asyncio.ensure_future(cancel_every_sender())
    assert await alone == b"=1"
    await canceller
    with pytest.raises(redis.exceptions.ConnectionError):
        await asyncio.wait_for(waiting, 2)
    # The group is not left held: the next operation on it runs.
    assert await asyncio.wait_for(call(b"c"), 2) == b"=2"


async def test_operations_waiting_behind_a_call_redis_does_not_answer_fail_within_the_timeout(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    timeout = 1.0
    a = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, timeout=timeout)
    blocker = redis.asyncio.Redis.from_url(redis_server.url)
    loop = asyncio.get_running_loop()
    try:
        await a.increment("warm", "up")
        # The server answers no write until the pause is lifted below.
        await blocker.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")

        async def timed() -> float:
            start = loop.time()
            with pytest.raises(ms.UnavailableError):
                await a.increment("g", "n")
            return loop.time() - start

        first = asyncio.ensure_future(timed())
        await asyncio.sleep(0.05)
        behind = await asyncio.gather(*(timed() for _ in range(3)))
        assert await first < 2 * timeout
        # Alone, each would fail after one timeout; waiting behind the first
        # must not add the first one's timeout to its own.
        assert max(behind) < 1.6 * timeout, behind
        await blocker.execute_command("CLIENT", "UNPAUSE")
        assert await a.get("g", "n") in (None, 1), "those that waited were never sent"
    finally:
        await blocker.execute_command("CLIENT", "UNPAUSE")  # never left paused for the tests after
        await blocker.aclose()
        await a.client.delete(a.hash_key("g"))
        await a.close()


async def test_calls_with_other_headers_between_never_take_each_others_settings(make: Any) -> None:
    # The program keeps the last header it parsed; adapters of other limits,
    # TTLs and feed settings on one server alternate their calls.
    small = await make(limits=ms.Limits(max_value_bytes=40))
    large = await make(ttl=100, feed_retention=0)
    await small.set("g", "l", [])
    for i in range(6):
        assert await large.push("g", "big", "x" * 10) == ["x" * 10] * (i + 1)
        if i < 3:  # 13 * n + 1 bytes: three fit in 40
            assert await small.push("g", "l", "x" * 10) == ["x" * 10] * (i + 1)
        else:
            with pytest.raises(ms.LimitExceededError):
                await small.push("g", "l", "x" * 10)
        await small.feed_info()  # a reading mode between
    assert 0 < await large.client.pttl(large.hash_key("g")) <= 100_000
    feed = [(c.key, c.op) async for c in small.changes(None, groups=["g"], follow=False)]
    assert feed == [("l", "set")] + [("l", "push")] * 3, "the feed-off adapter's writes left no records"


async def test_a_malformed_call_header_is_refused_and_the_next_call_runs(make: Any) -> None:
    a = await make()
    keys = await a._keys("g")
    with pytest.raises(redis.exceptions.ResponseError, match="malformed call header"):
        await a._program(keys, b"one 0 0", b"g", b"0", b"set", b"k", b"1")
    with pytest.raises(redis.exceptions.ResponseError, match="malformed call header"):
        await a._program(keys, b"bogus 0 0 1000 1000 10 10", b"g", b"0", b"set", b"k", b"1")
    assert await a.increment("g", "k") == 1
