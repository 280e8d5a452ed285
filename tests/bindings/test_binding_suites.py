"""Each binding's own unit suite (scripted streams, no parent), run from pytest.

The Python shim's unit tests live here; Node's and Ruby's in their own folders.

So that the README's one test command runs all three languages: Node's
``node --test`` and Ruby's minitest. On CI a missing ``node`` or ``ruby`` is
a failure (tests/helpers.require_tool).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import StepError, StepTimeoutError, call_step_file

from ..helpers import require_tool

BINDINGS = Path(__file__).resolve().parents[2] / "bindings"


def run_suite(command: list[str], cwd: Path) -> str:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def test_node_binding_suite() -> None:
    node = require_tool("node")
    output = run_suite([node, "--test", "test/"], BINDINGS / "node")
    assert "# fail 0" in output and "# pass 0" not in output, output[-2000:]


def test_ruby_binding_suite() -> None:
    ruby = require_tool("ruby")
    output = run_suite(
        [ruby, "-Ilib", "-e", 'Dir["test/test_*.rb"].sort.each { |f| require File.expand_path(f) }'],
        BINDINGS / "ruby",
    )
    assert " 0 failures, 0 errors" in output and "\n0 runs" not in output, output[-2000:]


# -- the Python shim (bindings/python/motia_step), on a scripted pipe ---------

sys.path.insert(0, str(BINDINGS / "python"))
from motia_step import rpc as shim_rpc  # noqa: E402
from motia_step.errors import InvalidArgumentError, LimitExceededError, StateError  # noqa: E402
from motia_step.state import RpcStateManager  # noqa: E402


class ShimHarness:
    """A worker-side RpcClient whose output is a pipe the test reads as the parent."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_frame_bytes: int | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.out_r, self.out_w = os.pipe()
        os.set_blocking(self.out_r, False)
        self.null_r = os.open(os.devnull, os.O_RDONLY)
        self.client = shim_rpc.RpcClient(loop, self.null_r, self.out_w, self.requests.append, max_frame_bytes)
        self.state = RpcStateManager(self.client)

    def sent(self) -> list[dict[str, Any]]:
        """Every frame the worker wrote so far."""
        self.client.flush()
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.out_r, 1 << 20):
                data += chunk
        return [json.loads(line) for line in data.splitlines() if line]

    def close(self) -> None:
        for fd in (self.out_r, self.out_w, self.null_r):
            os.close(fd)


def run_shim(test: Callable[[ShimHarness], Awaitable[None]], max_frame_bytes: int | None = None) -> None:
    async def main() -> None:
        h = ShimHarness(asyncio.get_running_loop(), max_frame_bytes)
        try:
            await test(h)
        finally:
            h.close()

    asyncio.run(main())


def nested(depth: int) -> list[Any]:
    """``depth`` arrays, each inside the last."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("environ", "limit"),
    [
        ({}, 16 * 1024 * 1024),
        ({"MOTIA_STEP_MAX_FRAME_BYTES": "4096"}, 4096),
        ({"MOTIA_STEP_MAX_FRAME_BYTES": " 4096\n"}, 4096),
        ({"MOTIA_STEP_MAX_FRAME_BYTES": "1e6"}, 16 * 1024 * 1024),
        ({"MOTIA_STEP_MAX_FRAME_BYTES": "-1"}, 16 * 1024 * 1024),
        ({"MOTIA_STEP_MAX_FRAME_BYTES": "0"}, 16 * 1024 * 1024),
        ({"MOTIA_STEP_MAX_FRAME_BYTES": "lots"}, 16 * 1024 * 1024),
        ({"MOTIA_STEP_MAX_FRAME_BYTES": "٤٠٩٦"}, 16 * 1024 * 1024),
    ],
)
def test_python_shim_reads_the_frame_limit_from_the_environment(environ: dict[str, str], limit: int) -> None:
    assert shim_rpc.frame_limit(environ) == limit


class _Opaque:
    pass


NOT_JSON: list[tuple[str, Callable[[RpcStateManager], Any], str]] = [
    ("nan", lambda s: s.set("g", "k", math.nan), "value"),
    ("inf", lambda s: s.set("g", "k", {"a": [1, math.inf]}), "value.a[1]"),
    ("-inf in push", lambda s: s.push("g", "k", 1, -math.inf), "items[1]"),
    ("increment by inf", lambda s: s.increment("g", "k", math.inf), "delta"),
    ("set", lambda s: s.set("g", "k", {1, 2}), "value"),
    ("bytes", lambda s: s.set("g", "k", b"x"), "value"),
    ("datetime", lambda s: s.set("g", "k", datetime.datetime(2024, 1, 1)), "value"),
    ("tuple", lambda s: s.set("g", "k", (1, 2)), "value"),
    ("object", lambda s: s.set_field("g", "k", "f", _Opaque()), "value"),
    ("int key", lambda s: s.set("g", "k", {1: "a"}), "value"),
    ("None key", lambda s: s.set("g", "k", {"a": {None: 1}}), "value.a"),
    ("lone surrogate", lambda s: s.set("g", "k", ["ok", "\ud800"]), "value[1]"),
    ("surrogate key", lambda s: s.get("g", "\udc00"), "key"),
    ("cas new value", lambda s: s.compare_and_swap("g", "k", None, math.nan), "newValue"),
    (
        "record value",
        lambda s: s.transaction("g", [{"type": "set", "key": "k", "value": math.nan}]),
        "operations[0].value",
    ),
]


@pytest.mark.parametrize(("call", "where"), [(c, w) for _, c, w in NOT_JSON], ids=[n for n, _, _ in NOT_JSON])
def test_python_shim_refuses_what_is_not_json_before_sending(
    call: Callable[[RpcStateManager], Any], where: str
) -> None:
    async def test(h: ShimHarness) -> None:
        with pytest.raises(InvalidArgumentError) as info:
            call(h.state)
        assert info.value.code == "INVALID_ARGUMENT"
        assert info.value.message.startswith(where + ":"), info.value.message
        assert h.sent() == []
        assert not h.client.in_flight

    run_shim(test)


def test_python_shim_sends_256_levels_refuses_257_and_names_a_cycle() -> None:
    async def test(h: ShimHarness) -> None:
        h.state.set("g", "k", nested(256))
        h.state.push("g", "k", nested(256))
        h.state.transaction("g", [{"type": "set", "key": "k", "value": nested(256)}])
        assert [f["method"] for f in h.sent()] == ["state.set", "state.push", "state.transaction"]
        with pytest.raises(LimitExceededError, match="value: nested more than 256"):
            h.state.set("g", "k", nested(257))
        with pytest.raises(LimitExceededError):
            h.state.push("g", "k", nested(257))
        cyclic: dict[str, Any] = {"a": []}
        cyclic["a"].append(cyclic)
        with pytest.raises(InvalidArgumentError, match="cyclic"):
            h.state.set("g", "k", cyclic)
        assert h.sent() == []

    run_shim(test)


def test_python_shim_reads_a_256_deep_reply() -> None:
    async def test(h: ShimHarness) -> None:
        fut = h.state.get("g", "k")
        h.client._feed(json.dumps({"type": "rpc_response", "id": 1, "result": nested(256)}).encode() + b"\n")
        assert await fut == nested(256)

    run_shim(test)


def test_python_shim_refuses_a_request_over_the_frame_limit_before_sending() -> None:
    async def test(h: ShimHarness) -> None:
        with pytest.raises(LimitExceededError, match="frame limit") as info:
            h.state.set("g", "k", "x" * 1000)
        assert info.value.code == "LIMIT_EXCEEDED"
        with pytest.raises(LimitExceededError):
            h.client.notify("log", {"msg": "y" * 1000})
        assert h.sent() == [] and not h.client.in_flight
        fut = h.state.set("g", "k", "x" * 100)  # under the limit: sent, id 1 (no id was used up)
        assert [f["id"] for f in h.sent()] == [1]
        fut.cancel()

    run_shim(test, max_frame_bytes=512)


def test_python_shim_answers_an_oversized_incoming_frame_at_once() -> None:
    async def test(h: ShimHarness) -> None:
        mine = h.state.get("g", "k")
        assert [f["id"] for f in h.sent()] == [1]
        # a request from the parent over the limit, arriving in pieces: answered before its end
        h.client._feed(b'{"type":"rpc_request","method":"invoke","id":"inv-7","args":{"data":"' + b"a" * 600)
        replies = h.sent()
        assert replies == [
            {
                "type": "rpc_response",
                "id": "inv-7",
                "error": {"code": "LIMIT_EXCEEDED", "message": replies[0]["error"]["message"]},
            }
        ]
        h.client._feed(b"a" * 5000 + b'"}}\n')  # the rest is skipped, nothing else answered
        assert h.requests == [] and h.sent() == []
        # a reply to our request over the limit fails that request, not a later one
        h.client._feed(b'{"type":"rpc_response","id":1,"result":"' + b"b" * 2000 + b'"}\n')
        with pytest.raises(LimitExceededError):
            await mine
        # an id that is not an integer is never read as one
        second = h.state.get("g", "k")
        assert [f["id"] for f in h.sent()] == [2]
        h.client._feed(b'{"type":"rpc_response","id":2.5,"result":"' + b"c" * 2000 + b'"}\n')
        assert not second.done()
        h.client._feed(b'{"type":"rpc_response","id":2,"result":"fine"}\n')
        assert await second == "fine"

    run_shim(test, max_frame_bytes=512)


def test_python_shim_replies_limit_exceeded_or_step_failed_for_a_bad_result() -> None:
    async def test(h: ShimHarness) -> None:
        h.client.respond("r1", "x" * 5000)
        h.client.respond("r2", {"when": datetime.date(2024, 1, 1)})
        h.client.respond("r3", nested(321))
        h.client.respond("r4", {"ok": [1, 2]})
        h.client.respond("r7", {"steps": [{"result": nested(256)}]})  # stored values, wrapped
        by_id = {f["id"]: f for f in h.sent()}
        assert by_id["r1"]["error"]["code"] == "LIMIT_EXCEEDED"
        assert by_id["r2"]["error"]["code"] == "STEP_FAILED" and "result.when" in by_id["r2"]["error"]["message"]
        assert by_id["r3"]["error"]["code"] == "LIMIT_EXCEEDED"
        assert by_id["r4"]["result"] == {"ok": [1, 2]}
        assert by_id["r7"]["result"] == {"steps": [{"result": nested(256)}]}
        h.client.respond_error("r5", "STEP_FAILED", "m" * 5000, "s" * 5000)  # cut to fit, still an answer
        (cut,) = h.sent()
        assert cut["id"] == "r5" and cut["error"]["code"] == "STEP_FAILED"

    run_shim(test, max_frame_bytes=4096)


def test_python_shim_error_vocabulary_has_every_code() -> None:
    from motia_step import errors as shim_errors

    for code in ("UPDATE_FAILED", "CURSOR_EXPIRED", "CORRUPT"):
        err = shim_errors.error_from_wire({"code": code, "message": "m"})
        assert type(err) is not shim_errors.InternalError and err.code == code and isinstance(err, StateError)


# -- every binding through the real parent: the frame limit it is given --------

LANGUAGES = {"python": "limits.step.py", "node": "limits.step.js", "ruby": "limits.step.rb"}
MIB = 1024 * 1024


def limits_step(language: str) -> Path:
    if language != "python":
        require_tool(language)
    return Path(__file__).resolve().parents[1] / "steps" / LANGUAGES[language]


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_a_worker_takes_a_20_mib_input_when_the_parent_allows_64_mib(language: str) -> None:
    step = limits_step(language)

    async def run() -> Any:
        return await call_step_file(
            step,
            data={"blob": "y" * (20 * MIB)},
            trace_id="t",
            state=ms.StateManager(),
            timeout=60,
            max_frame_bytes=64 * MIB,
        )

    assert anyio.run(run) == {"length": 20 * MIB}


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_a_result_over_a_small_frame_limit_is_limit_exceeded_at_once(language: str) -> None:
    step = limits_step(language)

    async def run() -> None:
        # The frame limit must leave room for a transaction's results plus 1 MiB.
        state = ms.StateManager(ms.MemoryStateAdapter(limits=ms.Limits(max_value_bytes=1000, max_result_bytes=1024)))
        await call_step_file(
            step, data={"size": 2 * MIB}, trace_id="t", state=state, timeout=60, max_frame_bytes=MIB + 1024
        )

    started = time.monotonic()
    with pytest.raises(StepError) as info:
        anyio.run(run)
    assert not isinstance(info.value, StepTimeoutError)
    assert "frame limit" in info.value.message, info.value.message
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_a_worker_stores_and_reads_a_value_nested_256_deep(language: str) -> None:
    step = limits_step(language)

    async def run() -> Any:
        return await call_step_file(
            step, data={"value": nested(256)}, trace_id="t", state=ms.StateManager(), timeout=60
        )

    assert anyio.run(run) == nested(256)


def test_python_shim_holds_integers_to_4300_characters_sign_included() -> None:
    async def test(h: ShimHarness) -> None:
        h.state.set("g", "k", [10**4300 - 1, -(10**4299 - 1)])  # 4300 characters each: sent
        assert [f["method"] for f in h.sent()] == ["state.set"]
        for over in (10**4300, -(10**4299)):
            with pytest.raises(LimitExceededError, match=r"value\[0\]: an integer over 4300"):
                h.state.set("g", "k", [over])
        assert h.sent() == []

    run_shim(test)


def test_python_shim_answers_a_frame_it_cannot_decode_when_its_id_can_be_read() -> None:
    async def test(h: ShimHarness) -> None:
        mine = h.state.get("g", "k")
        h.client._feed(
            b'{"type":"rpc_response","id":1,"result":tru}\n{"type":"rpc_request","id":"q","method":"x","args":[}\n'
        )
        with pytest.raises(StateError):
            await mine
        (answer,) = h.sent()[1:]
        assert answer["id"] == "q" and answer["error"]["code"] == "INVALID_ARGUMENT"

    run_shim(test)


def test_python_shim_leaves_a_records_limits_to_the_parent() -> None:
    # The parent reports a record past a limit as that record's failure in the
    # result (a batch goes on); refusing the whole call here would differ.
    async def test(h: ShimHarness) -> None:
        h.state.transaction("g", [{"type": "set", "key": "k", "value": nested(257)}])
        h.state.batch("g", [{"type": "set", "key": "k", "value": -(10**4299)}])
        assert [f["method"] for f in h.sent()] == ["state.transaction", "state.batch"]
        with pytest.raises(InvalidArgumentError, match=r"operations\[0\]\.value"):
            h.state.batch("g", [{"type": "set", "key": "k", "value": math.nan}])

    run_shim(test)


def test_python_shim_names_an_update_fn_result_that_is_not_json() -> None:
    async def test(h: ShimHarness) -> None:
        update = asyncio.ensure_future(h.state.update("g", "k", lambda current: (current, 1)))
        await asyncio.sleep(0)
        (get,) = h.sent()
        h.client._feed(json.dumps({"type": "rpc_response", "id": get["id"], "result": 5}).encode() + b"\n")
        with pytest.raises(InvalidArgumentError, match="the update fn's result: a value of type tuple is not JSON"):
            await update
        assert h.sent() == []  # no compareAndSwap went out

    run_shim(test)
