"""The top-level example steps do what their comments say, in every language, each on a fresh state."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import motia_state as ms
from motia_state.runtime import call_step_file

from ..helpers import require_tool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LANGUAGES = {"py": None, "js": "node", "rb": "ruby"}


def example(name: str, ext: str) -> Path:
    """The example file ``name.step.ext``, skipping (or failing on CI) when its interpreter is missing."""
    tool = LANGUAGES[ext]
    if tool:
        require_tool(tool)
    path = EXAMPLES / f"{name}.step.{ext}"
    assert path.is_file(), path
    return path


async def group(state: ms.StateManager, name: str) -> dict[str, object]:
    """Every key of group ``name`` with its value."""
    return {key: await state.get(name, key) for key in await state.keys(name)}


@pytest.mark.parametrize("ext", list(LANGUAGES))
async def test_checkout_sells_the_three_books_and_refuses_the_fourth(ext: str) -> None:
    step = example("checkout", ext)
    state = ms.StateManager()
    outcomes = [
        await call_step_file(step, data={"sku": "book"}, trace_id="t", state=state, timeout=60) for _ in range(4)
    ]
    assert [o["success"] for o in outcomes] == [True, True, True, False]
    assert [o["results"] for o in outcomes[:3]] == [
        [True, 2, ["book"]],
        [True, 1, ["book", "book"]],
        [True, 0, ["book", "book", "book"]],
    ]
    refused = outcomes[3]
    assert (refused["code"], refused["failedIndex"]) == ("CONFLICT", 0)
    assert "check" in refused["error"]
    assert await state.get("stock", "book") == 0, "never oversold"
    assert await state.get("stock", "orders") == ["book"] * 3, "the refused sale stored nothing"


@pytest.mark.parametrize("ext", list(LANGUAGES))
async def test_checkout_keeps_each_sku_to_its_own_stock(ext: str) -> None:
    step = example("checkout", ext)
    state = ms.StateManager()
    for sku in ("book", "pen", "book"):
        assert (await call_step_file(step, data={"sku": sku}, trace_id="t", state=state, timeout=60))["success"]
    assert await group(state, "stock") == {"book": 1, "pen": 2, "orders": ["book", "pen", "book"]}


@pytest.mark.parametrize("ext", list(LANGUAGES))
async def test_visit_batches_independent_writes_with_a_result_per_id(ext: str) -> None:
    step = example("visit", ext)
    state = ms.StateManager()

    async def visit(page: str, user: str) -> object:
        return await call_step_file(step, data={"page": page, "user": user}, trace_id="t", state=state, timeout=60)

    assert await visit("home", "ada") == {
        "total": {"value": 1},
        "page": {"value": 1},
        "new": {"value": True},
        "last": {"value": "ada"},
    }
    assert await visit("home", "ada") == {
        "total": {"value": 2},
        "page": {"value": 2},
        "new": {"value": False},
        "last": {"value": "ada"},
    }, "a compareAndSwap that does not match is the value false, not an error"
    assert await visit("about", "bob") == {
        "total": {"value": 3},
        "page": {"value": 1},
        "new": {"value": True},
        "last": {"value": "bob"},
    }
    assert await group(state, "visits") == {
        "total": 3,
        "page:home": 2,
        "page:about": 1,
        "seen:ada": True,
        "seen:bob": True,
        "last": "bob",
    }


@pytest.mark.parametrize("ext", list(LANGUAGES))
async def test_visit_one_failing_item_does_not_stop_the_others(ext: str) -> None:
    step = example("visit", ext)
    state = ms.StateManager()
    await state.set("visits", "page:closed", "not a counter")
    answer = await call_step_file(step, data={"page": "closed", "user": "cy"}, trace_id="t", state=state, timeout=60)
    assert answer == {
        "total": {"value": 1},
        "page": {"code": "TYPE_MISMATCH"},
        "new": {"value": True},
        "last": {"value": "cy"},
    }
    assert await group(state, "visits") == {
        "total": 1,
        "page:closed": "not a counter",
        "seen:cy": True,
        "last": "cy",
    }


def run_me(path: Path) -> list[str]:
    """The ``Run me:`` command in the example's comment, as argv."""
    lines = [line for line in path.read_text().splitlines() if "Run me: " in line]
    assert len(lines) == 1, f"{path.name}: one 'Run me:' line expected"
    argv = shlex.split(lines[0].split("Run me: ", 1)[1].rstrip('"'))
    assert argv[:3] == ["motia-state", "run", f"examples/{path.name}"], argv
    return argv


FIRST_ANSWERS = {
    "score": {"score": 5, "history": [5]},
    "checkout": {"success": True, "results": [True, 2, ["book"]]},
    "visit": {"total": {"value": 1}, "page": {"value": 1}, "new": {"value": True}, "last": {"value": "ada"}},
}


@pytest.mark.parametrize("ext", list(LANGUAGES))
@pytest.mark.parametrize("name", list(FIRST_ANSWERS))
def test_the_run_me_command_in_each_example_works_as_written(name: str, ext: str, tmp_path: Path) -> None:
    path = example(name, ext)
    argv = run_me(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "motia_state.cli", *argv[1:], "--state", f"file:{tmp_path / 'state'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == FIRST_ANSWERS[name]
