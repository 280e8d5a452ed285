"""WorkerPool: warm workers reused across invocations, replaced when they fail."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import StepError, StepTimeoutError, WorkerPool, call_step_file
from motia_state.runtime import worker as worker_module

from ..helpers import process_alive, require_tool

# A step whose module-level counter shows whether its process was reused.
PY_STEP = """
import asyncio, os, time

calls = 0

async def handler(data, ctx):
    global calls
    calls += 1
    mode = (data or {}).get("mode")
    if mode == "raise":
        raise ValueError("asked to fail")
    if mode == "die":
        os._exit(7)
    if mode == "hang":
        time.sleep(60)
    if mode == "sleep":
        await asyncio.sleep(data["seconds"])
    await ctx.emit({"topic": "seen", "data": (data or {}).get("tag")})
    ctx.logger.info("called", tag=(data or {}).get("tag"))
    return {"pid": os.getpid(), "calls": calls, "n": await ctx.state.increment(ctx.trace_id, "n")}
"""


def step(tmp_path: Path, source: str = PY_STEP, name: str = "counter.step.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


async def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        await anyio.sleep(0.02)
    return False


async def test_a_warm_worker_serves_the_next_call_of_its_step(tmp_path: Path) -> None:
    path = step(tmp_path)
    async with WorkerPool(ms.StateManager()) as pool:
        first = await pool.call(path, trace_id="t")
        second = await pool.call(path, trace_id="t")
        assert first["pid"] == second["pid"]
        assert (first["calls"], second["calls"]) == (1, 2)  # the module stayed loaded
        assert (first["n"], second["n"]) == (1, 2)
        assert pool.started == 1
        assert pool.idle_workers(path) == 1
    assert await wait_gone(first["pid"]), "the pool's exit shuts its workers down"


async def test_at_most_max_workers_run_and_each_call_gets_its_own_hooks(tmp_path: Path) -> None:
    path = step(tmp_path)
    emitted: dict[int, list[Any]] = {i: [] for i in range(6)}
    logged: dict[int, list[Any]] = {i: [] for i in range(6)}
    results: dict[int, Any] = {}
    async with WorkerPool(ms.StateManager(), max_workers=2) as pool:

        async def one(i: int) -> None:
            results[i] = await pool.call(
                path,
                data={"mode": "sleep", "seconds": 0.2, "tag": i},
                trace_id=f"t{i}",
                on_emit=emitted[i].append,
                on_log=logged[i].append,
            )

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
        assert pool.started == 2
    calls: dict[int, list[int]] = {}
    for r in results.values():
        calls.setdefault(r["pid"], []).append(r["calls"])
    # Two workers served the six calls, each counting its own from 1. How
    # they split them depends on which started first (on a loaded machine,
    # one may serve four), so only that split is left open.
    assert len(calls) == 2
    assert all(sorted(counts) == list(range(1, len(counts) + 1)) for counts in calls.values()), calls
    for i in range(6):
        assert emitted[i] == [{"topic": "seen", "data": i, "traceId": f"t{i}"}]
        assert [(r["msg"], r["tag"]) for r in logged[i]] == [("called", i)]


async def test_a_handler_that_raises_keeps_its_worker(tmp_path: Path) -> None:
    path = step(tmp_path)
    async with WorkerPool(ms.StateManager()) as pool:
        with pytest.raises(StepError, match="asked to fail") as info:
            await pool.call(path, data={"mode": "raise"}, trace_id="t")
        assert "ValueError" in (info.value.stack or "")
        after = await pool.call(path, trace_id="t")
        assert after["calls"] == 2
        assert pool.started == 1


async def test_a_worker_that_dies_is_reported_and_replaced(tmp_path: Path) -> None:
    path = step(tmp_path)
    async with WorkerPool(ms.StateManager()) as pool:
        first = await pool.call(path, trace_id="t")
        with pytest.raises(StepError) as info:
            await pool.call(path, data={"mode": "die"}, trace_id="t")
        assert info.value.exit_code == 7
        assert await wait_gone(first["pid"])
        again = await pool.call(path, trace_id="t")
        assert again["pid"] != first["pid"] and again["calls"] == 1
        assert pool.started == 2


async def test_a_timeout_kills_the_worker_and_the_next_call_gets_a_fresh_one(tmp_path: Path) -> None:
    path = step(tmp_path)
    async with WorkerPool(ms.StateManager()) as pool:
        first = await pool.call(path, trace_id="t")
        start = time.monotonic()
        with pytest.raises(StepTimeoutError):
            await pool.call(path, data={"mode": "hang"}, trace_id="t", timeout=0.5)
        assert time.monotonic() - start < 5
        assert await wait_gone(first["pid"])
        again = await pool.call(path, trace_id="t")
        assert again["pid"] != first["pid"]


async def test_idle_workers_are_shut_down_after_idle_timeout(tmp_path: Path) -> None:
    path = step(tmp_path)
    async with WorkerPool(ms.StateManager(), idle_timeout=0.3) as pool:
        first = await pool.call(path, trace_id="t")
        assert pool.idle_workers() == 1
        assert await wait_gone(first["pid"], 5.0)
        assert pool.idle_workers() == 0
        again = await pool.call(path, trace_id="t")  # a new one starts on demand
        assert again["pid"] != first["pid"]


def test_the_pool_runs_under_trio(tmp_path: Path) -> None:
    path = step(tmp_path)

    async def main() -> list[int]:
        async with WorkerPool(ms.StateManager()) as pool:
            calls = [(await pool.call(path, trace_id="t"))["calls"] for _ in range(3)]
            with pytest.raises(StepTimeoutError):
                await pool.call(path, data={"mode": "hang"}, trace_id="t", timeout=0.3)
            calls.append((await pool.call(path, trace_id="t"))["calls"])  # a fresh worker
            return calls

    assert anyio.run(main, backend="trio") == [1, 2, 3, 1]


@pytest.mark.parametrize(
    ("language", "name", "source"),
    [
        (
            "node",
            "counter.step.js",
            "let calls = 0\nexports.handler = async (data, ctx) => ({ pid: process.pid, calls: ++calls })\n",
        ),
        (
            "ruby",
            "counter.step.rb",
            "$calls = 0\ndef handler(data, ctx)\n  $calls += 1\n  { 'pid' => Process.pid, 'calls' => $calls }\nend\n",
        ),
    ],
)
async def test_node_and_ruby_workers_stay_warm_too(tmp_path: Path, language: str, name: str, source: str) -> None:
    require_tool(language)
    path = step(tmp_path, source, name)
    async with WorkerPool(ms.StateManager()) as pool:
        results = [await pool.call(path, trace_id="t") for _ in range(3)]
    assert [r["calls"] for r in results] == [1, 2, 3]
    assert len({r["pid"] for r in results}) == 1


async def test_bad_settings_and_use_outside_the_context_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ms.InvalidArgumentError, match="max_workers"):
        WorkerPool(ms.StateManager(), max_workers=0)
    with pytest.raises(ms.InvalidArgumentError, match="idle_timeout"):
        WorkerPool(ms.StateManager(), idle_timeout=float("nan"))
    pool = WorkerPool(ms.StateManager())
    with pytest.raises(ms.UnavailableError):
        await pool.call(step(tmp_path), trace_id="t")
    async with pool:
        with pytest.raises(StepError, match="not found"):
            await pool.call(tmp_path / "missing.step.py", trace_id="t")
    with pytest.raises(ms.UnavailableError):
        await pool.call(step(tmp_path), trace_id="t")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open fds")
async def test_no_fd_or_process_outlives_the_pool(tmp_path: Path) -> None:
    path = step(tmp_path)
    async with WorkerPool(ms.StateManager()) as pool:
        await pool.call(path, trace_id="t")  # warm-up: lazily opened fds stay
    before = set(os.listdir("/proc/self/fd"))
    pids = []
    async with WorkerPool(ms.StateManager(), max_workers=3) as pool:
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(lambda i=i: pool.call(path, data={"mode": "sleep", "seconds": 0.1}, trace_id=f"t{i}"))
        pids = [(await pool.call(path, trace_id="t"))["pid"]]
        with pytest.raises(StepError):
            await pool.call(path, data={"mode": "die"}, trace_id="t")
    assert set(os.listdir("/proc/self/fd")) == before
    for pid in pids:
        assert await wait_gone(pid)


async def test_one_file_by_two_paths_shares_its_workers_and_a_removed_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = step(tmp_path)
    monkeypatch.chdir(tmp_path)
    async with WorkerPool(ms.StateManager(), idle_timeout=0.2) as pool:
        a = await pool.call(path, trace_id="t")
        b = await pool.call("counter.step.py", trace_id="t")
        assert a["pid"] == b["pid"] and pool.started == 1
        assert await wait_gone(a["pid"], 5.0)  # idled out
        path.unlink()
        with pytest.raises(StepError, match="not found"):
            await pool.call(path, trace_id="t")


# Blocks its own event loop, so it cannot even read a polite "shutdown".
SLEEPER = """
import os

async def handler(data, ctx):
    with open(data["pidfile"], "w") as f:
        f.write(str(os.getpid()))
    while True:
        pass
"""


@pytest.mark.parametrize("pooled", [False, True], ids=["call_step_file", "WorkerPool"])
async def test_cancelling_a_call_kills_its_worker_at_once(
    tmp_path: Path, pooled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from motia_state.runtime import call_step_file

    # A grace far longer than the bound below: a worker given it (it never
    # answers a shutdown request) would take it all.
    monkeypatch.setattr(worker_module, "EXIT_GRACE", 30.0)
    path = step(tmp_path, SLEEPER, "sleeper.step.py")
    pidfile = tmp_path / "pid"
    args = {"data": {"pidfile": str(pidfile)}, "trace_id": "t"}
    async with WorkerPool(ms.StateManager()) as pool:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                if pooled:
                    await pool.call(path, **args)
                else:
                    await call_step_file(path, state=ms.StateManager(), **args)

            tg.start_soon(call)
            # Cancel once the handler runs (the worker's start takes what the machine gives it).
            with anyio.fail_after(30):
                while not pidfile.exists() or not pidfile.read_text():
                    await anyio.sleep(0.02)
            start = time.monotonic()
            tg.cancel_scope.cancel()
        elapsed = time.monotonic() - start
        assert pool.idle_workers() == 0
    assert elapsed < 10, "the worker was killed, not given the shutdown grace"
    assert await wait_gone(int(pidfile.read_text()))


async def test_one_relative_name_in_two_folders_is_two_step_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    step(tmp_path / "a", "async def handler(data, ctx):\n    return 'a'\n", "same.step.py")
    step(tmp_path / "b", "async def handler(data, ctx):\n    return 'b'\n", "same.step.py")
    async with WorkerPool(ms.StateManager()) as pool:
        monkeypatch.chdir(tmp_path / "a")
        assert await pool.call("same.step.py", trace_id="t") == "a"
        monkeypatch.chdir(tmp_path / "b")
        assert await pool.call("same.step.py", trace_id="t") == "b"
        assert pool.started == 2


async def test_an_edited_step_file_gets_fresh_workers(tmp_path: Path) -> None:
    source = "import os\nasync def handler(data, ctx):\n    return [os.getpid(), {version}]\n"
    path = step(tmp_path, source.format(version=1), "edited.step.py")
    async with WorkerPool(ms.StateManager()) as pool:
        pid, version = await pool.call(path, trace_id="t")
        assert version == 1
        assert (await pool.call(path, trace_id="t"))[0] == pid  # unchanged: warm
        path.write_text(source.format(version=2))  # same size: only the mtime tells
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        new_pid, version = await pool.call(path, trace_id="t")
        assert (new_pid != pid, version) == (True, 2)
        assert await wait_gone(pid)
        assert pool.started == 2


async def test_a_relative_path_names_the_parents_file_whatever_the_workers_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    step(tmp_path / "here", "async def handler(data, ctx):\n    return 'here'\n", "same.step.py")
    step(tmp_path / "there", "async def handler(data, ctx):\n    return 'there'\n", "same.step.py")
    monkeypatch.chdir(tmp_path / "here")
    other = tmp_path / "there"
    assert await call_step_file("same.step.py", trace_id="t", state=ms.StateManager(), cwd=other) == "here"
    async with WorkerPool(ms.StateManager(), cwd=other) as pool:
        assert await pool.call("same.step.py", trace_id="t") == "here"
        # The pool watches the file it runs: an edit there gets fresh workers.
        step(tmp_path / "here", "async def handler(data, ctx):\n    return 'edited'\n", "same.step.py")
        assert await pool.call("same.step.py", trace_id="t") == "edited"


@pytest.mark.parametrize("bad", [float("nan"), -1, "5", True])
async def test_a_timeout_that_is_not_a_number_of_seconds_is_refused(tmp_path: Path, bad: Any) -> None:
    path = step(tmp_path)
    with pytest.raises(ms.InvalidArgumentError, match="timeout"):
        await call_step_file(path, trace_id="t", state=ms.StateManager(), timeout=bad)
    async with WorkerPool(ms.StateManager()) as pool:
        with pytest.raises(ms.InvalidArgumentError, match="timeout"):
            await pool.call(path, trace_id="t", timeout=bad)
        assert pool.started == 0


# A condition and a config that write: what they write must carry the
# request's own depth and origin, not those of the worker's last invocation.
WRITES_OUTSIDE_INVOCATIONS = {
    "py": (
        "writes.step.py",
        """
def condition(value, ctx):
    ctx.state.set("c", "written", value)
    return True

def handler(data, ctx):
    return ctx.state.set("c", "invoked", data)
""",
    ),
    "ruby": (
        "writes.step.rb",
        """
def condition(value, ctx)
  ctx.state.set("c", "written", value)
  true
end

def config
  $saved_state&.set("c", "configured", true)
  { "name" => "W" }
end

def handler(data, ctx)
  $saved_state = ctx.state
  ctx.state.set("c", "invoked", data)
end
""",
    ),
}


@pytest.mark.parametrize("language", sorted(WRITES_OUTSIDE_INVOCATIONS))
async def test_a_condition_and_a_config_write_with_their_own_depth_and_origin_not_the_last_invocations(
    tmp_path: Path, language: str
) -> None:
    if language == "ruby":
        require_tool("ruby")
    name, source = WRITES_OUTSIDE_INVOCATIONS[language]
    path = step(tmp_path, source, name)
    state = ms.StateManager()
    async with WorkerPool(state, max_workers=1) as pool:
        await pool.call(path, data=1, trace_id="earlier", depth=7)  # leaves its context on the warm worker
        assert await pool.condition(path, value=2, trace_id="g", depth=3)
        [write] = await state.history("c", "written")
        assert (write.depth, write.origin) == (3, {"step": name, "traceId": "g"})
        if language == "ruby":  # a Ruby config is a method, and may write through a ctx.state kept from before
            assert await pool.config(path) == {"name": "W"}
            [write] = await state.history("c", "configured")
            assert (write.depth, write.origin) == (0, None)  # outside any invocation
        assert pool.started == 1
