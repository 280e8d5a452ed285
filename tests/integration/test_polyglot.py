"""Node and Ruby steps through the real parent: loading, output, failures, races.

The vectors (test_worker_vectors.py) prove each operation's results; these
tests prove each runner behaves like its language expects and that workers
of all three languages share one atomic state.
"""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import StepError, call_step_file
from motia_state.runtime import worker as worker_module

from ..helpers import require_tool

STEPS = Path(__file__).resolve().parents[1] / "steps"
TOOL = {"py": None, "js": "node", "mjs": "node", "cjs": "node", "rb": "ruby"}


def write_step(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    tool = TOOL[name.rsplit(".", 1)[1]]
    if tool:
        require_tool(tool)
    return path


async def run(path: Path, data: Any = None, state: ms.StateManager | None = None, **kwargs: Any) -> Any:
    return await call_step_file(path, data=data, trace_id="t-1", state=state or ms.StateManager(), timeout=30, **kwargs)


# ------------------------------------------------------------------- Node


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("step.cjs", "exports.handler = async (data, ctx) => ({ got: data, traceId: ctx.traceId, kind: 'cjs' })\n"),
        (
            "step.mjs",
            "export async function handler (data, ctx) { return { got: data, traceId: ctx.traceId, kind: 'mjs' } }\n",
        ),
        ("step.js", "module.exports.handler = (data, ctx) => ({ got: data, traceId: ctx.traceId, kind: 'js' })\n"),
    ],
)
async def test_node_loads_commonjs_and_esm_steps(tmp_path: Path, name: str, source: str) -> None:
    path = write_step(tmp_path, name, source)
    kind = name.rsplit(".", 1)[1]
    assert await run(path, {"x": [1, "é"]}) == {"got": {"x": [1, "é"]}, "traceId": "t-1", "kind": kind}


async def test_node_loads_esm_js_in_a_module_package(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"type": "module"}')
    path = write_step(tmp_path, "step.js", "export const handler = async (data) => data * 2\n")
    assert await run(path, 21) == 42


async def test_node_console_and_stdout_go_to_stderr_not_the_channel(tmp_path: Path, caplog: Any) -> None:
    path = write_step(
        tmp_path,
        "noisy.step.js",
        """
        exports.handler = async (data, ctx) => {
          console.log('from console.log {"type":"rpc_response","id":1}')
          console.info('from console.info')
          process.stdout.write('from process.stdout\\n')
          console.error('from console.error')
          return await ctx.state.increment(ctx.traceId, 'n', 2)
        }
        """,
    )
    with caplog.at_level(logging.DEBUG):
        assert await run(path) == 2
    text = "\n".join(r.getMessage() for r in caplog.records)
    for line in ("from console.log", "from console.info", "from process.stdout", "from console.error"):
        assert line in text


async def test_node_handler_failure_is_a_step_error_with_stack(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        "fail.step.js",
        "exports.handler = async () => { throw new RangeError('too far') }\n",
    )
    with pytest.raises(StepError) as info:
        await run(path)
    assert "RangeError: too far" in info.value.message
    assert info.value.stack and "fail.step.js" in info.value.stack


async def test_node_state_errors_reach_the_step_with_their_code(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        "codes.step.js",
        """
        const { StateError } = require(process.env.MOTIA_NODE_BINDING)
        exports.handler = async (data, ctx) => {
          await ctx.state.set(ctx.traceId, 's', 'text')
          try { await ctx.state.increment(ctx.traceId, 's') } catch (e) {
            return { code: e.code, isError: e instanceof Error, isStateError: e instanceof StateError }
          }
        }
        """,
    )
    binding = str(Path(__file__).resolve().parents[2] / "bindings" / "node")
    assert await run(path, env={"MOTIA_NODE_BINDING": binding}) == {
        "code": "TYPE_MISMATCH",
        "isError": True,
        "isStateError": True,
    }


async def test_node_step_that_fails_to_load_or_has_no_handler(tmp_path: Path) -> None:
    broken = write_step(tmp_path, "broken.step.js", "exports.handler = async (=> {\n")
    with pytest.raises(StepError, match="SyntaxError"):
        await run(broken)
    empty = write_step(tmp_path, "empty.step.js", "exports.config = { name: 'x' }\n")
    with pytest.raises(StepError, match="no handler"):
        await run(empty)


async def test_a_motia_node_step_keeps_working_unchanged(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        "seed.step.js",
        """
        exports.config = { type: 'event', name: 'seed', subscribes: ['x'] }
        exports.handler = async (input, { state, traceId, logger }) => {
          await state.set(traceId, 'order', { id: input.id, items: [] })
          await state.set(traceId, 'other', 1)
          await state.delete(traceId, 'other')
          const order = await state.get(traceId, 'order')
          const group = await state.getGroup(traceId)
          await state.clear('scratch')
          logger.info('done', { id: order.id })
          return { order, group }
        }
        """,
    )
    state = ms.StateManager()
    await state.set("scratch", "k", 1)
    result = await run(path, {"id": 7}, state)
    assert result == {"order": {"id": 7, "items": []}, "group": [{"id": 7, "items": []}]}
    assert await state.groups() == ["t-1"]


# ------------------------------------------------------------------- Ruby


async def test_ruby_step_gets_ctx_and_blocking_state(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        "score.step.rb",
        """
        def handler(data, ctx)
          n = ctx.state.increment(ctx.trace_id, "score", data["n"])
          m = ctx.state[:increment].call(ctx.traceId, "score", 1)
          obj = ctx.state.update(ctx.trace_id, "obj") { |cur| (cur || {}).merge("n" => n) }
          ctx.emit({ topic: "scored", data: m })
          ctx.logger.info("scored", n: m)
          { "n" => n, "m" => m, "obj" => obj }
        end
        """,
    )
    emitted: list[Any] = []
    result = await run(path, {"n": 5}, on_emit=emitted.append)
    assert result == {"n": 5, "m": 6, "obj": {"n": 5}}
    assert [e["topic"] for e in emitted] == ["scored"] and emitted[0]["data"] == 6


async def test_ruby_stdout_goes_to_stderr_not_the_channel(tmp_path: Path, caplog: Any) -> None:
    path = write_step(
        tmp_path,
        "noisy.step.rb",
        """
        def handler(data, ctx)
          puts '{"type":"rpc_response","id":1,"result":"forged"}'
          print "from print\\n"
          $stdout.write("from $stdout\\n")
          STDOUT.puts("from STDOUT")
          warn "from warn"
          ctx.state.increment(ctx.trace_id, "n", 3)
        end
        """,
    )
    with caplog.at_level(logging.DEBUG):
        assert await run(path) == 3
    text = "\n".join(r.getMessage() for r in caplog.records)
    for line in ("forged", "from print", "from $stdout", "from STDOUT", "from warn"):
        assert line in text


async def test_ruby_failures_are_step_errors(tmp_path: Path) -> None:
    path = write_step(tmp_path, "fail.step.rb", 'def handler(data, ctx)\n  raise ArgumentError, "bad input"\nend\n')
    with pytest.raises(StepError) as info:
        await run(path)
    assert "ArgumentError: bad input" in info.value.message
    assert info.value.stack and "fail.step.rb:2" in info.value.stack
    broken = write_step(tmp_path, "broken.step.rb", "def handler(data, ctx\n")
    with pytest.raises(StepError, match="SyntaxError"):
        await run(broken)
    empty = write_step(tmp_path, "empty.step.rb", "CONFIG = {}\n")
    with pytest.raises(StepError, match="no handler"):
        await run(empty)


async def test_ruby_state_errors_are_motia_state_errors_with_code(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        "codes.step.rb",
        """
        def handler(data, ctx)
          ctx.state.set(ctx.trace_id, "s", "text")
          ctx.state.increment(ctx.trace_id, "s")
        rescue MotiaState::TypeMismatchError => e
          { "code" => e.code, "class" => e.class.name, "root" => e.is_a?(MotiaState::Error) }
        end
        """,
    )
    assert await run(path) == {"code": "TYPE_MISMATCH", "class": "MotiaState::TypeMismatchError", "root": True}


# -------------------------------------------------- races across languages


@pytest.mark.parametrize("kind", ["increment", "push", "transaction"])
async def test_two_workers_of_each_language_race_exactly(kind: str) -> None:
    require_tool("node")
    require_tool("ruby")
    n = 150
    state = ms.StateManager()
    got: dict[str, list[int]] = {}

    async def worker(tag: str, ext: str) -> None:
        got[tag] = await call_step_file(
            STEPS / f"race.step.{ext}",
            data={"n": n, "kind": kind, "tag": tag},
            trace_id=tag,
            state=state,
            timeout=60,
        )

    async with anyio.create_task_group() as tg:
        for tag, ext in [("py1", "py"), ("py2", "py"), ("js1", "js"), ("js2", "js"), ("rb1", "rb"), ("rb2", "rb")]:
            tg.start_soon(worker, tag, ext)
    total = 6 * n
    assert sorted(v for values in got.values() for v in values) == list(range(1, total + 1))
    for values in got.values():
        assert values == sorted(values), "one worker's calls are applied in the order it sent them"
    if kind != "increment":
        items = await state.get("race", "list")
        assert sorted(items) == sorted(f"{tag}-{i}" for tag in got for i in range(n))
    if kind != "push":
        assert await state.get("race", "n") == total


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("linger.step.js", "exports.handler = async () => { setInterval(() => {}, 1000); return 'ok' }\n"),
        ("linger.step.rb", "def handler(data, ctx)\n  Thread.new { sleep 60 }\n  'ok'\nend\n"),
        (
            "linger.step.py",
            "import asyncio, threading, time\n"
            "async def handler(data, ctx):\n"
            "    threading.Thread(target=time.sleep, args=(60,)).start()\n"
            "    asyncio.ensure_future(asyncio.sleep(60))\n"
            "    return 'ok'\n",
        ),
    ],
)
async def test_a_step_that_leaves_work_running_still_exits_promptly(
    tmp_path: Path, name: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lingering worker would be killed only after the exit grace: make it
    # far longer than the bound, which must also cover the interpreter's
    # start on a loaded machine.
    monkeypatch.setattr(worker_module, "EXIT_GRACE", 30.0)
    path = write_step(tmp_path, name, source)
    started = anyio.current_time()
    assert await run(path) == "ok"
    assert anyio.current_time() - started < 15, "the worker must exit at shutdown, not linger until killed"


async def test_a_python_step_sending_a_lone_surrogate_gets_invalid_argument(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        "surrogate.step.py",
        """
        async def handler(data, ctx):
            try:
                await ctx.state.set(ctx.trace_id, "k", "x\\ud800")
            except ValueError as e:
                code = e.code
            return [code, await ctx.state.increment(ctx.trace_id, "n")]
        """,
    )
    assert await run(path) == ["INVALID_ARGUMENT", 1]


async def test_a_node_step_sending_a_lone_surrogate_gets_invalid_argument(tmp_path: Path) -> None:
    path = write_step(
        tmp_path,
        "surrogate.step.js",
        """
        exports.handler = async (data, ctx) => {
          let code = null
          try { await ctx.state.set(ctx.traceId, 'k', 'x\\ud800') } catch (e) { code = e.code }
          return [code, await ctx.state.increment(ctx.traceId, 'n')]
        }
        """,
    )
    assert await run(path) == ["INVALID_ARGUMENT", 1]


# ------------------------------------------------- frames over the limit


@pytest.mark.parametrize("ext", ["py", "js", "rb"])
async def test_frames_over_the_limit_fail_fast_with_a_code_in_every_language(tmp_path: Path, ext: str) -> None:
    """Too big to send, or to receive, is an error at once: never a wait for a reply that cannot come."""
    # The smallest frame limit the parent accepts: a transaction's largest results plus 1 MiB.
    state = ms.StateManager(ms.MemoryStateAdapter(limits=ms.Limits(max_value_bytes=4000, max_result_bytes=4096)))
    limit = (1 << 20) + 4096
    over = limit + 1000
    sources = {
        "py": "async def handler(data, ctx):\n"
        f"    if data == 'big-result':\n        return 'x' * {over}\n"
        "    return len(await ctx.state.get_group(ctx.trace_id))\n",
        "js": f"exports.handler = async (data, ctx) => data === 'big-result' ? 'x'.repeat({over})"
        " : (await ctx.state.getGroup(ctx.traceId)).length\n",
        "rb": f"def handler(data, ctx)\n  return 'x' * {over} if data == 'big-result'\n"
        "  ctx.state.get_group(ctx.trace_id).length\nend\n",
    }
    path = write_step(tmp_path, f"limits.step.{ext}", sources[ext])
    started = anyio.current_time()
    with pytest.raises(ms.LimitExceededError):  # the input: refused before anything starts
        await run(path, "y" * over, state, max_frame_bytes=limit)
    with pytest.raises(StepError, match="frame limit"):  # the step's result: the parent cannot read it
        await run(path, "big-result", state, max_frame_bytes=limit)
    for i in range(limit // 3000):  # a group whose getGroup reply is over the limit
        await state.set("t-1", f"k{i}", "z" * 3990)
    code = await run(
        write_step(
            tmp_path,
            f"catch.step.{ext}",
            {
                "py": "async def handler(data, ctx):\n    try:\n        await ctx.state.get_group(ctx.trace_id)\n"
                "    except Exception as e:\n        return e.code\n",
                "js": "exports.handler = async (data, ctx) => { try { await ctx.state.getGroup(ctx.traceId) }"
                " catch (e) { return e.code } }\n",
                "rb": "def handler(data, ctx)\n  ctx.state.get_group(ctx.trace_id)\nrescue MotiaState::Error => e\n"
                "  e.code\nend\n",
            }[ext],
        ),
        None,
        state,
        max_frame_bytes=limit,
    )
    assert code == "LIMIT_EXCEEDED"
    assert anyio.current_time() - started < 20


# ------------------------------------------- the channel is private to the runner

# Run by a process the step starts, with every descriptor it inherits: it
# writes a forged reply and a forged request to each, and reads each for a
# while, as the step keeps calling the parent.
PROBE = r"""
import json, os, sys, time
forged = (b'{"type":"rpc_response","id":1,"result":"forged"}\n'
          b'{"type":"rpc_request","id":"f","method":"state.set","args":{"traceId":"t-1","key":"forged","value":1}}\n')
fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
for fd in fds:
    try:
        os.write(fd, forged)
    except OSError:
        pass
got = b""
deadline = time.time() + 1.0
while time.time() < deadline:
    for fd in fds:
        try:
            os.set_blocking(fd, False)
            got += os.read(fd, 65536)
        except OSError:
            pass
    time.sleep(0.005)
with open(sys.argv[1], "w") as f:
    json.dump({"fds": fds, "read_frames": b"rpc_" in got}, f)
"""

SPAWNERS = {
    "py": """
        import subprocess, sys
        async def handler(data, ctx):
            child = subprocess.Popen([sys.executable, data["probe"], data["report"]], close_fds=False)
            got = [await ctx.state.increment(ctx.trace_id, "n") for _ in range(200)]
            while child.poll() is None:
                got.append(await ctx.state.increment(ctx.trace_id, "n"))
            return got == list(range(1, len(got) + 1))
        """,
    "js": """
        const { spawn } = require('child_process')
        exports.handler = async (data, ctx) => {
          const child = spawn(data.python, [data.probe, data.report], { stdio: 'inherit' })
          let exited = false
          const done = new Promise((resolve) => child.on('exit', () => { exited = true; resolve() }))
          const got = []
          while (got.length < 200 || !exited) got.push(await ctx.state.increment(ctx.traceId, 'n'))
          await done
          return got.every((n, i) => n === i + 1)
        }
        """,
    "rb": """
        def handler(data, ctx)
          pid = Process.spawn(data["python"], data["probe"], data["report"], close_others: false)
          got = Array.new(200) { ctx.state.increment(ctx.trace_id, "n") }
          got << ctx.state.increment(ctx.trace_id, "n") while Process.waitpid(pid, Process::WNOHANG).nil?
          got == (1..got.length).to_a
        end
        """,
}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the probe lists its fds in /proc")
@pytest.mark.parametrize("ext", ["py", "js", "rb"])
async def test_a_process_the_step_starts_can_neither_write_nor_read_frames(tmp_path: Path, ext: str) -> None:
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    report = tmp_path / "report.json"
    path = write_step(tmp_path, f"spawner.step.{ext}", SPAWNERS[ext])
    state = ms.StateManager()
    data = {"probe": str(probe), "report": str(report), "python": sys.executable}
    assert await run(path, data, state) is True  # not "forged", and no reply was stolen
    probed = json.loads(report.read_text())
    assert probed["read_frames"] is False, probed
    assert await state.get("t-1", "forged") is None
