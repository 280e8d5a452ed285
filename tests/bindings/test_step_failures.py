"""Whatever a step throws becomes its STEP_FAILED reply, in every language, and the worker serves on.

Each step file raises what ``data["case"]`` names (or answers its pid). All
cases of a language run through one warm worker of a ``WorkerPool``: every
failure must come back as a ``StepError`` with ``Name: message`` (never a
timeout, never a worker that exited), and the pid asked for at the end must
be the one asked for at the start.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import motia_state as ms
from motia_state.runtime import StepError, WorkerPool

from ..helpers import require_tool, step_file

PY = """
import os


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text")


class Unreadable(dict):
    def items(self):
        raise RuntimeError("no items")

    def __iter__(self):
        raise RuntimeError("no iter")


class Fatal(BaseException):
    pass


class Unreadable2(dict):
    def items(self):
        raise Fatal("not even an Exception")


def fail(case):
    if case == "pid":
        return os.getpid()
    if case == "unprintable":
        raise Unprintable()
    if case == "keyboard":
        raise KeyboardInterrupt("stop")
    if case == "surrogate":
        raise ValueError("bad \\ud800 text")
    if case == "unreadable-result":
        return Unreadable(a=1)
    if case == "unreadable-result-2":
        return Unreadable2(a=1)
    if case == "raise-dict":
        raise {"a": 1}
    if case == "raise-int":
        raise 42
    if case == "raise-none":
        raise None


async def handler(data, ctx):
    return fail(data["case"])
"""

# The same failures from a plain def: it runs in a thread of its own.
PY_SYNC = PY.replace("async def handler", "def handler")

JS = """
exports.handler = async (data) => {
  switch (data.case) {
    case 'pid': return process.pid
    case 'null-prototype': throw Object.create(null)
    case 'unprintable': throw { toString () { throw new Error('no text') } }
    case 'stack-getter': {
      const e = new Error('x')
      Object.defineProperty(e, 'stack', { get () { throw new Error('no stack') } })
      throw e
    }
    case 'symbol-name': {
      const e = new Error('x')
      e.name = Symbol('odd')
      throw e
    }
    case 'surrogate': throw new Error('bad \\ud800 text')
    case 'unreadable-result': return { get a () { throw new Error('no value') } }
    case 'object': throw { a: 1, b: 'two' }
    case 'array': throw [1, 2]
    case 'number': throw 42
    case 'null': throw null
    case 'undefined': throw undefined
    case 'string': throw 'boom'
    case 'cyclic': {
      const o = { a: 1 }
      o.self = o
      throw o
    }
    case 'bigint': throw { n: 10n, list: [1n] }
    case 'throwing-getter': throw { get a () { throw new Error('no a') }, b: 2 }
    case 'long': throw { s: 'x'.repeat(5000) }
    case 'unkeyable': throw new Proxy({}, { ownKeys () { throw new Error('no keys') } })
  }
}
"""

RB = """
class Unprintable < StandardError
  def message = raise("no text")
end

class NoBacktrace < StandardError
  def backtrace = raise("no backtrace")
end

class Unreadable < Hash
  def each(*) = raise("no each")
end

class Unreadable2 < Hash
  def each(*) = raise(Exception, "not even a StandardError")
end

class Unnamed < StandardError
  def self.to_s = raise("no name")
end

def handler(data, ctx)
  case data["case"]
  when "pid" then Process.pid
  when "unprintable" then raise Unprintable
  when "no-backtrace" then raise NoBacktrace, "x"
  when "utf-16" then raise "wide \\u00e9".encode("UTF-16LE")
  when "binary" then raise "bad \\xff bytes".b
  when "unreadable-result" then Unreadable.new.tap { |h| h["a"] = 1 }
  when "unreadable-result-2" then Unreadable2.new.tap { |h| h["a"] = 1 }
  when "unnamed" then raise Unnamed, "x"
  when "raise-hash" then raise({ a: 1 })
  when "raise-int" then raise 42
  when "raise-nil" then raise nil
  when "throw-symbol" then throw :sym
  when "throw-string" then throw "tag"
  end
end
"""

# The async and the plain-def Python steps fail alike.
PY_MESSAGES = {
    "unprintable": "Unprintable: <str() of the exception raised RuntimeError>",
    "keyboard": "KeyboardInterrupt: stop",
    "surrogate": "ValueError: bad ? text",
    "unreadable-result": "the handler's return value is not JSON: RuntimeError: no items",
    "unreadable-result-2": "the handler's return value is not JSON: Fatal: not even an Exception",
    "raise-dict": "TypeError: exceptions must derive from BaseException",
    "raise-int": "TypeError: exceptions must derive from BaseException",
    "raise-none": "TypeError: exceptions must derive from BaseException",
}

CASES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    # language: (source, tool, case -> the StepError's message)
    "py": (
        PY,
        None,
        PY_MESSAGES,
    ),
    "py-sync": (
        PY_SYNC,
        None,
        PY_MESSAGES,
    ),
    "js": (
        JS,
        "node",
        {
            # A thrown value that is not an Error: an object or array as its JSON text, a primitive as its text.
            "null-prototype": "{}",
            "unprintable": "{}",
            "stack-getter": "Error: x",
            "symbol-name": "Symbol(odd): x",
            "surrogate": "Error: bad ? text",
            "unreadable-result": "the handler's return value is not JSON: Error: no value",
            "object": '{"a":1,"b":"two"}',
            "array": "[1,2]",
            "number": "42",
            "null": "null",
            "undefined": "undefined",
            "string": "boom",
            "cyclic": '{"a":1,"self":"[Circular]"}',
            "bigint": '{"n":10,"list":[1]}',
            "throwing-getter": '{"a":"[unreadable: Error: no a]","b":2}',
            "long": '{"s":"' + "x" * 994 + "...",
            "unkeyable": "a thrown object that cannot be shown as text",
        },
    ),
    "rb": (
        RB,
        "ruby",
        {
            "unprintable": "Unprintable: <#message raised RuntimeError>",
            "no-backtrace": "NoBacktrace: x",
            "utf-16": "RuntimeError: wide \u00e9",
            "binary": "RuntimeError: bad ? bytes",
            "unreadable-result": "the handler's return value is not JSON: RuntimeError: no each",
            "unreadable-result-2": "the handler's return value is not JSON: Exception: not even a StandardError",
            "unnamed": "Exception: x",
            "raise-hash": "TypeError: exception class/object expected",
            "raise-int": "TypeError: exception class/object expected",
            "raise-nil": "TypeError: exception class/object expected",
            "throw-symbol": "UncaughtThrowError: uncaught throw :sym",
            "throw-string": 'UncaughtThrowError: uncaught throw "tag"',
        },
    ),
}


@pytest.mark.parametrize("language", sorted(CASES))
async def test_anything_a_step_throws_is_its_step_failed_reply_and_the_worker_serves_on(
    tmp_path: Path, language: str
) -> None:
    source, tool, expected = CASES[language]
    if tool is not None:
        require_tool(tool)
    ext = language.split("-")[0]
    path = tmp_path / f"fails.step.{ext}"
    path.write_text(textwrap.dedent(source))
    messages: dict[str, str] = {}
    async with WorkerPool(ms.StateManager()) as pool:
        # A generous timeout: a failure that never became a reply shows as a
        # timeout here, not as a hung test.
        pid = await pool.call(path, data={"case": "pid"}, trace_id="t", timeout=60)
        for case in expected:
            with pytest.raises(StepError) as caught:
                await pool.call(path, data={"case": case}, trace_id="t", timeout=60)
            messages[case] = caught.value.message
        assert await pool.call(path, data={"case": "pid"}, trace_id="t", timeout=60) == pid
    assert messages == expected


PY_CONDITION = """
class Undecided:
    def __bool__(self):
        raise RuntimeError("neither")


class Unreadable(dict):
    def items(self):
        raise RuntimeError("no items")


config = {"triggers": [{"condition": lambda value, ctx: Undecided()}], "extra": Unreadable(a=1)}


def condition(value, ctx):
    return value
"""


async def test_a_python_condition_or_config_that_cannot_be_read_is_step_failed(tmp_path: Path) -> None:
    path = tmp_path / "decides.step.py"
    path.write_text(PY_CONDITION)
    async with WorkerPool(ms.StateManager()) as pool:
        with pytest.raises(StepError, match=r"^RuntimeError: neither$"):
            await pool.condition(path, value=1, trigger=0, timeout=60)
        with pytest.raises(StepError, match=r"^the step's config is not JSON: RuntimeError: no items$"):
            await pool.config(path, timeout=60)
        assert await pool.condition(path, value=1, timeout=60) is True  # the same worker serves on
        assert pool.started == 1


CONFIGS = {
    # A config getter that throws (Node) or a config method that raises (Ruby).
    "js": (
        """
        Object.defineProperty(exports, 'config', { enumerable: true, get () { throw new Error('no config') } })
        exports.handler = async () => process.pid
        """,
        "Error: no config",
    ),
    "rb": (
        """
        def config = raise("no config")

        def handler(data, ctx) = Process.pid
        """,
        "RuntimeError: no config",
    ),
}


@pytest.mark.parametrize("ext", sorted(CONFIGS))
async def test_a_config_that_fails_to_be_read_is_step_failed_worded_alike(tmp_path: Path, ext: str) -> None:
    source, error = CONFIGS[ext]
    path = step_file(tmp_path, "config", ext, source)
    async with WorkerPool(ms.StateManager()) as pool:
        pid = await pool.call(path, trace_id="t", timeout=60)
        with pytest.raises(StepError, match=rf"^the step's config is not JSON: {error}$"):
            await pool.config(path, timeout=60)
        assert await pool.call(path, trace_id="t", timeout=60) == pid  # the worker lives on
