"""Auto-pipelining in the Redis adapter, against a real redis-server.

Operations issued together from one process share round trips
(``motia_state.adapters.redis.program.AutoPipeline``); each stays its own
program call with its own result or error. These tests count the writes on
the socket itself, check every caller gets its own reply, and pin what
cancellation, a lost connection and a timeout do to the connection and to
the operations in flight.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

import motia_state as ms
from motia_state.adapters.redis.program import AutoPipeline, _Incomplete, pack, parse_reply, round_trip

from ..helpers import RedisClusterServers, RedisServer


@pytest.fixture
async def adapter(redis_server: RedisServer, redis_prefix: str) -> Any:
    a = ms.RedisStateAdapter(redis_server.url, auto_pipeline=True, key_prefix=redis_prefix)
    yield a
    await a.close()


async def written(pipeline: AutoPipeline) -> None:
    """Wait until the pipeline has written everything queued (its flusher runs on the same loop)."""
    deadline = time.monotonic() + 10
    while pipeline._queue:
        assert time.monotonic() < deadline, "the queued calls were never written"
        await asyncio.sleep(0.01)


def pipeline_of(adapter: ms.RedisStateAdapter) -> AutoPipeline:
    pipeline = adapter._pipeline
    assert pipeline is not None, "a plain client pipelines"
    return pipeline


async def count_socket_writes(adapter: ms.RedisStateAdapter) -> list[bytes]:
    """Every write the pipeline's connection makes from now on (the first call connects it)."""
    await adapter.increment("warm", "up")
    writer = pipeline_of(adapter)._conn._writer
    writes: list[bytes] = []
    write = writer.write

    def counted(data: bytes) -> None:
        writes.append(data)
        write(data)

    writer.write = counted
    return writes


# ----------------------------------------------------------- coalescing


async def test_concurrent_operations_share_round_trips(adapter: ms.RedisStateAdapter) -> None:
    writes = await count_socket_writes(adapter)
    # Each in a group of its own: operations meeting on one group are combined into one call first.
    results = await asyncio.gather(*(adapter.increment(f"g{i}", "k", i + 1) for i in range(64)))
    assert results == [i + 1 for i in range(64)]
    # The first is sent at once, alone; the other 63 queue behind it and go in one write.
    assert len(writes) == 2, [w.count(b"FCALL") for w in writes]
    assert [w.count(b"\r\nFCALL\r\n") for w in writes] == [1, 63]
    assert [await adapter.get(f"g{i}", "k") for i in range(64)] == [i + 1 for i in range(64)]


async def test_a_lone_operation_is_sent_at_once_by_its_caller(adapter: ms.RedisStateAdapter) -> None:
    writes = await count_socket_writes(adapter)
    pipeline = pipeline_of(adapter)
    for n in range(1, 6):
        assert await adapter.increment("g", "n") == n
        assert pipeline._flusher is None and not pipeline._active, "no task, nothing left owned"
    assert len(writes) == 5


async def test_tasks_in_a_loop_keep_sharing_round_trips(adapter: ms.RedisStateAdapter) -> None:
    pipeline = pipeline_of(adapter)
    await adapter.increment("warm", "up")
    writes, commands = pipeline.writes, pipeline.commands

    async def worker(i: int) -> list[int]:
        return [await adapter.increment(f"g{i}", "k", i) for _ in range(20)]

    results = await asyncio.gather(*(worker(i) for i in range(32)))
    assert results == [[i * n for n in range(1, 21)] for i in range(32)]
    assert pipeline.commands - commands == 32 * 20
    assert pipeline.writes - writes <= 32 * 20 / 8, "several operations per write"


async def test_reads_share_the_round_trips_of_writes(adapter: ms.RedisStateAdapter) -> None:
    await adapter.set("g", "doc", {"a": [1, 2]})
    writes = await count_socket_writes(adapter)
    got = await asyncio.gather(
        adapter.get("g", "doc"), adapter.exists("g", "doc"), adapter.exists("g", "nope"), adapter.get("g", "nope")
    )
    assert got == [{"a": [1, 2]}, True, False, None]
    assert len(writes) == 2


# --------------------------------------------------- each its own reply


async def test_each_operation_gets_its_own_result_or_error(adapter: ms.RedisStateAdapter) -> None:
    # A group each: operations meeting on one group are combined into one call first.
    for group, value in (("g1", "abc"), ("g2", [1]), ("g3", "abc"), ("g4", 5), ("g5", [1]), ("g6", [1, 2])):
        await adapter.set(group, "v", value)
    writes = await count_socket_writes(adapter)
    results = await asyncio.gather(
        adapter.increment("g0", "n", 5),
        adapter.increment("g1", "v"),
        adapter.push("g2", "v", 2),
        adapter.push("g3", "v", 1),
        adapter.compare_and_swap("g4", "v", 5, 6),
        adapter.set_field("g5", "v", "f", 1),
        adapter.pop("g6", "v"),
        adapter.get("g4", "v"),
        return_exceptions=True,
    )
    assert len(writes) == 2
    assert results[0] == 5
    assert isinstance(results[1], ms.TypeMismatchError) and results[1].code == "TYPE_MISMATCH"
    assert results[2] == [1, 2]
    assert isinstance(results[3], ms.TypeMismatchError)
    assert results[4] is True
    assert isinstance(results[5], ms.TypeMismatchError)
    assert results[6] == 2
    assert results[7] == 6
    assert await adapter.get("g1", "v") == "abc"


async def test_an_error_reply_fails_its_command_only(adapter: ms.RedisStateAdapter) -> None:
    pipeline = pipeline_of(adapter)
    await adapter.increment("warm", "up")
    results = await asyncio.gather(
        adapter.increment("g", "a"),
        pipeline.call(pack(b"NOSUCHCOMMAND", b"x")),
        pipeline.call(pack(b"PING")),
        adapter.increment("g", "a"),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[3] == 2
    assert isinstance(results[1], redis.exceptions.ResponseError) and "unknown command" in str(results[1])
    assert results[2] in (b"PONG", "PONG")


async def test_change_events_and_feed_records_per_operation(adapter: ms.RedisStateAdapter) -> None:
    events: list[ms.StateChange] = []
    adapter.add_change_sink(lambda changes: events.extend(changes))
    await adapter.increment("warm", "up")
    events.clear()
    await asyncio.gather(*(adapter.increment("g", f"k{i % 4}", 1) for i in range(40)))
    assert len(events) == 40
    for k in range(4):
        mine = [e for e in events if e.key == f"k{k}"]
        assert [e.new_value for e in mine] == list(range(1, 11))
        assert [e.old_value for e in mine] == [None, *range(1, 10)]
    feed = [c async for c in adapter.changes(None, groups=["g"], follow=False)]
    assert len(feed) == 40


async def test_concurrent_histories_stay_linearizable(adapter: ms.RedisStateAdapter) -> None:
    """Every task sees its own key grow by its own step, and a shared counter hands out each value once."""

    async def worker(i: int) -> tuple[list[int], list[int]]:
        own, shared = [], []
        for _ in range(15):
            own.append(await adapter.increment("g", f"own{i}", i + 1))
            shared.append(await adapter.increment("g", "shared"))
            assert await adapter.get("g", f"own{i}") == own[-1]
        return own, shared

    results = await asyncio.gather(*(worker(i) for i in range(24)))
    handed_out: list[int] = []
    for i, (own, shared) in enumerate(results):
        assert own == [(i + 1) * n for n in range(1, 16)]
        assert shared == sorted(shared), "a task's own increments come back in its order"
        handed_out += shared
    assert sorted(handed_out) == list(range(1, 24 * 15 + 1))


async def test_a_flushed_library_is_loaded_once_for_every_waiting_call(adapter: ms.RedisStateAdapter) -> None:
    await adapter.increment("g", "n")
    await adapter.client.function_flush()
    before = (await adapter.client.info("commandstats")).get("cmdstat_function|load", {}).get("calls", 0)
    results = await asyncio.gather(*(adapter.increment("g", f"k{i}") for i in range(32)))
    assert results == [1] * 32
    after = (await adapter.client.info("commandstats"))["cmdstat_function|load"]["calls"]
    assert after - before <= 2, "the calls that found it missing together share one load"


# ------------------------------------------------------------ cancellation


async def test_a_caller_cancelled_while_queued_is_never_sent(adapter: ms.RedisStateAdapter) -> None:
    pipeline = pipeline_of(adapter)
    await adapter.increment("warm", "up")
    # A slow lone command holds the round trip; the increments queue behind it.
    slow = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", adapter.key_prefix.encode() + b"nothing", b"0.8")))
    await asyncio.sleep(0.05)
    tasks = [asyncio.ensure_future(adapter.increment("g", f"k{i}")) for i in range(10)]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert await slow is None
    assert all(isinstance(r, asyncio.CancelledError) for r in done[::2])
    assert done[1::2] == [1] * 5
    assert [await adapter.get("g", f"k{i}") for i in range(10)] == [None, 1] * 5
    assert await adapter.increment("g", "after") == 1


async def test_a_caller_cancelled_after_its_write_leaves_the_connection_in_step(
    adapter: ms.RedisStateAdapter,
) -> None:
    pipeline = pipeline_of(adapter)
    key = adapter.key_prefix.encode() + b"nothing"
    await adapter.increment("warm", "up")
    lone = asyncio.ensure_future(adapter.increment("g", "first"))
    # Behind it in one write: a slow command, then increments whose callers are cancelled meanwhile.
    slow = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", key, b"0.8")))
    tasks = [asyncio.ensure_future(adapter.increment(f"g{i}", "k", i + 1)) for i in range(6)]
    assert await lone == 1
    await asyncio.sleep(0.1)  # written, the slow command holding the replies
    assert pipeline.commands >= 1 + 1 + 1 + 6
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await slow is None
    # Their replies were read and dropped: every later reply is its own caller's.
    assert [await adapter.get(f"g{i}", "k") for i in range(6)] == [i + 1 for i in range(6)]
    results = await asyncio.gather(*(adapter.increment(f"g{i}", "k") for i in range(6)))
    assert results == [i + 2 for i in range(6)]


async def test_a_lone_caller_cancelled_while_reading_drops_its_connection(adapter: ms.RedisStateAdapter) -> None:
    pipeline = pipeline_of(adapter)
    await adapter.increment("warm", "up")
    # 2 s: the reply must not have come when the caller is cancelled, even on a loaded machine.
    slow = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", adapter.key_prefix.encode() + b"nothing", b"2")))
    await asyncio.sleep(0.1)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    # The late BLPOP reply never reaches the next caller.
    assert await adapter.increment("g", "n") == 1
    assert await adapter.get("g", "n") == 1
    await asyncio.sleep(2)
    assert await adapter.increment("g", "n") == 2


async def test_closing_the_adapter_fails_queued_calls(redis_server: RedisServer, redis_prefix: str) -> None:
    a = ms.RedisStateAdapter(redis_server.url, auto_pipeline=True, key_prefix=redis_prefix)
    pipeline = pipeline_of(a)
    await a.increment("warm", "up")
    slow = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", redis_prefix.encode() + b"nothing", b"0.3")))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(a.increment("g", "n"))
    await asyncio.sleep(0)
    await a.close()
    with pytest.raises(ms.UnavailableError):
        await queued
    slow.cancel()
    await asyncio.gather(slow, return_exceptions=True)


async def test_closing_the_adapter_fails_calls_in_flight_as_unavailable_not_cancelled(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    a = ms.RedisStateAdapter(redis_server.url, auto_pipeline=True, key_prefix=redis_prefix)
    pipeline = pipeline_of(a)
    await a.increment("warm", "up")
    nothing = redis_prefix.encode() + b"nothing"
    written = pipeline.writes
    first = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", nothing, b"0.1")))
    await asyncio.sleep(0.02)
    # Queued behind the first: written together by the pipeline's own task once it returns,
    # the increments' replies then wait behind a second slow command.
    second = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", nothing, b"2")))
    calls = [asyncio.ensure_future(a.increment(f"g{i}", "n")) for i in range(5)]
    while pipeline.writes < written + 2:
        await asyncio.sleep(0.01)
    assert pipeline._flusher is not None and not pipeline._flusher.done()
    await a.close()
    results = await asyncio.gather(*calls, return_exceptions=True)
    # Nobody cancelled these callers: their outcome is unknown (written, maybe run), as after a lost connection.
    assert not any(call.cancelled() for call in calls)
    assert all(isinstance(r, ms.UnavailableError) for r in results), results
    await asyncio.gather(first, second, return_exceptions=True)


async def test_calls_after_close_fail_at_once_and_open_no_connection(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    pipeline = AutoPipeline(client, redis.exceptions)
    try:
        assert await pipeline.call(pack(b"PING")) == b"PONG"
        await pipeline.aclose()
        pool = client.connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        for _ in range(3):
            with pytest.raises(redis.exceptions.ConnectionError, match="the adapter was closed"):
                await asyncio.wait_for(pipeline.call(pack(b"PING")), 2)
        assert len(pool._available_connections) + len(pool._in_use_connections) == opened
        assert pipeline.writes == 1
    finally:
        await client.aclose()


async def test_closing_fails_a_lone_caller_reading_its_reply_and_keeps_that_connection_from_the_pool(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    pipeline = AutoPipeline(client, redis.exceptions)
    try:
        await pipeline.call(pack(b"PING"))
        lone = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", redis_prefix.encode() + b"nothing", b"30")))
        await asyncio.sleep(0.1)
        conn = pipeline._conn
        started = time.monotonic()
        await pipeline.aclose()
        with pytest.raises(redis.exceptions.ConnectionError, match="the adapter was closed"):
            await asyncio.wait_for(lone, 20)
        assert time.monotonic() - started < 10, "failed by the close, not answered after the BLPOP's 30 s"
        # Its reply was still owed: given back, it would reach whoever used that connection next.
        assert conn not in client.connection_pool._available_connections
        assert await client.ping(), "the client's other connections serve on"
    finally:
        await client.aclose()


async def test_a_connection_killed_under_a_pipeline_in_flight_fails_it_and_the_next_calls_reconnect(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    a = ms.RedisStateAdapter(redis_server.url, auto_pipeline=True, key_prefix=redis_prefix)
    pipeline = pipeline_of(a)
    await a.increment("warm", "up")
    nothing = redis_prefix.encode() + b"nothing"
    first = asyncio.ensure_future(pipeline.call(pack(b"PING")))
    # Queued behind the lone PING, then written together: a blocking command and increments.
    batch = [asyncio.ensure_future(pipeline.call(pack(b"BLPOP", nothing, b"30")))]
    batch += [asyncio.ensure_future(a.increment(f"g{i}", "k")) for i in range(8)]  # a group each: none combined
    assert await first == b"PONG"
    await written(pipeline)
    assert pipeline._flusher is not None, "written, waiting for their replies"
    killer = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        started = time.monotonic()
        assert await killer.client_kill_filter(_type="normal", skipme=True) >= 1
        results = await asyncio.wait_for(asyncio.gather(*batch, return_exceptions=True), 20)
    finally:
        await killer.aclose()
    assert time.monotonic() - started < 10, "failed as the connection went, not after the BLPOP's 30 s"
    assert isinstance(results[0], redis.exceptions.ConnectionError)
    assert all(isinstance(r, ms.UnavailableError) for r in results[1:]), results
    # Whatever ran before the kill ran once; the next calls take a fresh connection.
    again = await asyncio.gather(*(a.increment(f"g{i}", "k") for i in range(8)))
    assert all(v in (1, 2) for v in again)
    await a.close()


# ------------------------------------------------------ failures in flight


async def test_a_lost_connection_fails_the_operations_in_flight_with_unavailable(tmp_path: Path) -> None:
    server = RedisServer(str(tmp_path)).start()
    try:
        a = ms.RedisStateAdapter(server.url, auto_pipeline=True, timeout=10.0)
        pipeline = pipeline_of(a)
        await a.increment("warm", "up")
        lone = asyncio.ensure_future(a.increment("g", "first"))
        # Queued behind it, then written together: a slow command and the increments.
        slow = asyncio.ensure_future(pipeline.call(pack(b"BLPOP", b"nothing", b"30")))
        tasks = [asyncio.ensure_future(a.increment(f"g{i}", "k")) for i in range(16)]
        assert await lone == 1
        await written(pipeline)
        started = time.monotonic()
        server.stop(kill=True)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert time.monotonic() - started < 5, "failed at once, not after the 10 s timeout"
        assert all(isinstance(r, ms.UnavailableError) for r in results), results
        with pytest.raises(redis.exceptions.ConnectionError):
            await slow
        server.start()  # no persistence: a fresh, empty server on the same port
        assert await a.increment("g0", "k") == 1, "a fresh connection afterwards"
        assert await asyncio.gather(*(a.increment(f"g{i}", "k") for i in range(16))) == [2] + [1] * 15
        await a.close()
    finally:
        server.stop()


async def test_a_reply_that_does_not_come_is_unavailable_after_the_timeout(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    a = ms.RedisStateAdapter(redis_server.url, auto_pipeline=True, key_prefix=redis_prefix, timeout=0.2)
    pipeline = pipeline_of(a)
    await a.increment("warm", "up")
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        await pipeline.call(pack(b"BLPOP", redis_prefix.encode() + b"nothing", b"3"))
    assert time.monotonic() - started < 2.5, "the 0.2 s timeout, not the BLPOP's reply after 3 s"
    assert await a.increment("g", "n") == 1, "the connection was dropped, not left owing a reply"
    await asyncio.sleep(3)
    assert await a.increment("g", "n") == 2
    await a.close()


# ---------------------------------------------------------- the clients


async def test_auto_pipelining_is_on_by_default_and_can_be_turned_off(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    default = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix)
    off = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, auto_pipeline=False)
    try:
        writes = await count_socket_writes(default)
        # A group each: operations meeting on one group are combined into one call first.
        assert await asyncio.gather(*(default.increment(f"g{i}", "k") for i in range(20))) == [1] * 20
        assert len(writes) == 2, "the first alone, the other 19 together"
        assert off._pipeline is None
        # Without it each operation takes a round trip of its own, with the same results.
        assert await asyncio.gather(*(off.increment(f"g{i}", "k") for i in range(20))) == [2] * 20
        assert await off.get("g0", "k") == 2
    finally:
        await default.close()
        await off.close()
    with pytest.raises(ms.InvalidArgumentError, match="auto_pipeline: expected true or false"):
        ms.RedisStateAdapter(redis_server.url, auto_pipeline="yes")  # type: ignore[arg-type]


async def test_a_cluster_client_calls_each_operation_on_its_own(
    redis_cluster: RedisClusterServers, redis_prefix: str
) -> None:
    a = ms.RedisStateAdapter(
        auto_pipeline=True, url=f"redis://127.0.0.1:{redis_cluster.port}/0", cluster=True, key_prefix=redis_prefix
    )
    try:
        assert a._pipeline is None
        results = await asyncio.gather(*(a.increment(f"g{i % 5}", f"k{i}") for i in range(40)))
        assert results == [1] * 40
        assert await a.get("g0", "k0") == 1
    finally:
        await a.close()


async def test_a_single_connection_client_keeps_its_own_path(redis_server: RedisServer, redis_prefix: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url, single_connection_client=True)
    a = ms.RedisStateAdapter(auto_pipeline=True, client=client, key_prefix=redis_prefix)
    try:
        assert a._pipeline is None
        # Every increment applied once; which caller's lands first is the lock's choice.
        assert sorted(await asyncio.gather(*(a.increment("g", "n") for _ in range(10)))) == list(range(1, 11))
    finally:
        await a.close()


async def test_a_client_that_decodes_replies_is_refused_clearly(redis_server: RedisServer) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    with pytest.raises(ms.InvalidArgumentError, match="decode_responses=False"):
        ms.RedisStateAdapter(auto_pipeline=True, client=client)
    await client.aclose()


# ----------------------------------------------------------- the replies


def _resp(value: Any) -> bytes:
    if value is None:
        return b"_\r\n"
    if isinstance(value, bool):
        return b"#t\r\n" if value else b"#f\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, dict):
        return b"%%%d\r\n" % len(value) + b"".join(_resp(k) + _resp(v) for k, v in value.items())
    return b"*%d\r\n" % len(value) + b"".join(_resp(v) for v in value)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_values, min_size=1, max_size=5))
def test_replies_parse_back_and_any_cut_is_incomplete(values: list[Any]) -> None:
    stream = b"".join(_resp(v) for v in values)
    pos, parsed = 0, []
    while pos < len(stream):
        value, pos = parse_reply(stream, pos, Exception)
        parsed.append(value)
    assert parsed == values
    first_end = len(_resp(values[0]))
    for cut in range(first_end):
        with pytest.raises(_Incomplete):
            parse_reply(stream[:cut], 0, Exception)


def test_resp2_forms_and_errors_parse() -> None:
    stream = b"$-1\r\n*-1\r\n+OK\r\n-ERR wrong\r\n:-7\r\n,1.5\r\n=8\r\ntxt:abcd\r\n*2\r\n$1\r\na\r\n-NOSCRIPT x\r\n"
    pos, out = 0, []
    while pos < len(stream):
        value, pos = parse_reply(stream, pos, redis.exceptions.ResponseError)
        out.append(value)
    assert out[:3] == [None, None, b"OK"]
    assert isinstance(out[3], redis.exceptions.ResponseError) and str(out[3]) == "ERR wrong"
    assert out[4:7] == [-7, 1.5, b"abcd"]
    assert out[7][0] == b"a" and isinstance(out[7][1], redis.exceptions.ResponseError)
    with pytest.raises(ValueError, match="not a Redis reply"):
        parse_reply(b"?what\r\n", 0, Exception)


async def test_bytes_that_are_no_reply_drop_the_connection_and_fail_as_unavailable(
    adapter: ms.RedisStateAdapter,
) -> None:
    pipeline = pipeline_of(adapter)
    await adapter.increment("warm", "up")
    reader = pipeline._conn._reader
    # The next read finds garbage before the real reply.
    reader.feed_data(b"?garbage\r\n")
    pipeline._conn.can_read = _never  # let the garbage reach the parser
    with pytest.raises(ms.UnavailableError, match="not a Redis reply"):
        await adapter.increment("g", "n")
    assert not pipeline._conn.is_connected, "dropped: it was out of step"
    del pipeline._conn.can_read
    assert await adapter.increment("g", "n") in (1, 2), "a fresh connection afterwards"


async def _never() -> bool:
    return False


async def test_a_large_value_is_read_in_whole_before_it_is_parsed_again(
    adapter: ms.RedisStateAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply of many reads is parsed once it can be whole, not once per read (which is quadratic)."""
    from motia_state.adapters.redis import program

    big = "x" * (4 * 1024 * 1024)
    await adapter.set("g", "big", big)
    parses: list[int] = []

    def counted(buf: bytes, pos: int, error: Any) -> tuple[Any, int]:
        parses.append(len(buf))
        return parse_reply(buf, pos, error)

    monkeypatch.setattr(program, "parse_reply", counted)
    assert await adapter.get("g", "big") == big
    assert len(parses) <= 3, f"{len(parses)} parses of a 4 MiB reply"


async def test_an_unreachable_client_given_to_the_adapter_is_named_in_the_error() -> None:
    import redis.asyncio

    client = redis.asyncio.Redis(host="127.0.0.1", port=1, db=2, socket_connect_timeout=1)
    a = ms.RedisStateAdapter(auto_pipeline=True, client=client)
    try:
        with pytest.raises(ms.UnavailableError, match=r"redis://127\.0\.0\.1:1/2"):
            await a.get("g", "k")
    finally:
        await a.close()


@pytest.mark.parametrize("auto_pipeline", [True, False])
async def test_push_messages_reach_no_caller(redis_server: RedisServer, redis_prefix: str, auto_pipeline: bool) -> None:
    """A RESP3 client's connection may get pushes (here: client-side caching invalidations): they answer no command.

    Each write below invalidates the hash this connection has just read,
    so Redis pushes an invalidation into the stream of replies: no caller
    may take it for its reply, alone or sharing a round trip (or, without
    the pipeline, on the pooled connection each call takes in turn).
    """
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url, protocol=3)
    a = ms.RedisStateAdapter(client=client, key_prefix=redis_prefix, auto_pipeline=auto_pipeline)
    tracking = pack(b"CLIENT", b"TRACKING", b"ON")

    async def track() -> Any:
        if auto_pipeline:
            return await pipeline_of(a).call(tracking)
        return await round_trip(client.connection_pool, tracking, redis.exceptions)

    try:
        for i in range(1, 30):
            assert await track() == b"OK"
            assert await a.get("g", "n") == (i - 1 if i > 1 else None)  # tracked from here on
            assert await a.increment("g", "n") == i  # invalidated: a push on this connection
        n = 29
        for _ in range(10):
            assert await track() == b"OK"
            assert await a.get("g", "n") == n
            # The first goes alone (and invalidates nothing); the rest share round trips with the pushes.
            increments = [a.increment("g", "n") for _ in range(8)]
            got = await asyncio.gather(a.get("other", "m"), *increments, *(a.get("g", "m") for _ in range(8)))
            assert got[0] is None
            assert sorted(got[1:9]) == list(range(n + 1, n + 9))
            assert got[9:] == [None] * 8
            n += 8
    finally:
        await a.close()
