"""An error a step leaves behind is logged as an error record naming the step file, and the worker serves on.

Each step raises something that nothing handles, outside the invocation's
own flow: Node a timer callback that throws, a promise nobody awaits that
rejects, an EventEmitter's 'error' with no listener; Python a thread's
exception, an asyncio task's exception nobody retrieves, a loop callback
that raises; Ruby a thread's exception. First after its handler returned
("leave"), then while an invocation is still running ("during"). In every
language the error reaches the parent's log channel as one ``error``
record naming the step file, with the message and stack; the invocation
running when it happened still answers, and both invocations ran on one
warm worker (the same pid, one start).
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import WorkerPool
from motia_state.runtime.checks import resolve_command

from ..helpers import step_file

# data: {"mode": "leave" | "during", "kind": ...}; the error's message is "late <kind> <mode>".
STEPS = {
    "js": """
        const { EventEmitter } = require('events')

        function leave (kind, message) {
          if (kind === 'timer') setTimeout(() => { throw new Error(message) }, 10)
          if (kind === 'rejection') Promise.reject(new Error(message)) // nobody awaits it
          if (kind === 'emitter') {
            const emitter = new EventEmitter() // no 'error' listener
            setTimeout(() => emitter.emit('error', new Error(message)), 10)
          }
        }

        exports.handler = async (data) => {
          leave(data.kind, `late ${data.kind} ${data.mode}`)
          if (data.mode === 'during') await new Promise((resolve) => setTimeout(resolve, 300))
          return process.pid
        }
        """,
    "py": """
        import asyncio, os, threading

        def leave(kind, message):
            def fail():
                raise RuntimeError(message)

            async def fail_later():
                await asyncio.sleep(0.01)
                fail()

            if kind == "thread":
                threading.Timer(0.01, fail).start()
            if kind == "task":
                asyncio.ensure_future(fail_later())  # nobody awaits it
            if kind == "callback":
                asyncio.get_running_loop().call_later(0.01, fail)

        async def handler(data, ctx):
            leave(data["kind"], "late %s %s" % (data["kind"], data["mode"]))
            if data["mode"] == "during":
                await asyncio.sleep(0.3)
            return os.getpid()
        """,
    "rb": """
        def leave(kind, message)
          Thread.new { sleep 0.01; raise message } if kind == "thread"
        end

        def handler(data, ctx)
          leave(data["kind"], "late #{data["kind"]} #{data["mode"]}")
          sleep 0.3 if data["mode"] == "during"
          Process.pid
        end
        """,
}

CASES = [
    ("js", "timer"),
    ("js", "rejection"),
    ("js", "emitter"),
    ("py", "thread"),
    ("py", "task"),
    ("py", "callback"),
    ("rb", "thread"),
]


async def _record_of(records: list[dict[str, Any]], message: str) -> dict[str, Any]:
    """The log record that carries ``message``, once it has arrived (a generous deadline: a loaded machine)."""
    with anyio.fail_after(30):
        while True:
            for record in records:
                if message in str(record.get("error", "")):
                    return record
            await anyio.sleep(0.02)


@pytest.mark.parametrize(("ext", "kind"), CASES, ids=[f"{e}-{k}" for e, k in CASES])
async def test_an_error_left_behind_is_logged_naming_the_step_and_the_worker_serves_on(
    tmp_path: Path, ext: str, kind: str
) -> None:
    path = step_file(tmp_path, "late", ext, STEPS[ext])
    records: list[dict[str, Any]] = []
    async with WorkerPool(ms.StateManager(), max_workers=1) as pool:
        pid = await pool.call(
            path, data={"mode": "leave", "kind": kind}, trace_id="t", timeout=60, on_log=records.append
        )
        left = await _record_of(records, f"late {kind} leave")
        # While an invocation runs: the error is logged and the invocation still answers.
        assert (
            await pool.call(
                path, data={"mode": "during", "kind": kind}, trace_id="t", timeout=60, on_log=records.append
            )
            == pid
        )
        during = await _record_of(records, f"late {kind} during")
        assert await pool.call(path, data={"mode": "none", "kind": "none"}, trace_id="t", timeout=60) == pid
        assert pool.started == 1
    for record in (left, during):
        assert record["level"] == "error", record
        assert record["stepFile"] == str(path), record
        assert str(path) in record["msg"], record
        assert record["error"] in record["msg"], record
        assert path.name in record["stack"], record  # where the step raised it
    assert [r for r in records if r.get("level") == "error"] == [left, during]  # each once


# -- a worker whose channel is broken still exits ------------------------------------

CHATTY = {
    "js": "exports.handler = async (data, ctx) => { for (;;) { ctx.logger.info('x'.repeat(1000)); await new Promise((r) => setImmediate(r)) } }\n",
    "py": "import asyncio\n\nasync def handler(data, ctx):\n    while True:\n        ctx.logger.info('x' * 1000)\n        await asyncio.sleep(0)\n",
    "rb": "def handler(data, ctx)\n  loop { ctx.logger.info('x' * 1000) }\nend\n",
}


@pytest.mark.parametrize("ext", sorted(CHATTY))
def test_a_worker_whose_parent_stops_reading_exits_instead_of_logging_for_ever(tmp_path: Path, ext: str) -> None:
    # The parent's end of the output pipe is closed while the step writes:
    # every write fails (EPIPE). That is a dead channel, not an error of the
    # step's to log and survive: the worker must exit.
    path = step_file(tmp_path, "chatty", ext, CHATTY[ext])
    env = {k: v for k, v in os.environ.items() if k != "MOTIA_STEP_PROTOCOL_FDS"}
    proc = subprocess.Popen(
        resolve_command(path, None), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(b'{"type":"rpc_request","id":1,"method":"invoke","args":{"data":null,"traceId":"t"}}\n')
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the step never logged"
        proc.stdout.close()
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            # Keep stderr drained: a worker blocked on a full stderr pipe is not the point here.
            if select.select([proc.stderr], [], [], 0.1)[0]:
                os.read(proc.stderr.fileno(), 65536)
        assert proc.poll() is not None, "the worker kept running with nobody reading its frames"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
