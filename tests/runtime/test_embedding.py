"""The embedding API used the way an orchestrator uses it: cancelled, closed, failing, on asyncio and trio."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.rpc import HandlerTable
from motia_state.runtime import StepError, StepTimeoutError, WorkerPool, call_step_file

BACKENDS = ["asyncio", "trio"]

# A step that asks the orchestrator's own method "wait", or counts.
STEP = """
async def handler(data, ctx):
    if (data or {}).get("mode") == "wait":
        return await ctx.call("wait", {})
    if (data or {}).get("mode") == "raise":
        raise ValueError("asked to fail")
    return await ctx.state.increment(ctx.trace_id, "n")
"""

# Far longer than any bound below: whatever waits for it, waits too long.
FOREVER = 3600


def step(tmp_path: Path, source: str = STEP, name: str = "waits.step.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def waiting_handlers() -> tuple[HandlerTable, anyio.Event]:
    """An orchestrator method that never answers: the event is set once a worker waits in it."""
    entered = anyio.Event()
    table = HandlerTable()

    async def wait(args: dict[str, Any], ctx: Any) -> None:
        entered.set()
        await anyio.sleep(FOREVER)

    table.register("wait", dict, wait)
    return table, entered


def run(backend: str, main: Callable[[], Awaitable[None]]) -> None:
    anyio.run(main, backend=backend)


# ------------------------------------------------- a worker killed while it is served


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_timeout_ends_the_call_while_an_orchestrator_method_still_serves_its_worker(
    tmp_path: Path, backend: str
) -> None:
    path = step(tmp_path)

    async def main() -> None:
        # The timeout counts from the spawn, so a loaded machine can spend it
        # all on the interpreter's start, before the step reaches the method:
        # then it is tried again with a longer one. Each try must time out.
        for timeout in (2.0, 10.0, 30.0):
            table, entered = waiting_handlers()
            with anyio.fail_after(timeout + 60):  # the step's timeout is what ends it, well before
                with pytest.raises(StepTimeoutError) as caught:
                    await call_step_file(
                        path,
                        data={"mode": "wait"},
                        trace_id="t",
                        state=ms.StateManager(),
                        handlers=table,
                        timeout=timeout,
                    )
            assert caught.value.code == "TIMEOUT"
            if entered.is_set():
                return
        pytest.fail("the step never reached the orchestrator's method before its timeout")

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pool_closes_after_a_call_cancelled_while_an_orchestrator_method_serves_it(
    tmp_path: Path, backend: str
) -> None:
    path = step(tmp_path)

    async def main() -> None:
        table, entered = waiting_handlers()
        with anyio.fail_after(60):
            async with WorkerPool(ms.StateManager(), handlers=table) as pool:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: pool.call(path, data={"mode": "wait"}, trace_id="t"))
                    await entered.wait()
                    tg.cancel_scope.cancel()
                # The pool serves on, and its close does not wait for the abandoned method.
                assert await pool.call(path, trace_id="t") == 1
                with pytest.raises(StepTimeoutError):
                    await pool.call(path, data={"mode": "wait"}, trace_id="t", timeout=1.0)

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_call_waiting_for_a_worker_when_the_pool_closes_is_unavailable_and_starts_nothing(
    tmp_path: Path, backend: str
) -> None:
    path = step(tmp_path)

    async def main() -> None:
        entered, release = anyio.Event(), anyio.Event()
        table = HandlerTable()

        async def wait(args: dict[str, Any], ctx: Any) -> str:
            entered.set()
            await release.wait()
            return "released"

        table.register("wait", dict, wait)
        outcomes: dict[str, Any] = {}

        async def call(name: str, pool: WorkerPool, data: Any) -> None:
            try:
                outcomes[name] = await pool.call(path, data=data, trace_id="t")
            except ms.StateError as e:
                outcomes[name] = e

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                async with WorkerPool(ms.StateManager(), max_workers=1, handlers=table) as pool:
                    tg.start_soon(call, "busy", pool, {"mode": "wait"})
                    await entered.wait()
                    tg.start_soon(call, "waiting", pool, None)
                    [slot] = pool._by_file.values()
                    while slot.limit.statistics().tasks_waiting < 1:
                        await anyio.sleep(0.01)

                    async def release_once_closing() -> None:
                        while not pool._closed:
                            await anyio.sleep(0.01)
                        release.set()

                    tg.start_soon(release_once_closing)
                started = pool.started
        assert outcomes["busy"] == "released"  # the call in progress finished
        waiting = outcomes["waiting"]
        assert isinstance(waiting, ms.UnavailableError) and waiting.code == "UNAVAILABLE"
        assert started == 1  # no worker was spawned for it

    run(backend, main)


class Interrupted(BaseException):
    """What a Ctrl-C or a SystemExit is to the pool: not an error of the program's own."""


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_interrupted_pool_kills_the_workers_of_calls_running_outside_its_block(tmp_path: Path, backend: str) -> None:
    path = step(tmp_path)

    async def main() -> None:
        table, entered = waiting_handlers()
        outcome: list[BaseException] = []

        async def call(pool: WorkerPool) -> None:
            try:
                await pool.call(path, data={"mode": "wait"}, trace_id="t")
            except StepError as e:
                outcome.append(e)

        with anyio.fail_after(30):  # the call never ends by itself: only the pool's close ends it
            async with anyio.create_task_group() as tg:  # the orchestrator's own tasks, outside the pool
                with pytest.raises(Interrupted):
                    async with WorkerPool(ms.StateManager(), handlers=table) as pool:
                        tg.start_soon(call, pool)
                        await entered.wait()
                        raise Interrupted
        [error] = outcome
        assert isinstance(error, StepError) and error.code == "STEP_FAILED"

    run(backend, main)


# ------------------------------------------------- what a caller catches


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_inside_the_pools_block_reaches_the_caller_as_raised(tmp_path: Path, backend: str) -> None:
    path = step(tmp_path)

    async def main() -> None:
        # Caught by its own type around the block, not wrapped in an exception group.
        with pytest.raises(StepError, match="asked to fail") as caught:
            async with WorkerPool(ms.StateManager()) as pool:
                await pool.call(path, data={"mode": "raise"}, trace_id="t")
        assert caught.value.code == "STEP_FAILED"
        with pytest.raises(KeyError):
            async with WorkerPool(ms.StateManager()):
                raise KeyError("the orchestrator's own error")

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pool_used_after_its_close_or_entered_again_says_so_with_a_code(tmp_path: Path, backend: str) -> None:
    path = step(tmp_path)

    async def main() -> None:
        pool = WorkerPool(ms.StateManager())
        async with pool:
            assert await pool.call(path, trace_id="t") == 1
            await pool.aclose()
            await pool.aclose()  # twice is fine
            with pytest.raises(ms.UnavailableError) as during:
                await pool.call(path, trace_id="t")
        assert during.value.code == "UNAVAILABLE"
        await pool.aclose()
        with pytest.raises(ms.UnavailableError, match="not running"):
            await pool.call(path, trace_id="t")
        with anyio.fail_after(30), pytest.raises(ms.UnavailableError, match="runs once") as again:
            async with pool:
                pass
        assert again.value.code == "UNAVAILABLE"

    run(backend, main)


# ------------------------------------------------- a state call cancelled by its caller


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_write_cancelled_while_a_listener_runs_still_reaches_the_other_listeners(backend: str) -> None:
    async def main() -> None:
        state = ms.StateManager()
        slow_heard: list[str] = []
        other_heard: list[str] = []
        entered = anyio.Event()

        async def slow(change: ms.StateChange) -> None:
            slow_heard.append(change.key)
            if change.key == "a":
                entered.set()
                await anyio.sleep(FOREVER)

        state.on_change(slow)
        state.on_change(lambda change: other_heard.append(change.key))
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(state.set, "g", "a", 1)
                await entered.wait()
                tg.cancel_scope.cancel()  # the writer's caller gives up while "slow" hears "a"
            await state.set("g", "b", 2)
        assert await state.get("g", "a") == 1
        assert other_heard == ["a", "b"]  # "a" was committed: every listener hears it
        assert slow_heard == ["a", "b"]  # once each: the cancelled one is not called again

    run(backend, main)


@pytest.mark.parametrize("trace_id", [None, 5, ""])
async def test_a_trace_id_that_is_not_a_non_empty_string_is_refused_before_a_process_starts(
    tmp_path: Path, trace_id: Any
) -> None:
    path = step(tmp_path)
    with pytest.raises(ms.InvalidArgumentError, match="trace_id") as caught:
        await call_step_file(path, trace_id=trace_id, state=ms.StateManager())
    assert caught.value.code == "INVALID_ARGUMENT"
    async with WorkerPool(ms.StateManager()) as pool:
        with pytest.raises(ms.InvalidArgumentError, match="trace_id"):
            await pool.call(path, trace_id=trace_id)
        assert pool.started == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pool_called_from_another_threads_event_loop_says_so_and_stays_usable(tmp_path: Path, backend: str) -> None:
    path = step(tmp_path)

    async def main() -> None:
        async with WorkerPool(ms.StateManager()) as pool:
            errors: list[BaseException] = []

            def from_another_loop() -> None:
                async def call() -> None:
                    try:
                        await pool.call(path, trace_id="t")
                    except ms.UnavailableError as e:
                        errors.append(e)

                anyio.run(call, backend=backend)

            with anyio.fail_after(60):
                await anyio.to_thread.run_sync(from_another_loop)
                [error] = errors
                assert error.code == "UNAVAILABLE" and "another thread" in error.message
                assert pool.started == 0
                assert await pool.call(path, trace_id="t") == 1  # its own loop's calls are served

    run(backend, main)
