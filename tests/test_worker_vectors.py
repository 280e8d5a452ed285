"""The conformance vectors through a real Python worker and the RPC parent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import call_step_file

from .conformance import check_recorded, load_cases
from .helpers import reset_handlers

CASES = load_cases()
STEP = Path(__file__).parent / "steps" / "vectors.step.py"


@pytest.fixture(scope="module")
def recorded() -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        manager = ms.StateManager()
        result: list[dict[str, Any]] = await call_step_file(
            STEP,
            data={"cases": [case for _, case in CASES]},
            trace_id="vectors",
            state=manager,
            handlers=reset_handlers(manager),
            timeout=120,
        )
        return result

    return anyio.run(run)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[name for name, _ in CASES])
async def test_vector_through_python_worker(recorded: list[dict[str, Any]], index: int) -> None:
    await check_recorded(CASES[index][1], recorded[index])
