"""Every Python block of docs/triggers.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "triggers.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)


def test_the_guide_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_triggers_guide_block_runs(block: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(block, str(GUIDE), "exec"), {"__name__": "__main__"})
    # Each block says what it prints in comments: check it.
    printed = capsys.readouterr().out.splitlines()
    expected = [m.group(1).split(":")[0].strip() for m in re.finditer(r"print\(.*\)  # (.*)", block)]
    assert len(printed) == len(expected)
    for out, want in zip(printed, expected, strict=True):
        assert out.startswith(want), (out, want)
