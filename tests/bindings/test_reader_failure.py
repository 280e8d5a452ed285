"""A worker whose reader fails, or whose parent sends odd bytes or goes away, never hangs.

Every binding reads the parent's frames in one place (Python: a reader
callback on the event loop; Node: the input stream's data handler and the
spin that polls for a reply; Ruby: whichever thread holds the reader's turn,
and the background thread). If that reading fails, the replies read with
the frame that failed may be lost, so every call still waiting fails at once
and the worker exits with status 1: the parent gets a StepError, never a
timeout, and its pool starts a fresh worker.
"""

from __future__ import annotations

import os
import select
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms
from motia_state.runtime import StepError, StepTimeoutError, WorkerPool
from motia_state.runtime.checks import resolve_command

from ..helpers import require_tool

TOOLS = {"py": None, "node": "node", "ruby": "ruby"}

# Each step breaks its own binding's reader for input that carries the word
# "explode" (standing for any bug in reading), then reads an entry whose
# value is that word: its reply reaches the broken reader. Without the word
# in the input, it serves normally.
INJECTED = {
    "py": (
        "reader.step.py",
        """
        import motia_step.rpc as rpc

        _feed = rpc.RpcClient._feed

        def _exploding(self, chunk):
            if b'"explode"' in chunk:
                raise RuntimeError("injected failure")
            return _feed(self, chunk)

        rpc.RpcClient._feed = _exploding

        async def handler(data, ctx):
            return await ctx.state.get("g", data["key"])
        """,
    ),
    "node": (
        "reader.step.js",
        """
        const path = require('path')
        const rpc = require(path.join(path.dirname(require.main.filename), 'lib', 'rpc.js'))
        const feed = rpc.RpcClient.prototype.feed
        rpc.RpcClient.prototype.feed = function (chunk) {
          if (chunk.includes('"explode"')) throw new Error('injected failure')
          return feed.call(this, chunk)
        }
        exports.handler = async (data, ctx) => ctx.state.get('g', data.key)
        """,
    ),
    "ruby": (
        "reader.step.rb",
        """
        MotiaState::RpcClient.prepend(Module.new do
          def handle_line(line)
            raise "injected failure" if line.include?('"explode"')

            super
          end
        end)

        def handler(data, ctx)
          ctx.state.get("g", data["key"])
        end
        """,
    ),
}


def _write_step(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def _failure_text(e: StepError) -> str:
    return f"{e.message}\n{e.stderr_tail or ''}"


@pytest.mark.parametrize("lang", sorted(INJECTED))
async def test_a_reader_that_fails_fails_the_waiting_call_and_the_worker_exits(tmp_path: Path, lang: str) -> None:
    if TOOLS[lang]:
        require_tool(TOOLS[lang])
    path = _write_step(tmp_path, *INJECTED[lang])
    state = ms.StateManager()
    await state.set("g", "bomb", "explode")
    await state.set("g", "fine", "calm")
    async with WorkerPool(state, max_workers=1) as pool:
        with pytest.raises(StepError) as caught:
            await pool.call(path, data={"key": "bomb"}, trace_id="t", timeout=15)
        assert not isinstance(caught.value, StepTimeoutError)
        assert "the reader failed" in _failure_text(caught.value)
        assert "injected failure" in _failure_text(caught.value)
        assert pool.idle_workers(path) == 0  # not kept
        assert await pool.call(path, data={"key": "fine"}, trace_id="t", timeout=15) == "calm"  # a fresh worker
        assert pool.started == 2


RUBY_READER_KILLED = """
def handler(data, ctx)
  if data == "kill"
    # The background thread: the only one besides the main thread and this one.
    (Thread.list - [Thread.main, Thread.current]).each { |t| t.raise(RuntimeError, "injected failure") }
    sleep 0.2
  end
  ctx.state.get("g", "k")
end
"""


async def test_a_ruby_worker_whose_background_reader_dies_exits_instead_of_hanging(tmp_path: Path) -> None:
    require_tool("ruby")
    path = _write_step(tmp_path, "killed.step.rb", RUBY_READER_KILLED)
    state = ms.StateManager()
    await state.set("g", "k", 7)
    async with WorkerPool(state, max_workers=1) as pool:
        # Without the background thread nobody would read the parent's next
        # invoke, so this worker must not be kept waiting for one.
        with pytest.raises(StepError) as caught:
            await pool.call(path, data="kill", trace_id="t", timeout=15)
            await pool.call(path, data="again", trace_id="t", timeout=15)
        assert not isinstance(caught.value, StepTimeoutError)
        assert "the reader failed" in _failure_text(caught.value)
        assert await pool.call(path, data="again", trace_id="t", timeout=15) == 7
        assert pool.started == 2


# -- the parent's bytes, at a worker started by hand ------------------------------

PLAIN = {
    "py": ("plain.step.py", "def handler(data, ctx):\n    return ctx.state.get('g', 'k')\n"),
    "node": ("plain.step.js", "exports.handler = async (data, ctx) => ctx.state.get('g', 'k')\n"),
    "ruby": ("plain.step.rb", "def handler(data, ctx)\n  ctx.state.get('g', 'k')\nend\n"),
}


class RawWorker:
    """A worker on stdin/stdout, the parent's side written by hand."""

    def __init__(self, tmp_path: Path, lang: str, env: dict[str, str] | None = None) -> None:
        if TOOLS[lang]:
            require_tool(TOOLS[lang])
        path = _write_step(tmp_path, *PLAIN[lang])
        env = {**{k: v for k, v in os.environ.items() if k != "MOTIA_STEP_PROTOCOL_FDS"}, **(env or {})}
        self.proc = subprocess.Popen(
            resolve_command(path, None), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self._buf = b""

    def send(self, *lines: str | bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
        self.proc.stdin.flush()

    def read(self, timeout: float = 10.0) -> dict[str, Any]:
        import json

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no frame within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("the worker closed its output")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        frame: dict[str, Any] = json.loads(line)
        return frame

    def exit_code(self, timeout: float = 10.0) -> int:
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit within {timeout} s") from None

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(params=sorted(PLAIN))
def raw(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    worker = RawWorker(tmp_path, request.param)
    yield worker
    worker.close()


INVOKE = '{"type":"rpc_request","id":1,"method":"invoke","args":{"data":null,"traceId":"t"}}'


def test_a_request_whose_id_is_no_id_is_dropped_and_the_worker_serves_on(raw: RawWorker) -> None:
    # 1e400 reads as an infinite float in every language, 1.5 as a fraction: no id an answer can carry back.
    raw.send('{"type":"rpc_request","id":1e400,"method":"nope"}', '{"type":"rpc_request","id":1.5,"method":"nope"}')
    raw.send(INVOKE)
    frame = raw.read()  # no answer to either: the next frame is the invocation's own request
    assert frame["type"] == "rpc_request" and frame["method"] == "state.get", frame
    raw.send('{"type":"rpc_response","id":%s,"result":5}' % (frame["id"] if isinstance(frame["id"], int) else 0))
    assert raw.read() == {"type": "rpc_response", "id": 1, "result": 5}
    assert raw.exit_code() == 0


def test_the_parent_closing_the_channel_mid_call_ends_the_worker_cleanly(raw: RawWorker) -> None:
    raw.send(INVOKE)
    assert raw.read()["method"] == "state.get"  # the call is in flight
    assert raw.exit_code() == 0, raw.stderr()


def test_a_reply_nested_too_deeply_fails_its_call_with_limit_exceeded_saying_so(raw: RawWorker) -> None:
    # A few KiB nested 5,000 deep: over the nesting limit, far under the frame limit.
    raw.send(INVOKE)
    request = raw.read()
    assert request["method"] == "state.get", request
    deep = "[" * 5000 + "]" * 5000
    raw.send(f'{{"type":"rpc_response","id":{request["id"]},"result":{deep}}}')
    reply = raw.read()
    assert reply["id"] == 1 and "error" in reply, reply
    message = reply["error"]["message"]
    assert "LimitExceededError" in message or reply["error"]["code"] == "LIMIT_EXCEEDED", reply
    assert "nested" in message and "byte" not in message, message
    assert raw.exit_code() == 0


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param('{{"type":"rpc_response","id":{id},"result":NaN}}', id="NaN"),
        pytest.param('{{"type":"rpc_response","id":{id},"result":-Infinity}}', id="Infinity"),
        # One frame cut in two by a newline: neither line is a frame.
        pytest.param('{{"type":"rpc_response","id":{id},"result":[1\n2]}}', id="two-lines"),
    ],
)
def test_a_reply_that_is_not_strict_json_fails_its_call_in_every_runner(raw: RawWorker, reply: str) -> None:
    raw.send(INVOKE)
    request = raw.read()
    assert request["method"] == "state.get", request
    raw.send(reply.format(id=request["id"]))
    answer = raw.read()
    assert answer["id"] == 1 and answer["error"]["code"] == "STEP_FAILED", answer
    assert "InvalidArgumentError" in answer["error"]["message"], answer
    assert "not JSON" in answer["error"]["message"], answer
    assert raw.exit_code() == 0


def test_a_reply_to_no_request_is_reported_on_stderr_and_dropped(raw: RawWorker) -> None:
    raw.send('{"type":"rpc_response","id":77,"result":1}', '{"type":"rpc_response","id":"x","result":1}')
    raw.send(INVOKE)
    request = raw.read()
    raw.send(f'{{"type":"rpc_response","id":{request["id"]},"result":5}}')
    assert raw.read() == {"type": "rpc_response", "id": 1, "result": 5}
    assert raw.exit_code() == 0
    stderr = raw.stderr()
    assert "a reply to no request (id 77)" in stderr and 'a reply to no request (id "x")' in stderr, stderr
