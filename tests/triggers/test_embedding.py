"""TriggerRunner embedded in an orchestrator's loop: cancelled, closed, re-entered, on asyncio and trio."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import motia_state as ms
from motia_state.triggers import TriggerRunner

BACKENDS = ["asyncio", "trio"]
TRIGGER = {"type": "state", "key": "k"}


async def _handled_by_a_new_runner(state: ms.StateManager) -> list[object]:
    """What a new runner of trigger "t" handles first: the change an interrupted one left pending."""
    handled: list[object] = []

    async def handler(change: ms.Change) -> None:
        handled.append(change.new_value)

    async with TriggerRunner(state) as triggers:
        await triggers.add("t", TRIGGER, handler)
        with anyio.fail_after(60):
            while not handled:
                await anyio.sleep(0.02)
    return handled


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("store", ["memory", "file"])
def test_a_change_whose_handler_the_host_cancelled_is_handled_after_a_restart(
    tmp_path: Path, backend: str, store: str
) -> None:
    async def main() -> None:
        adapter = ms.MemoryStateAdapter() if store == "memory" else ms.FileStateAdapter(str(tmp_path / "state"))
        async with ms.StateManager(adapter) as state:
            entered = anyio.Event()

            async def stuck(change: ms.Change) -> None:
                entered.set()
                await anyio.sleep(3600)

            # The orchestrator's own scope is cancelled (a shutdown, Ctrl-C) while the handler runs.
            with anyio.fail_after(60), anyio.CancelScope() as host:
                async with TriggerRunner(state) as triggers:
                    await triggers.add("t", TRIGGER, stuck)
                    await state.set("g", "k", 1)
                    await entered.wait()
                    host.cancel()
                    await anyio.sleep(3600)
            assert host.cancelled_caught

            assert await _handled_by_a_new_runner(state) == [1]

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_inside_the_runners_block_reaches_the_caller_as_raised(backend: str) -> None:
    async def main() -> None:
        state = ms.StateManager()

        async def handler(change: ms.Change) -> None:
            pass

        with pytest.raises(KeyError):
            async with TriggerRunner(state) as triggers:
                await triggers.add("t", TRIGGER, handler)
                raise KeyError("the orchestrator's own error")

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_runner_used_after_its_close_or_entered_again_says_so_with_a_code(backend: str) -> None:
    async def main() -> None:
        state = ms.StateManager()
        runner = TriggerRunner(state)

        async def handler(change: ms.Change) -> None:
            pass

        async with runner:
            await runner.add("t", TRIGGER, handler)
        await runner.__aexit__(None, None, None)  # closing twice is fine
        for late in (runner.add("u", TRIGGER, handler), runner.reset("t")):
            with pytest.raises(ms.UnavailableError, match="not running") as caught:
                await late
            assert caught.value.code == "UNAVAILABLE"
        with anyio.fail_after(30), pytest.raises(ms.UnavailableError, match="runs once"):
            async with runner:
                pass

    anyio.run(main, backend=backend)


class Interrupted(BaseException):
    """What a Ctrl-C or a SystemExit is to the runner: not an error of the program's own."""


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_interrupted_runner_stops_its_handlers_at_once_and_hands_their_changes_to_the_next_run(
    tmp_path: Path, backend: str
) -> None:
    async def main() -> None:
        async with ms.StateManager(ms.FileStateAdapter(str(tmp_path / "state"))) as state:
            entered = anyio.Event()

            async def stuck(change: ms.Change) -> None:
                entered.set()
                await anyio.sleep(3600)

            start = 0.0
            with pytest.raises(Interrupted):
                async with TriggerRunner(state) as triggers:
                    await triggers.add("t", TRIGGER, stuck)
                    await state.set("g", "k", 1)
                    with anyio.fail_after(60):
                        await entered.wait()
                    start = anyio.current_time()
                    raise Interrupted
            # Not the graceful close's wait for handlers (up to 30 s): they were cancelled.
            assert anyio.current_time() - start < 20

            assert await _handled_by_a_new_runner(state) == [1]

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("timeout", [-1, float("nan"), "30"])
def test_a_handler_timeout_that_is_not_a_number_of_seconds_is_refused_at_once(timeout: object) -> None:
    # Not accepted and then failing every handler run into dead letters.
    with pytest.raises(ms.InvalidArgumentError, match="timeout") as caught:
        TriggerRunner(ms.StateManager(), timeout=timeout)  # type: ignore[arg-type]
    assert caught.value.code == "INVALID_ARGUMENT"
