"""TriggerRunner in one process: matching, order, positions, retries, dead letters, the loop guard."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.errors import CursorExpiredError, InvalidArgumentError, NotFoundError
from motia_state.feed import write_context
from motia_state.records import Change
from motia_state.runtime import WorkerPool
from motia_state.triggers import TriggerRunner

FAST = {"backoff": 0.01, "lease": 1.0}


@pytest.fixture(params=["memory", "file", "redis", "redis-sharded"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ms.StateManager]:
    """A store of each kind, closed after the test.

    A sharded Redis feed has cursors with one number per shard, which the
    runner reads with one reader per partition instead of one shared reader.
    """
    if request.param == "memory":
        adapter: ms.StateAdapter = ms.MemoryStateAdapter()
    elif request.param == "file":
        adapter = ms.FileStateAdapter(str(tmp_path / "state"))
    else:
        server = request.getfixturevalue("redis_server")
        shards = 3 if request.param == "redis-sharded" else 1
        prefix = request.getfixturevalue("redis_prefix") + request.param
        adapter = ms.RedisStateAdapter(server.url, key_prefix=prefix, shards=shards)
    async with ms.StateManager(adapter) as manager:
        yield manager


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


def collector() -> tuple[list[Change], Callable[[Change], Awaitable[None]]]:
    seen: list[Change] = []

    async def handler(change: Change) -> None:
        seen.append(change)

    return seen, handler


async def test_a_matching_change_runs_the_handler_with_its_record(state: ms.StateManager) -> None:
    await state.set("u1", "score", 1)  # before the trigger: "from now" skips it
    seen, handler = collector()
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "score"}, handler)
        await state.set("u1", "score", 2)
        await state.set("u1", "other", 2)  # another key
        await state.set("u2", "score", 3)
        await state.delete("u2", "score")  # deleted: not in the default events
        await until(lambda: len(seen) == 2)
        await anyio.sleep(0.1)
    assert sorted((c.group, c.key, c.old_value, c.new_value, c.event) for c in seen) == [
        ("u1", "score", 1, 2, "updated"),
        ("u2", "score", None, 3, "created"),
    ]


async def test_a_plain_function_is_a_handler_and_runs_once() -> None:
    state = ms.StateManager()
    seen: list[str] = []
    async with TriggerRunner(state, attempts=2, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "score"}, lambda change: seen.append(change.group))
        await state.set("u1", "score", 1)
        await until(lambda: triggers.status()[0]["handled"] == 1)
        assert seen == ["u1"]
        assert triggers.dead_letters("t") == []


async def test_from_start_group_events_and_a_declarative_condition(state: ms.StateManager) -> None:
    await state.set("a", "score", 150)
    await state.set("b", "score", 200)
    seen, handler = collector()
    trigger = {
        "type": "state",
        "key": "score",
        "group": "a",
        "events": ["created", "updated", "deleted"],
        "condition": {"op": "gte", "value": 100},
        "from": "start",
    }
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", trigger, handler)
        await state.set("a", "score", 50)  # condition false
        await state.set("a", "score", 120)
        await state.set("b", "score", 300)  # another group
        await until(lambda: len(seen) == 2)
        await anyio.sleep(0.1)
    assert [c.new_value for c in seen] == [150, 120]


async def test_one_entry_runs_in_commit_order_one_at_a_time_and_entries_run_concurrently(
    state: ms.StateManager,
) -> None:
    running: dict[str, int] = {}
    peak = {"entry": 0, "all": 0}
    order: dict[str, list[int]] = {}

    async def handler(change: Change) -> None:
        running[change.group] = running.get(change.group, 0) + 1
        peak["entry"] = max(peak["entry"], running[change.group])
        peak["all"] = max(peak["all"], sum(running.values()))
        await anyio.sleep(0.02)
        order.setdefault(change.group, []).append(change.new_value)
        running[change.group] -= 1

    async with TriggerRunner(state, max_concurrency=4, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "n"}, handler)
        for i in range(5):
            for g in ("g1", "g2", "g3", "g4", "g5", "g6"):
                await state.set(g, "n", i)
        await until(lambda: sum(len(v) for v in order.values()) == 30)
    assert all(v == [0, 1, 2, 3, 4] for v in order.values())
    assert peak["entry"] == 1
    assert 1 < peak["all"] <= 4


async def test_a_restart_resumes_from_the_saved_position(state: ms.StateManager) -> None:
    seen, handler = collector()
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await state.set("g", "k", 1)
        await until(lambda: len(seen) == 1)
    await state.set("g", "k", 2)  # while no runner runs
    await state.set("g", "k", 3)
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await until(lambda: len(seen) == 3)
        await anyio.sleep(0.1)
    assert [c.new_value for c in seen] == [1, 2, 3]
    # Positions live in the reserved group, hidden from the public API, and
    # their writes make no feed records.
    assert not any(g.startswith("__motia/") for g in await state.groups())
    assert [(c.group, c.key) async for c in state.changes(follow=False)] == [("g", "k")] * 3


async def test_a_restart_resumes_every_partition_through_a_batch_of_many_keys(state: ms.StateManager) -> None:
    # Keys in every partition, written in one call (one stream entry on Redis): after a restart each
    # partition reads on from its saved position, the first one taken included.
    seen, handler = collector()
    trigger = {"type": "state", "key": "*"}
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", trigger, handler)
        await state.batch("g", [{"type": "set", "key": f"k{i}", "value": 1} for i in range(40)])
        await until(lambda: len(seen) == 40)
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", trigger, handler)
        await state.batch("g", [{"type": "set", "key": f"k{i}", "value": 2} for i in range(40)])
        await until(lambda: len(seen) == 80)
        await anyio.sleep(0.1)
    assert sorted((c.key, c.new_value) for c in seen) == sorted((f"k{i}", v) for i in range(40) for v in (1, 2))


async def test_a_position_is_saved_within_a_second() -> None:
    adapter = ms.MemoryStateAdapter()
    state = ms.StateManager(adapter)
    seen, handler = collector()
    async with TriggerRunner(state, partitions=1, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await state.set("g", "k", 1)
        await until(lambda: len(seen) == 1)
        # Saved every SAVE_EVERY (0.5 s) while the runner runs, not only when
        # it closes; the deadline leaves room for a loaded machine.
        expected = {"cursor": seen[0].cursor}
        deadline = anyio.current_time() + 5
        while (saved := await adapter.internal.get("__motia/triggers/t", "pos.0")) != expected:
            assert anyio.current_time() < deadline, saved
            await anyio.sleep(0.05)


async def test_a_failing_handler_is_retried_then_dead_lettered_and_a_retry_succeeds(
    state: ms.StateManager, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[int] = []
    healthy = {"yes": False}
    later, later_handler = collector()

    async def handler(change: Change) -> None:
        if change.new_value == "bad" and not healthy["yes"]:
            tries.append(1)
            raise RuntimeError("handler exploded")
        await later_handler(change)

    async with TriggerRunner(state, attempts=3, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await state.set("g", "k", "bad")
        await state.set("g", "k", "after")  # not blocked by the dead letter
        await until(lambda: len(later) == 1)
        assert len(tries) == 3
        [dead] = triggers.dead_letters("t")
        assert dead.change.new_value == "bad" and dead.attempts == 3 and "handler exploded" in dead.error
        assert triggers.status()[0]["deadLetters"] == 1
        healthy["yes"] = True
        assert await triggers.retry("t", dead.id) is True
        assert triggers.dead_letters("t") == []
        with pytest.raises(NotFoundError):
            await triggers.drop("t", dead.id)
    assert [c.new_value for c in later] == ["after", "bad"]  # a retried dead letter runs after later changes
    assert "attempt 1/3" in caplog.text


async def test_dead_letters_are_kept_in_the_store_and_can_be_dropped(state: ms.StateManager) -> None:

    async def handler(change: Change) -> None:
        raise RuntimeError("no")

    async with TriggerRunner(state, attempts=1, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await state.set("g", "k", 1)
        await until(lambda: len(triggers.dead_letters("t")) == 1)
    async with TriggerRunner(state, attempts=1, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        [dead] = triggers.dead_letters("t")
        assert dead.change.new_value == 1
        await triggers.drop("t", dead.id)
    async with TriggerRunner(state, attempts=1, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        assert triggers.dead_letters("t") == []


async def test_the_loop_guard_stops_a_trigger_that_writes_its_own_key(
    state: ms.StateManager, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    async def handler(change: Change) -> None:
        seen.append(change.depth)
        with write_context(change.depth + 1, {"step": "bump", "traceId": change.group}):
            await state.set(change.group, change.key, change.new_value + 1)

    caplog.set_level(logging.WARNING, "motia_state.triggers")
    async with TriggerRunner(state, max_depth=5, **FAST) as triggers:
        await triggers.add("bump", {"type": "state", "key": "n"}, handler)
        await state.set("g", "n", 0)
        await until(lambda: "max_depth 5" in caplog.text)
        await anyio.sleep(0.2)
    assert seen == [0, 1, 2, 3, 4]
    assert await state.get("g", "n") == 5
    assert "by step bump (traceId g)" in caplog.text


async def test_a_trigger_behind_the_retention_stops_with_cursor_expired_until_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = ms.StateManager(ms.MemoryStateAdapter(feed_retention=5))
    seen, handler = collector()
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await state.set("g", "k", 0)
        await until(lambda: len(seen) == 1)
        await anyio.sleep(0.7)  # saved
    for i in range(30):
        await state.set("g", "other", i)
    async with TriggerRunner(state, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await until(lambda: triggers.status()[0]["state"] == "CURSOR_EXPIRED")
        assert "triggers reset t" in caplog.text
        await state.set("g", "k", 1)
        await anyio.sleep(0.2)
        assert len(seen) == 1  # stopped, not silently skipping
        await triggers.reset("t", to="now")
        assert triggers.status()[0]["state"] == "running"
        await state.set("g", "k", 2)
        await until(lambda: len(seen) == 2)
    assert seen[-1].new_value == 2
    with pytest.raises(CursorExpiredError):
        async for _ in state.changes(after=seen[0].cursor, follow=False):
            pass


async def test_status_shows_position_lag_and_pending_age() -> None:
    state = ms.StateManager(ms.MemoryStateAdapter())
    gate = anyio.Event()

    async def handler(change: Change) -> None:
        await gate.wait()

    async with TriggerRunner(state, partitions=1, **FAST) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        first = (await state.feed_info())["last"]
        await state.set("g", "k", 1)
        await state.set("g", "k", 2)
        await anyio.sleep(0.7)
        # "behind" counts from the feed's last record, which the runner reads
        # on its save tick: wait for the tick rather than assume its timing.
        await until(lambda: triggers.status()[0]["behind"] == 2)
        [status] = triggers.status()
        assert status["name"] == "t" and status["state"] == "running"
        assert status["position"] == first
        assert status["behind"] == 2
        assert status["oldestPendingAge"] > 0.5
        gate.set()
        await until(lambda: triggers.status()[0]["oldestPendingAge"] is None)
        await anyio.sleep(0.6)
        assert triggers.status()[0]["behind"] == 0


async def test_bad_triggers_are_refused_with_the_field() -> None:
    state = ms.StateManager(ms.MemoryStateAdapter())
    _, handler = collector()
    async with TriggerRunner(state) as triggers:
        for bad, where in [
            ({"type": "state"}, "trigger.key"),
            ({"type": "state", "key": "k", "events": ["changed"]}, "trigger.events[0]"),
            ({"type": "state", "key": "k", "condition": {"op": "nope"}}, "trigger.condition"),
            ({"type": "state", "key": "k", "from": "later"}, "trigger.from"),
            ({"type": "state", "key": "k", "colour": 1}, "trigger.colour"),
        ]:
            with pytest.raises(InvalidArgumentError) as info:
                await triggers.add("t", bad, handler)
            assert where in info.value.message
        with pytest.raises(InvalidArgumentError):
            await triggers.add("n", {"type": "state", "key": "k", "condition": {"native": True}}, handler)
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        with pytest.raises(InvalidArgumentError):
            await triggers.add("t", {"type": "state", "key": "k"}, handler)


async def test_triggers_refuse_a_store_without_a_feed() -> None:
    state = ms.StateManager(ms.MemoryStateAdapter(feed_retention=0))
    with pytest.raises(InvalidArgumentError) as info:
        async with TriggerRunner(state):
            pass
    assert "change feed" in info.value.message


def test_the_runner_works_under_trio() -> None:
    async def main() -> list[Any]:
        state = ms.StateManager(ms.MemoryStateAdapter())
        seen, handler = collector()
        async with TriggerRunner(state, **FAST) as triggers:
            await triggers.add("t", {"type": "state", "key": "k"}, handler)
            await state.set("g", "k", 1)
            await until(lambda: len(seen) == 1)
        return [c.new_value for c in seen]

    assert anyio.run(main, backend="trio") == [1]


async def test_a_step_file_handler_gets_the_change_and_writes_one_level_deeper(tmp_path: Path) -> None:
    step = tmp_path / "echo.step.py"
    step.write_text(
        "async def handler(data, ctx):\n"
        "    await ctx.state.set(data['group'], 'seen', {k: data[k] for k in sorted(data)})\n"
    )
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with WorkerPool(state) as pool, TriggerRunner(state, pool, **FAST) as triggers:
        await triggers.add("echo", {"type": "state", "key": "k"}, step)
        await state.set("g", "k", 7)
        with anyio.fail_after(20):
            while await state.get("g", "seen") is None:
                await anyio.sleep(0.02)
    seen = await state.get("g", "seen")
    [change] = [c async for c in state.changes(follow=False, keys=["k"])]
    assert seen == {
        "key": "k",
        "value": 7,
        "traceId": "g",
        "depth": 0,
        "group": "g",
        "oldValue": None,
        "event": "created",
        "op": "set",
        "cursor": change.cursor,
        "at": change.at,
    }
    [written] = await state.history("g", "seen")
    assert written.depth == 1 and written.origin == {"step": "echo.step.py", "traceId": "g"}


async def test_old_value_is_omitted_when_both_values_would_not_fit_in_one_frame(tmp_path: Path) -> None:
    step = tmp_path / "size.step.py"
    step.write_text(
        "async def handler(data, ctx):\n"
        "    await ctx.state.set('out', data['cursor'], "
        "[len(data['value']), data['oldValue'] is None, data.get('oldValueOmitted', False)])\n"
    )
    big = 8 * 1024 * 1024 - 100  # as large as a value may be: two of them do not fit in a 16 MiB frame
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with WorkerPool(state) as pool, TriggerRunner(state, pool, **FAST) as triggers:
        await triggers.add("size", {"type": "state", "key": "k"}, step)
        await state.set("g", "k", "a" * big)
        await state.set("g", "k", "b" * big)
        await state.set("g", "k", "small")
        with anyio.fail_after(30):
            while len(await state.keys("out")) < 3:
                await anyio.sleep(0.05)
    got = [await state.get("out", key) for key in await state.keys("out")]
    assert sorted(got) == sorted([[big, True, False], [big, True, True], [5, False, False]])


async def test_closing_while_a_handler_runs_past_several_lease_renewals_is_clean() -> None:
    """Leases keep being renewed while close drains a handler; that renewal must not start new work or fail."""
    adapter = ms.MemoryStateAdapter()
    state = ms.StateManager(adapter)
    started = anyio.Event()
    finished: list[int] = []

    async def slow(change: Change) -> None:
        started.set()
        await anyio.sleep(1.0)
        finished.append(change.new_value)

    async with TriggerRunner(state, partitions=1, lease=0.2) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, slow)
        await state.set("g", "k", 1)
        await started.wait()
    assert finished == [1]
    saved = await adapter.internal.get("__motia/triggers/t", "pos.0")
    assert saved is not None and saved["cursor"]
