"""ctx.logger's record: a field named like one of the record's own never overrides it, in any language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import motia_state as ms
from motia_state.runtime import call_step_file

from ..helpers import step_file

STEPS = {
    "py": """
        async def handler(data, ctx):
            ctx.logger.info("hello", {"level": "error", "msg": "forged"}, traceId="forged", n=1)
        """,
    "js": """
        exports.handler = async (data, ctx) => {
          ctx.logger.info('hello', { level: 'error', traceId: 'forged', msg: 'forged', n: 1 })
        }
        """,
    "rb": """
        def handler(data, ctx)
          ctx.logger.info("hello", level: "error", traceId: "forged", msg: "forged", n: 1)
        end
        """,
}


@pytest.mark.parametrize("ext", sorted(STEPS))
async def test_a_log_field_never_overrides_the_level_message_or_trace_id(tmp_path: Path, ext: str) -> None:
    path = step_file(tmp_path, "logs", ext, STEPS[ext])
    records: list[dict[str, Any]] = []
    await call_step_file(path, trace_id="t", state=ms.StateManager(), on_log=records.append, timeout=60)
    assert records == [{"level": "info", "msg": "hello", "traceId": "t", "n": 1}]
