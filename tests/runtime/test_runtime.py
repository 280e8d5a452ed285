"""call_step_file with real child processes: results, failures, timeouts, races."""

from __future__ import annotations

import contextlib
import json
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
from motia_state.runtime import StepError, StepTimeoutError, WorkerPool, call_step_file
from motia_state.runtime import worker as worker_module
from motia_state.runtime.checks import encode_invoke
from motia_state.runtime.services import Invocation, StepContext, handler_table, runtime_handlers
from motia_state.runtime.worker import StepWorker

from ..helpers import process_alive, require_tool


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
        # Time enough for a loaded machine to start the worker and write the pid file.
        await call_step_file(path, data={"pid_file": str(pid_file)}, trace_id="t", state=ms.StateManager(), timeout=4)
    assert time.monotonic() - start < 20  # the timeout, not the handler's 60 s
    assert isinstance(info.value, TimeoutError) and info.value.code == "TIMEOUT"
    child = int(pid_file.read_text())
    for _ in range(200):
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


async def test_a_python_step_logs_fields_as_motias_python_steps_do(tmp_path: Path) -> None:
    path = step(
        tmp_path,
        """
        def handler(data, ctx):
            ctx.logger.info("got", {"id": 1})
            ctx.logger.warn("odd", [1, 2], n=3)
            ctx.logger.error("plain")
        """,
    )
    logs: list[dict[str, Any]] = []
    await call_step_file(path, trace_id="t", state=ms.StateManager(), on_log=logs.append, timeout=30)
    assert logs == [
        {"level": "info", "msg": "got", "traceId": "t", "id": 1},
        {"level": "warning", "msg": "odd", "traceId": "t", "data": [1, 2], "n": 3},
        {"level": "error", "msg": "plain", "traceId": "t"},
    ]


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


# ------------------------------------------------------------ the frame limit


async def test_the_parent_tells_every_worker_its_frame_limit(tmp_path: Path) -> None:
    path = step(
        tmp_path, "import os\ndef handler(data, ctx):\n    return os.environ.get('MOTIA_STEP_MAX_FRAME_BYTES')\n"
    )
    manager = ms.StateManager()
    assert await call_step_file(path, trace_id="t", state=manager) == str(16 * 1024 * 1024)
    # The parent owns the setting: an env entry cannot make the two sides disagree.
    big = 64 * 1024 * 1024
    got = await call_step_file(
        path, trace_id="t", state=manager, max_frame_bytes=big, env={"MOTIA_STEP_MAX_FRAME_BYTES": "100"}
    )
    assert got == str(big)
    async with WorkerPool(manager, max_frame_bytes=big) as pool:
        assert await pool.call(path, trace_id="t") == str(big)


async def test_a_frame_limit_without_room_for_a_transactions_results_is_refused(tmp_path: Path) -> None:
    path = step(tmp_path, "def handler(data, ctx):\n    return 1\n")
    state = ms.StateManager(
        ms.MemoryStateAdapter(limits=ms.Limits(max_value_bytes=4 * 1024 * 1024, max_result_bytes=8 * 1024 * 1024))
    )
    too_small = 8 * 1024 * 1024 + 1024 * 1024 - 1
    with pytest.raises(ms.InvalidArgumentError, match="max_result_bytes"):
        await call_step_file(path, trace_id="t", state=state, max_frame_bytes=too_small)
    with pytest.raises(ms.InvalidArgumentError, match="max_result_bytes"):
        WorkerPool(state, max_frame_bytes=too_small)
    with pytest.raises(ms.InvalidArgumentError, match="max_result_bytes"):
        WorkerPool(ms.StateManager(), max_frame_bytes=15 * 1024 * 1024)  # the default limits: 15 MiB of results
    assert await call_step_file(path, trace_id="t", state=state, max_frame_bytes=too_small + 1) == 1


@pytest.mark.parametrize("method", ["transaction", "batch"])
async def test_results_too_big_for_a_frame_are_refused_before_anything_is_stored(tmp_path: Path, method: str) -> None:
    # Four pushes onto a 5 MB list: 20 MB of results, over the 15 MiB a
    # 16 MiB frame can carry back. Refused before the commit, so a step
    # that retries never applies them twice.
    path = step(
        tmp_path,
        """
        async def handler(data, ctx):
            ops = [{"type": "push", "key": "a", "items": [i], "id": i} for i in range(4)]
            try:
                result = await getattr(ctx.state, data)(ctx.trace_id, ops)
            except Exception as e:
                return ["raised", e.code]
            if data == "transaction":
                return ["result", result["success"], result.get("code")]
            return ["result", [item.get("code") for item in result["results"]]]
        """,
    )
    manager = ms.StateManager()
    await manager.set("t", "a", ["x" * 1000] * 5000)
    got = await call_step_file(path, data=method, trace_id="t", state=manager, timeout=60)
    assert "LIMIT_EXCEEDED" in json.dumps(got)
    assert len(await manager.get("t", "a")) == 5000  # nothing stored
    assert await manager.get("t", "a") == ["x" * 1000] * 5000


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "16"])
async def test_a_frame_limit_that_is_not_a_positive_integer_is_refused(tmp_path: Path, bad: Any) -> None:
    path = step(tmp_path, "def handler(data, ctx):\n    return 1\n")
    with pytest.raises(ms.InvalidArgumentError, match="max_frame_bytes"):
        await call_step_file(path, trace_id="t", state=ms.StateManager(), max_frame_bytes=bad)
    with pytest.raises(ms.InvalidArgumentError, match="max_frame_bytes"):
        WorkerPool(ms.StateManager(), max_frame_bytes=bad)


# ------------------------------------------------------------ the step's input


@pytest.mark.parametrize(
    "data",
    [float("nan"), float("inf"), -float("inf"), {"a": [1, float("nan")]}, b"bytes", {"k": b"x"}, {1: "int key"}],
    ids=["nan", "inf", "-inf", "nested-nan", "bytes", "nested-bytes", "int-key"],
)
async def test_an_input_that_is_not_json_is_refused_before_anything_starts(tmp_path: Path, data: Any) -> None:
    marker = tmp_path / "started"
    path = step(tmp_path, f"open({str(marker)!r}, 'w').close()\ndef handler(data, ctx):\n    return data\n")
    manager = ms.StateManager()
    with pytest.raises(ms.InvalidArgumentError, match="input"):
        await call_step_file(path, data=data, trace_id="t", state=manager)
    async with WorkerPool(manager) as pool:
        with pytest.raises(ms.InvalidArgumentError, match="input"):
            await pool.call(path, data=data, trace_id="t")
        assert pool.started == 0
    assert not marker.exists()


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_an_input_is_checked_without_recursion_and_reaches_the_step_as_deep_as_state_values_may_be_wrapped(
    tmp_path: Path,
) -> None:
    path = step(tmp_path, "def handler(data, ctx):\n    return data\n")
    manager = ms.StateManager()
    deep = _nest(256 + 64)  # a value as deep as state holds, wrapped in 64 more levels
    assert await call_step_file(path, data=deep, trace_id="t", state=manager) == deep
    cyclic: list[Any] = [1]
    cyclic.append({"again": cyclic})
    for data, error, text in [
        (_nest(256 + 65), ms.LimitExceededError, "nested deeper"),
        (_nest(100_000), ms.LimitExceededError, "nested deeper"),
        (cyclic, ms.InvalidArgumentError, "contains itself at \\$\\[1\\].again"),
        ({"k\ud800": 1}, ms.InvalidArgumentError, "key"),
        (["\udfff"], ms.InvalidArgumentError, "lone surrogate at \\$\\[0\\]"),
        (10**5000, ms.LimitExceededError, "cannot be encoded"),
    ]:
        with pytest.raises(error, match=text):
            await call_step_file(path, data=data, trace_id="t", state=manager)


async def run_stdio_worker(worker: Path, data: Any = None, state: ms.StateManager | None = None) -> Any:
    """One invocation of a worker speaking the protocol on stdin/stdout (no runner of ours)."""
    table = handler_table(state or ms.StateManager(), None)
    w = await StepWorker.start([sys.executable, str(worker)], worker.name, table)
    outcome: list[Any] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(w.serve)
            invoke = encode_invoke(worker.name, data, "t", 1 << 20, ms.Limits())
            try:
                outcome.append(await w.invoke(invoke, trace_id="t", timeout=20))
            except StepError as e:
                outcome.append(e)
            await w.stop(polite=not isinstance(outcome[0], StepError))
    finally:
        await w.close()
    if isinstance(outcome[0], StepError):
        raise outcome[0]
    return outcome[0]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_worker_not_written_by_us_speaks_on_stdin_and_stdout(tmp_path: Path, backend: str) -> None:
    # Motia's stdio mode: whatever the runner is, if it is not ours it gets
    # the protocol on fds 0 and 1 (and no private descriptors).
    worker = step(
        tmp_path,
        """
        import json, os, sys
        request = json.loads(sys.stdin.readline())
        reply = {"protocolFds": os.environ.get("MOTIA_STEP_PROTOCOL_FDS"), "data": request["args"]["data"]}
        sys.stdout.write(json.dumps({"type": "rpc_response", "id": request["id"], "result": reply}) + "\\n")
        sys.stdout.flush()
        sys.stdin.readline()
        """,
        "stdio_worker.py",
    )

    result = anyio.run(run_stdio_worker, worker, {"x": 1}, backend=backend)
    assert result == {"protocolFds": None, "data": {"x": 1}}


# ------------------------------------------- a detached child holding the pipes

DETACHING_STEP = """
import subprocess, sys, time

def handler(data, ctx):
    # A helper in a session of its own: the process group kill misses it,
    # and it holds the worker's stderr (and stdout) open.
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    open(data["pid_file"], "w").write(str(child.pid))
    sys.stderr.write("detached\\n")
    sys.stderr.flush()
    if data.get("hang"):
        time.sleep(60)
    return "done"
"""


@pytest.fixture
def pid_file(tmp_path: Path) -> Any:
    path = tmp_path / "detached.pid"
    yield path
    if path.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(path.read_text()), 9)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_detached_child_holding_stderr_does_not_hold_the_call(tmp_path: Path, pid_file: Path, backend: str) -> None:
    path = step(tmp_path, DETACHING_STEP)

    async def main() -> None:
        manager = ms.StateManager()
        start = time.monotonic()
        assert await call_step_file(path, data={"pid_file": str(pid_file)}, trace_id="t", state=manager) == "done"
        assert time.monotonic() - start < 10
        os.kill(int(pid_file.read_text()), 9)
        start = time.monotonic()
        pid_file.unlink()
        with pytest.raises(StepTimeoutError) as info:
            # Time enough for a loaded machine to start the worker and run the handler up to its hang.
            await call_step_file(
                path, data={"pid_file": str(pid_file), "hang": True}, trace_id="t", state=manager, timeout=4
            )
        assert time.monotonic() - start < 20
        assert "detached" in info.value.stderr_tail  # what it wrote before is still read
        os.kill(int(pid_file.read_text()), 9)
        start = time.monotonic()
        async with WorkerPool(manager) as pool:
            assert await pool.call(path, data={"pid_file": str(pid_file)}, trace_id="t") == "done"
        assert time.monotonic() - start < 10  # the pool's shutdown does not wait for it either

    anyio.run(main, backend=backend)


async def test_a_detached_node_child_does_not_hold_the_call(tmp_path: Path, pid_file: Path) -> None:
    require_tool("node")
    path = step(
        tmp_path,
        """
        const { spawn } = require('child_process')
        const fs = require('fs')
        exports.handler = async (data) => {
          const child = spawn('sleep', ['30'], { detached: true, stdio: 'inherit' })
          fs.writeFileSync(data.pid_file, String(child.pid))
          child.unref()
          return 'done'
        }
        """,
        "detaching.step.js",
    )
    start = time.monotonic()
    assert await call_step_file(path, data={"pid_file": str(pid_file)}, trace_id="t", state=ms.StateManager()) == "done"
    assert time.monotonic() - start < 10


async def test_a_worker_that_closed_its_output_but_runs_on_is_reported_as_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "EXIT_GRACE", 0.5)
    worker = step(
        tmp_path,
        """
        import os, sys, time
        sys.stdin.readline()
        os.close(1)
        time.sleep(30)
        """,
        "closes_stdout.py",
    )
    with pytest.raises(StepError) as info:
        await run_stdio_worker(worker)
    assert "None" not in info.value.message
    assert "was killed" in info.value.message and info.value.exit_code is None


# ------------------------------------------------- hostile frames from a worker

# Sends the requests in data["lines"] (raw JSON text), reads one reply per
# request that has an id, and answers invoke with {id: code or result}.
RAW_WORKER = """
import json, sys
invoke = json.loads(sys.stdin.readline())
lines = invoke["args"]["data"]["lines"]
for line in lines:
    sys.stdout.write(line + "\\n")
sys.stdout.flush()
got = {}
for _ in range(invoke["args"]["data"]["replies"]):
    reply = json.loads(sys.stdin.readline())
    got[str(reply["id"])] = reply["error"]["code"] if "error" in reply else reply["result"]
tail = invoke["args"]["data"].get("reply")
sys.stdout.write((tail or json.dumps({"type": "rpc_response", "id": invoke["id"], "result": got})) + "\\n")
sys.stdout.flush()
sys.stdin.readline()
"""


def raw_request(rid: str, method: str, args: str) -> str:
    return '{"type": "rpc_request", "id": ' + rid + ', "method": "' + method + '", "args": ' + args + "}"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_deeply_nested_frames_from_a_worker_get_limit_exceeded(tmp_path: Path, backend: str) -> None:
    worker = step(tmp_path, RAW_WORKER, "raw_worker.py")
    manager = ms.StateManager()
    lines = [
        raw_request('"deep"', "state.set", '{"traceId": "t", "key": "k", "value": ' + nested(1200) + "}"),
        raw_request('"deeper"', "state.set", '{"traceId": "t", "key": "k", "value": ' + nested(100_000) + "}"),
        raw_request('"reply"', "log", '{"msg": ' + nested(100_000) + "}"),
        raw_request('"after"', "state.increment", '{"traceId": "t", "key": "n"}'),
    ]
    got = anyio.run(run_stdio_worker, worker, {"lines": lines, "replies": 4}, manager, backend=backend)
    assert got == {"deep": "LIMIT_EXCEEDED", "deeper": "LIMIT_EXCEEDED", "reply": "LIMIT_EXCEEDED", "after": 1}
    assert anyio.run(manager.get, "t", "k", backend=backend) is None


@pytest.mark.parametrize("depth", [1200, 100_000])
async def test_a_deeply_nested_result_fails_the_call_not_the_parent(tmp_path: Path, depth: int) -> None:
    worker = step(tmp_path, RAW_WORKER, "raw_worker.py")
    reply = '{"type": "rpc_response", "id": 1, "result": ' + nested(depth) + "}"
    with pytest.raises(StepError, match="nested too deeply"):
        await run_stdio_worker(worker, {"lines": [], "replies": 0, "reply": reply})


async def test_a_node_step_setting_a_1200_deep_array_gets_limit_exceeded_in_a_pool(tmp_path: Path) -> None:
    require_tool("node")
    path = step(
        tmp_path,
        """
        exports.handler = async (data, ctx) => {
          let v = []
          for (let i = 1; i < data.depth; i++) v = [v]
          try { await ctx.state.set(ctx.traceId, 'k', v) } catch (e) { return e.code }
          return 'stored'
        }
        """,
        "deep.step.js",
    )
    manager = ms.StateManager()
    async with WorkerPool(manager) as pool:
        for _ in range(2):
            assert await pool.call(path, data={"depth": 1200}, trace_id="t", timeout=30) == "LIMIT_EXCEEDED"
        assert await pool.call(path, data={"depth": 3}, trace_id="t", timeout=30) == "stored"
        assert pool.started == 1  # the same worker throughout: nothing crashed
    assert await manager.get("t", "k") == [[[]]]


async def test_a_non_integer_request_id_is_never_rounded(tmp_path: Path) -> None:
    worker = step(tmp_path, RAW_WORKER, "raw_worker.py")
    lines = [
        raw_request("1.5", "state.get", '{"traceId": "t"}'),  # malformed args too: it would get an error reply
        raw_request("1e0", "state.get", '{"traceId": "t"}'),
        raw_request("123456789012345678901234", "state.get", '{"traceId": "t"}'),
        raw_request("7", "state.get", '{"traceId": "t"}'),
    ]
    got = await run_stdio_worker(worker, {"lines": lines, "replies": 2})
    # No reply went to id 1 nor to 12345678901234567890: the others are not ids.
    assert got == {"123456789012345678901234": "INVALID_ARGUMENT", "7": "INVALID_ARGUMENT"}


async def test_a_lone_surrogate_from_a_worker_is_invalid_argument_saying_so(tmp_path: Path) -> None:
    # What Node's JSON.stringify writes for a lone surrogate (a worker not written by us).
    worker = step(tmp_path, RAW_WORKER.replace('reply["error"]["code"]', 'reply["error"]'), "raw_worker.py")
    lines = [
        raw_request("1", "state.set", r'{"traceId": "t", "key": "k", "value": "\ud800"}'),
        raw_request("2", "state.set", r'{"traceId": "t", "key": "k", "value": "\udc00 low"}'),
        raw_request("3", "state.set", r'{"traceId": "t", "key": "\ud800k", "value": 1}'),
        raw_request("4", "state.set", r'{"traceId": "t", "key": "k", "value": "\ud83d\ude00"}'),  # a pair
    ]
    got = await run_stdio_worker(worker, {"lines": lines, "replies": 4})
    assert got.pop("4") == "\U0001f600"
    for rid, error in got.items():
        assert error["code"] == "INVALID_ARGUMENT", (rid, error)
        assert "a lone surrogate" in error["message"], (rid, error)


async def test_a_log_message_cannot_forge_lines_of_the_parents_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = step(
        tmp_path,
        r"""
        import sys
        def handler(data, ctx):
            ctx.logger.info("real\nERROR motia_state.step: [other.step.py] forged\r\x1b[2Kforged too", extra="a\nb")
            sys.stderr.write("stderr line\rforged\x1b[1A\n")
            sys.stderr.flush()
            return 1
        """,
    )
    with caplog.at_level(logging.INFO, logger="motia_state.step"):
        assert await call_step_file(path, trace_id="t", state=ms.StateManager()) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "motia_state.step"]
    assert any("real\\nERROR" in m and "forged\\r\\x1b[2Kforged too" in m for m in messages), messages
    assert any("stderr line\\rforged\\x1b[1A" in m for m in messages), messages
    assert not any(c in m for m in messages for c in "\n\r\x1b")


# A parent serving a worker that pipelines 300 gets of a 1 MiB value and
# never reads a reply; prints its own peak RSS (VmHWM) in MiB.
PIPELINING_PARENT = """
import sys, anyio
import motia_state as ms
from motia_state.runtime import StepTimeoutError
from motia_state.runtime.checks import encode_invoke
from motia_state.runtime.services import handler_table
from motia_state.runtime.worker import StepWorker

WORKER = '''
import json, sys, time
sys.stdin.readline()
get = json.dumps({"type": "rpc_request", "id": 0, "method": "state.get", "args": {"traceId": "t", "key": "big"}})
sys.stdout.write("".join(get.replace('"id": 0', '"id": %d' % i) + "\\\\n" for i in range(1, 301)))
sys.stdout.flush()
time.sleep(60)
'''

async def main():
    manager = ms.StateManager()
    await manager.set("t", "big", "x" * (1 << 20))
    w = await StepWorker.start([sys.executable, "-c", WORKER], "pipelining", handler_table(manager, None))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(w.serve)
            try:
                await w.invoke(encode_invoke("pipelining", None, "t", 1 << 24, ms.Limits()), trace_id="t", timeout=4)
            except StepTimeoutError:
                pass
    finally:
        await w.close()
    # VmHWM: this process's own peak (ru_maxrss would count the pytest process it was forked from).
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    print(int(status.split()[0]) // 1024)

anyio.run(main)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_a_worker_that_pipelines_without_reading_cannot_grow_the_parents_memory(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PIPELINING_PARENT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    peak_mib = int(out.stdout.strip())
    # The replies are 300 MiB in all; the parent holds a few of them at most.
    assert peak_mib < 120, out


async def test_a_method_name_or_junk_line_cannot_forge_lines_of_the_parents_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = step(tmp_path, RAW_WORKER, "raw_worker.py")
    lines = [
        '{"type": "rpc_request", "method": "nope\\nERROR forged", "args": null}',  # a notification nobody serves
        raw_request("1", "nope\\r\\nERROR forged", "null"),
        "junk\\rERROR forged \\u2028 too",
    ]
    with caplog.at_level(logging.INFO):
        assert await run_stdio_worker(worker, {"lines": lines, "replies": 1}) == {"1": "NOT_FOUND"}
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("motia_state")]
    assert sum("ERROR forged" in m for m in messages) >= 2, messages
    assert not any(c in m for m in messages for c in "\n\r\u2028")
