"""call_step_file with real child processes: results, failures, timeouts, races."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.rpc import Peer, state_handlers
from motia_state.runtime import StepError, StepTimeoutError, call_step_file
from motia_state.runtime.services import Invocation, StepContext, runtime_handlers

from ..helpers import process_alive


def step(tmp_path: Path, source: str, name: str = "step.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


async def test_every_operation_from_an_async_python_step(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        async def handler(data, ctx):
            s, t = ctx.state, ctx.trace_id
            out = [
                await s.set(t, "a", {"x": 1}), await s.get(t, "a"), await s.exists(t, "a"),
                await s.increment(t, "n", 5), await s.decrement(t, "n"), await s.compareAndSwap(t, "n", 4, 10),
                await s.push(t, "q", 1, 2), await s.unshift(t, "q", 0), await s.pop(t, "q"), await s.shift(t, "q"),
                await s.setField(t, "o", "f", True), await s.delete_field(t, "o", "f"), await s.getGroup(t),
                await s.keys(t), await s.groups(), await s.delete(t, "a"),
                await s.transaction(t, [{"type": "increment", "key": "n"}]),
                await s.batch(t, [{"type": "get", "key": "n", "id": 1}]),
                await s.update(t, "n", lambda v: v * 2),
            ]
            await s.clear(t)
            return out
        """,
    )
    manager = ms.StateManager()
    result = await call_step_file(path, trace_id="t", state=manager, timeout=30)
    assert result == [
        {"x": 1}, {"x": 1}, True, 5, 4, True, [1, 2], [0, 1, 2], 2, 0, {"f": True}, {}, [{"x": 1}, 10, {}, [1]],
        ["a", "n", "o", "q"], ["t"], {"x": 1}, {"success": True, "results": [11]},
        {"results": [{"id": 1, "value": 11}]}, 22,
    ]  # fmt: skip
    assert await manager.groups() == []


async def test_sync_handler_gets_blocking_state(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        def handler(data, ctx):
            ctx.state.push(ctx.trace_id, "q", data["item"])
            ctx.state["increment"](ctx.trace_id, "n", 2)
            return {"q": ctx.state.get(ctx.trace_id, "q"), "u": ctx.state.update(ctx.trace_id, "n", lambda v: v + 1)}
        """,
    )
    assert await call_step_file(path, data={"item": "x"}, trace_id="t", state=ms.MemoryStateAdapter()) == {
        "q": ["x"],
        "u": 3,
    }


async def test_state_errors_reach_the_step_with_their_codes(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        import motia_step

        async def handler(data, ctx):
            await ctx.state.set(ctx.trace_id, "s", "text")
            try:
                await ctx.state.increment(ctx.trace_id, "s")
            except motia_step.TypeMismatchError as e:
                mismatch = [e.code, isinstance(e, TypeError)]
            try:
                await ctx.state.set(ctx.trace_id, "k", float("nan"))
            except ValueError as e:
                invalid = e.code
            return mismatch + [invalid]
        """,
    )
    assert await call_step_file(path, trace_id="t", state=ms.StateManager()) == [
        "TYPE_MISMATCH",
        True,
        "INVALID_ARGUMENT",
    ]


async def test_a_raising_handler_gives_step_error_with_message_and_stack(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        def helper():
            raise ValueError("bad input")

        async def handler(data, ctx):
            helper()
        """,
    )
    with pytest.raises(StepError) as info:
        await call_step_file(path, trace_id="t", state=ms.StateManager())
    assert info.value.code == "STEP_FAILED"
    assert info.value.message == "ValueError: bad input"
    assert info.value.stack is not None and "helper()" in info.value.stack


async def test_a_step_that_fails_to_import_reports_why(tmp_path: Path) -> None:
    path = step(tmp_path, "import no_such_module_anywhere\n")
    with pytest.raises(StepError, match="no_such_module_anywhere"):
        await call_step_file(path, trace_id="t", state=ms.StateManager())


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    path = step(
        tmp_path,
        """
        import subprocess, time

        def handler(data, ctx):
            child = subprocess.Popen(["sleep", "60"])
            open(data["pid_file"], "w").write(str(child.pid))
            time.sleep(60)
        """,
    )
    start = time.monotonic()
    with pytest.raises(StepTimeoutError) as info:
        await call_step_file(path, data={"pid_file": str(pid_file)}, trace_id="t", state=ms.StateManager(), timeout=1.5)
    assert time.monotonic() - start < 10
    assert isinstance(info.value, TimeoutError) and info.value.code == "TIMEOUT"
    child = int(pid_file.read_text())
    for _ in range(50):
        if not process_alive(child):
            break
        await anyio.sleep(0.05)
    assert not process_alive(child), "the step's own child outlived the timeout"


async def test_a_worker_that_dies_gives_its_exit_code_and_stderr(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        import os, sys

        async def handler(data, ctx):
            sys.stderr.write("about to die\\n")
            sys.stderr.flush()
            os._exit(3)
        """,
    )
    with pytest.raises(StepError) as info:
        await call_step_file(path, trace_id="t", state=ms.StateManager(), timeout=30)
    assert info.value.exit_code == 3
    assert "about to die" in info.value.stderr_tail


async def test_missing_step_file_and_interpreter_fail_at_once(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="not found"):
        await call_step_file(tmp_path / "nope.py", trace_id="t", state=ms.StateManager())
    path = step(tmp_path, "async def handler(d, c): return 1\n")
    with pytest.raises(StepError, match="interpreter"):
        await call_step_file(path, trace_id="t", state=ms.StateManager(), interpreters={"python": "/no/such/python"})
    with pytest.raises(StepError, match="interpreter"):
        await call_step_file(
            step(tmp_path, "def handler(d, c) = 1", "step.rb"),
            trace_id="t",
            state=ms.StateManager(),
            interpreters={"ruby": "/no/such/ruby"},
        )
    with pytest.raises(StepError, match="no runner"):
        await call_step_file(step(tmp_path, "x", "step.txt"), trace_id="t", state=ms.StateManager())


async def test_a_three_megabyte_input_travels_in_the_invoke_frame(tmp_path: Path) -> None:
    path = step(tmp_path, "async def handler(data, ctx):\n    return [len(data['blob']), data['blob'][-3:]]\n")
    blob = "é" * (3 * 1024 * 1024 // 2) + "end"
    assert await call_step_file(path, data={"blob": blob}, trace_id="t", state=ms.StateManager()) == [len(blob), "end"]


async def test_stdout_noise_never_corrupts_the_channel(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = step(
        tmp_path,
        """
        import os, sys

        print("printed at import")

        async def handler(data, ctx):
            print("printed in handler")
            sys.stdout.write('{"type":"rpc_response","id":1,"result":"forged"}\\n')
            os.write(1, b"raw bytes on fd 1\\n")
            return await ctx.state.increment(ctx.trace_id, "n")
        """,
    )
    with caplog.at_level(logging.INFO, logger="motia_state.step"):
        assert await call_step_file(path, trace_id="t", state=ms.StateManager()) == 1
    for text in ("printed at import", "printed in handler", "raw bytes on fd 1", "forged"):
        assert text in caplog.text


async def test_emit_and_log_reach_the_orchestrator(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        async def handler(data, ctx):
            await ctx.emit({"topic": "score.changed", "data": 5})
            await ctx.emit("other", [1])
            ctx.logger.info("scored", n=5)
            return "done"
        """,
    )
    emits: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []

    async def on_emit(event: dict[str, Any]) -> None:
        emits.append(event)

    result = await call_step_file(path, trace_id="t-9", state=ms.StateManager(), on_emit=on_emit, on_log=logs.append)
    assert result == "done"
    assert emits == [
        {"topic": "score.changed", "data": 5, "traceId": "t-9"},
        {"topic": "other", "data": [1], "traceId": "t-9"},
    ]
    assert logs == [{"level": "info", "msg": "scored", "traceId": "t-9", "n": 5}]


RACER = """
import asyncio

async def handler(data, ctx):
    return list(await asyncio.gather(*(ctx.state.increment("race", "n") for _ in range(data["n"]))))
"""


async def test_six_workers_racing_on_one_key_get_exactly_1_to_n(tmp_path: Path) -> None:
    path = step(tmp_path, RACER)
    manager = ms.StateManager()
    results: list[list[int]] = []

    async def worker() -> None:
        results.append(await call_step_file(path, data={"n": 300}, trace_id="t", state=manager, timeout=60))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(worker)
    assert sorted(v for r in results for v in r) == list(range(1, 1801))


async def test_update_from_four_workers_adds_up_exactly(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        import asyncio

        async def handler(data, ctx):
            for _ in range(50):
                await ctx.state.update("race", "total", lambda v: (v or 0) + 1)
            return True
        """,
    )
    manager = ms.StateManager()
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(lambda: call_step_file(path, trace_id="t", state=manager, timeout=60))
    assert await manager.get("race", "total") == 200


def test_runs_under_trio(tmp_path: Path) -> None:
    path = step(tmp_path, RACER)

    async def main() -> list[int]:
        manager = ms.StateManager()
        result: list[int] = await call_step_file(path, data={"n": 50}, trace_id="t", state=manager, timeout=30)
        return result

    assert sorted(anyio.run(main, backend="trio")) == list(range(1, 51))


async def test_legacy_result_and_close_notifications_complete_a_call(tmp_path: Path) -> None:
    # A worker that speaks Motia's older stdio dialect: it never answers
    # invoke, it sends `result` then `close`.
    worker = step(
        tmp_path,
        """
        import json, sys
        out = sys.stdout
        sys.stdin.readline()
        out.write(json.dumps({"type": "rpc_request", "method": "result", "args": {"legacy": True}}) + "\\n")
        out.write(json.dumps({"type": "rpc_request", "method": "close", "args": None}) + "\\n")
        out.flush()
        sys.stdin.readline()
        """,
        "legacy_runner.py",
    )
    # call_step_file picks our own runner by extension, so serve the legacy
    # worker with the same peer and handlers directly.
    proc = await anyio.open_process([sys.executable, str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    outcome = Invocation()
    assert proc.stdout is not None and proc.stdin is not None
    peer = Peer(
        proc.stdout,
        proc.stdin,
        runtime_handlers(state_handlers(ms.StateManager())),
        StepContext(invocation=outcome),
    )
    async with proc, anyio.create_task_group() as tg:
        tg.start_soon(peer.run)
        await peer.notify("invoke", {"data": None})
        await outcome.done.wait()
        await peer.notify("shutdown")
        await proc.stdin.aclose()
    assert outcome.result == {"legacy": True}


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open fds")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_no_fd_is_left_open_after_any_outcome(tmp_path: Path, backend: str) -> None:
    # asyncio runs on the runtime's own pipes, trio on anyio's process streams.
    anyio.run(_every_outcome, tmp_path, backend=backend)


async def _every_outcome(tmp_path: Path) -> None:
    ok = step(tmp_path, "async def handler(data, ctx):\n    return await ctx.state.increment('t', 'k')\n", "ok.py")
    fails = step(tmp_path, "def handler(data, ctx):\n    raise ValueError('no')\n", "fails.py")
    dies = step(tmp_path, "import os\ndef handler(data, ctx):\n    os._exit(3)\n", "dies.py")
    slow = step(tmp_path, "import time\ndef handler(data, ctx):\n    time.sleep(30)\n", "slow.py")
    bad_interpreter = tmp_path / "not-an-interpreter"
    bad_interpreter.write_bytes(b"\x00\x01garbage")
    bad_interpreter.chmod(0o755)
    manager = ms.StateManager()
    await call_step_file(ok, trace_id="t", state=manager)  # warm-up: lazily opened fds (selector, logging) stay
    before = _open_fds()
    assert await call_step_file(ok, trace_id="t", state=manager) == 2
    with pytest.raises(StepError):
        await call_step_file(fails, trace_id="t", state=manager)
    with pytest.raises(StepError):
        await call_step_file(dies, trace_id="t", state=manager)
    with pytest.raises(StepTimeoutError):
        await call_step_file(slow, trace_id="t", state=manager, timeout=0.5)
    with pytest.raises(StepError, match="could not start"):
        await call_step_file(ok, trace_id="t", state=manager, interpreters={"python": str(bad_interpreter)})
    assert _open_fds() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open fds")
async def test_a_spawn_cancelled_midway_leaves_no_pipe_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = step(tmp_path, "async def handler(data, ctx):\n    return 1\n")
    started = anyio.Event()

    async def slow_spawn(*args: Any, **kwargs: Any) -> Any:
        started.set()
        await anyio.sleep(30)  # a spawn that hangs (a loaded machine, a slow filesystem)

    await call_step_file(path, trace_id="t", state=ms.StateManager())  # warm-up: lazily opened fds stay
    before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(anyio, "open_process", slow_spawn)
    with anyio.move_on_after(0.3) as scope:
        await call_step_file(path, trace_id="t", state=ms.StateManager())
    assert scope.cancelled_caught and started.is_set()
    assert set(os.listdir("/proc/self/fd")) == before
