"""The Python worker's event loop: the adaptive spin before sleeping (motia_step/eventloop.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import motia_state as ms
from motia_state.runtime import call_step_file
from motia_state.runtime.runners import bindings_dir

from ..helpers import require_tool

sys.path.insert(0, str(bindings_dir() / "python"))
from motia_step import eventloop
from motia_step.eventloop import MAX_SKIP, SpinSelector, spin_budget


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def _selector(r: int, budget: float) -> SpinSelector:
    sel = SpinSelector(budget)
    sel.register(r, 1)  # EVENT_READ
    return sel


def test_a_reply_within_the_budget_is_caught_by_the_spin(pipe: tuple[int, int]) -> None:
    r, w = pipe
    # A budget far longer than the reply takes even on a loaded machine: the
    # spin returns on the reply, well before the budget ends.
    sel = _selector(r, 10.0)
    sel.watched = [1]  # a request in flight
    threading.Timer(0.01, os.write, (w, b"x")).start()
    start = time.perf_counter()
    events = sel.select(None)
    assert events and events[0][0].fd == r
    assert time.perf_counter() - start < 5.0
    assert (sel.spins, sel.hits) == (1, 1)


def test_a_spin_that_finds_nothing_backs_off_then_sleeps(pipe: tuple[int, int]) -> None:
    r, w = pipe
    sel = _selector(r, 0.001)
    sel.watched = [1]
    assert sel.select(0.01) == []  # spun 1 ms, then slept the rest
    assert (sel.spins, sel.hits) == (1, 0)
    for _ in range(2):  # the next 2 waits sleep at once
        assert sel.select(0.002) == []
    assert sel.spins == 1
    sel.select(0.002)  # then one spin again, which misses: 4 skips now
    assert sel.spins == 2
    for _ in range(4):
        sel.select(0.002)
    assert sel.spins == 2
    os.write(w, b"x")
    assert sel.select(0.01)  # a hit resets the backoff
    assert (sel.spins, sel.hits) == (3, 1)
    os.read(r, 1)
    sel.select(0.002)
    assert sel.spins == 4  # no skip after a hit


def test_the_backoff_is_capped(pipe: tuple[int, int]) -> None:
    r, _ = pipe
    sel = _selector(r, 0.00005)
    sel.watched = [1]
    gaps, last, spins = [], 0, 0
    for call in range(1000):  # 10 misses in a row would mean 1024 skips uncapped
        sel.select(0.0001)
        if sel.spins != spins:
            spins = sel.spins
            gaps.append(call - last)
            last = call
    assert spins >= 10
    assert max(gaps) == MAX_SKIP + 1


def test_no_spin_without_a_request_in_flight_or_for_a_poll(pipe: tuple[int, int]) -> None:
    r, _ = pipe
    sel = _selector(r, 10.0)
    start = time.perf_counter()
    assert sel.select(0.01) == []  # nothing watched: a plain sleep of 10 ms
    sel.watched = [1]
    assert sel.select(0) == []  # a poll never spins
    assert sel.spins == 0
    assert time.perf_counter() - start < 5.0  # far less than the budget


def test_the_spin_never_runs_past_the_next_timer(pipe: tuple[int, int]) -> None:
    r, _ = pipe
    sel = _selector(r, 10.0)  # an absurd budget: the timeout still bounds it
    sel.watched = [1]
    start = time.perf_counter()
    assert sel.select(0.02) == []
    assert time.perf_counter() - start < 5.0
    assert sel._skip == 0  # ended by the timer, not a miss


def test_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventloop, "_cpus", lambda: 2)
    monkeypatch.delenv("MOTIA_STEP_SPIN_US", raising=False)
    assert spin_budget() == pytest.approx(50e-6)
    monkeypatch.setenv("MOTIA_STEP_SPIN_US", "120")
    assert spin_budget() == pytest.approx(120e-6)
    monkeypatch.setenv("MOTIA_STEP_SPIN_US", "0")
    assert spin_budget() == 0
    monkeypatch.setenv("MOTIA_STEP_SPIN_US", "lots")
    assert spin_budget() == pytest.approx(50e-6)
    monkeypatch.setenv("MOTIA_STEP_SPIN_US", "nan")
    assert spin_budget() == pytest.approx(50e-6)
    monkeypatch.setenv("MOTIA_STEP_SPIN_US", "inf")
    assert spin_budget() == pytest.approx(0.01)
    monkeypatch.setenv("MOTIA_STEP_SPIN_US", "1e9")
    assert spin_budget() == pytest.approx(0.01)  # capped at 10 ms
    monkeypatch.setenv("MOTIA_STEP_SPIN_US", "50")
    monkeypatch.setattr(eventloop, "_cpus", lambda: 1)
    assert spin_budget() == 0  # one CPU: spinning would only delay the parent


async def _main_of_the_loop() -> tuple[Any, bool]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.001)
    assert asyncio.get_event_loop_policy().get_event_loop() is loop  # the thread's current loop, as asyncio.run sets
    return loop, isinstance(loop._selector, SpinSelector)  # type: ignore[attr-defined]


@pytest.mark.parametrize("has_runner", [True, False], ids=["Runner", "policy"])
def test_run_uses_the_selector_like_asyncio_run(monkeypatch: pytest.MonkeyPatch, has_runner: bool) -> None:
    if not has_runner:  # the Python 3.8-3.10 path
        monkeypatch.delattr(asyncio, "Runner")
    policy = asyncio.get_event_loop_policy()
    try:
        loop, spun = eventloop.run(_main_of_the_loop(), SpinSelector(0.0))
        assert spun
        assert loop.is_closed()  # closed afterwards, as asyncio.run does
    finally:
        asyncio.set_event_loop_policy(policy)


STEP = textwrap.dedent(
    """
    import asyncio

    async def handler(data, ctx):
        s, t = ctx.state, ctx.trace_id
        seen = []
        for _ in range(data["n"]):
            seen.append(await s.increment(t, "n"))
        # a timer due while a request is in flight still fires on time
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        start = loop.time()
        loop.call_later(0.02, fired.set_result, None)
        slow = await asyncio.gather(fired, s.get(t, "n"))
        return {"seen": seen, "timer_late_by": loop.time() - start - 0.02, "got": slow[1]}
    """
)


async def test_a_sync_step_with_spin_blocks_on_each_call(tmp_path: Path) -> None:
    path = tmp_path / "sync.step.py"
    path.write_text("def handler(data, ctx):\n    return [ctx.state.increment('t', 'k') for _ in range(200)]\n")
    out = await call_step_file(path, trace_id="t", state=ms.StateManager(), env={"MOTIA_STEP_SPIN_US": "200"})
    assert out == list(range(1, 201))


NODE_STEP = """
exports.handler = async (data, ctx) => {
  const s = ctx.state
  const seen = []
  for (let i = 0; i < data.n; i++) seen.push(await s.increment(ctx.traceId, 'n'))
  // a timer due while a request is in flight still fires (the spin is bounded)
  const start = performance.now()
  const [late, got] = await Promise.all([
    new Promise((resolve) => setTimeout(() => resolve(performance.now() - start - 20), 20)),
    s.get(ctx.traceId, 'n'),
  ])
  return { seen, timer_late_by: late / 1000, got }
}
"""


SEQUENTIAL_STEPS = {"python": ("py", STEP), "node": ("js", NODE_STEP)}


@pytest.mark.parametrize("language", sorted(SEQUENTIAL_STEPS))
@pytest.mark.parametrize("spin_us", ["0", "50", "5000"])
async def test_sequential_calls_from_a_step_with_and_without_spin(tmp_path: Path, language: str, spin_us: str) -> None:
    if language != "python":
        require_tool(language)
    ext, source = SEQUENTIAL_STEPS[language]
    path = tmp_path / f"seq.step.{ext}"
    path.write_text(source)
    manager = ms.StateManager()
    out = await call_step_file(
        path, data={"n": 300}, trace_id="t", state=manager, env={"MOTIA_STEP_SPIN_US": spin_us}, timeout=60
    )
    assert out["seen"] == list(range(1, 301))
    assert out["got"] == 300
    assert out["timer_late_by"] < 0.5
    assert await manager.get("t", "n") == 300


# -- fuzz: whatever the parent sends, the worker's client survives and loses no reply --

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=5,
)
FRAMES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["rpc_response", "rpc_request", "other"])},
        optional={
            "id": JSON_VALUES,
            "result": JSON_VALUES,
            "error": JSON_VALUES,
            "method": JSON_VALUES,
            "args": JSON_VALUES,
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(FRAMES, max_size=8), junk=st.lists(st.binary(max_size=20), max_size=3))
def test_the_worker_client_survives_any_frame_and_loses_no_reply(frames: list[Any], junk: list[bytes]) -> None:
    asyncio.run(_feed_the_client(frames, junk))


async def _feed_the_client(frames: list[Any], junk: list[bytes]) -> None:
    from motia_step.rpc import RpcClient

    loop = asyncio.get_running_loop()
    requests: list[Any] = []
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        client = RpcClient(loop, r, null, requests.append)
        mine = client.request("state.get", {"traceId": "t", "key": "k"})
        # the parent's bytes: random frames and junk, then the real reply, all in one chunk
        lines = [json.dumps(f).encode() for f in frames] + [j.replace(b"\n", b" ") for j in junk]
        lines.append(b'{"type":"rpc_response","id":1,"result":"mine"}')
        client._feed(b"\n".join(lines) + b"\n")
        assert mine.done() and mine.result() == "mine"
    finally:
        os.close(r)
        os.close(w)
        os.close(null)


async def test_a_step_on_the_spinning_loop_can_spawn_processes_and_use_executors(tmp_path: Path) -> None:
    path = tmp_path / "sub.step.py"
    path.write_text(
        textwrap.dedent(
            """
            import asyncio, sys

            async def handler(data, ctx):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", "print('hi')", stdout=asyncio.subprocess.PIPE
                )
                out, _ = await proc.communicate()
                total = await asyncio.get_event_loop().run_in_executor(None, sum, [1, 2, 3])
                return {"out": out.decode().strip(), "n": await ctx.state.increment(ctx.trace_id, "n"), "sum": total}
            """
        )
    )
    assert await call_step_file(path, trace_id="t", state=ms.StateManager(), timeout=30) == {
        "out": "hi",
        "n": 1,
        "sum": 6,
    }
