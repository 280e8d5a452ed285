"""The conformance vectors through real Python, Node and Ruby workers and the RPC parent.

One worker per language runs every case through its own ``ctx.state``
(tests/steps/vectors.step.*), asking the parent for fresh state between
cases; the parent then checks what each recorded against the vectors.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import call_step_file

from ..conformance import check_recorded, load_cases
from ..helpers import require_tool, reset_handlers

CASES = load_cases()
STEPS = Path(__file__).resolve().parents[1] / "steps"
# JavaScript numbers are doubles: cases that need exact integers past 2^53
# cannot hold there, so they are not run through Node (see tests/vectors/README.md).
NODE_CASES = [(name, case) for name, case in CASES if not case.get("exactIntegers")]


def outcome(language: str, index: int) -> dict[str, Any]:
    """What a worker of ``language`` recorded for case ``index`` of its cases.

    The deeply nested cases (nesting.json) run in a worker of their own: a
    runtime that cannot parse that deep then fails those cases alone.
    """
    cases = NODE_CASES if language == "node" else CASES
    deep = cases[index][0].startswith("nesting:")
    group = tuple(i for i, (name, _) in enumerate(cases) if name.startswith("nesting:") == deep)
    recorded = _recorded(language, group)
    if isinstance(recorded, BaseException):
        raise recorded
    return recorded[group.index(index)]


@cache
def _recorded(language: str, indexes: tuple[int, ...]) -> list[dict[str, Any]] | BaseException:
    """One worker's run of some cases (a failure kept, so it is not retried per case)."""
    step = STEPS / {"python": "vectors.step.py", "node": "vectors.step.js", "ruby": "vectors.step.rb"}[language]
    every = NODE_CASES if language == "node" else CASES
    cases = [every[i] for i in indexes]

    async def run() -> list[dict[str, Any]]:
        manager = ms.StateManager()
        result: list[dict[str, Any]] = await call_step_file(
            step,
            data={"cases": [case for _, case in cases]},
            trace_id="vectors",
            state=manager,
            handlers=reset_handlers(manager),
            # A runtime that cannot parse the deep cases never answers: do not wait long for it.
            timeout=30 if all(name.startswith("nesting:") for name, _ in cases) else 120,
        )
        return result

    try:
        return anyio.run(run)
    except Exception as e:
        return e


def _has_unsafe_integer(value: Any) -> bool:
    # An int that a double cannot hold exactly (past Number.MAX_SAFE_INTEGER).
    if type(value) is int:
        return abs(value) > 2**53 - 1
    if isinstance(value, dict):
        return any(_has_unsafe_integer(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unsafe_integer(v) for v in value)
    return False


def test_node_skips_only_the_exact_integer_cases() -> None:
    skipped = [(name, case) for name, case in CASES if case.get("exactIntegers")]
    assert skipped, "no case is marked exactIntegers: the flag's handling is untested"
    # The flag is honest: every case it keeps from Node holds an integer a double cannot.
    assert [name for name, case in skipped if not _has_unsafe_integer(case)] == []
    assert len(NODE_CASES) == len(CASES) - len(skipped)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[name for name, _ in CASES])
def test_vector_through_python_worker(index: int) -> None:
    anyio.run(check_recorded, CASES[index][1], outcome("python", index))


@pytest.mark.parametrize("index", range(len(NODE_CASES)), ids=[name for name, _ in NODE_CASES])
def test_vector_through_node_worker(index: int) -> None:
    require_tool("node")
    recorded = outcome("node", index)

    async def check() -> None:
        await check_recorded(NODE_CASES[index][1], recorded, js_numbers=True)

    anyio.run(check)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[name for name, _ in CASES])
def test_vector_through_ruby_worker(index: int) -> None:
    require_tool("ruby")
    anyio.run(check_recorded, CASES[index][1], outcome("ruby", index))
