"""The command line: ``motia-state run`` on the examples and ``motia-state demo``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import require_tool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "motia_state.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("name", ["score.step.py", "score.step.js", "score.step.rb"])
def test_run_prints_the_examples_result(name: str, tmp_path: Path) -> None:
    tool = {"js": "node", "rb": "ruby"}.get(name.rsplit(".", 1)[1])
    if tool:
        require_tool(tool)
    state = f"file:{tmp_path / 'state'}"
    first = cli("run", str(EXAMPLES / name), "--data", '{"points": 5}', "--state", state)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"score": 5, "history": [5]}
    again = cli("run", str(EXAMPLES / name), "--data", '{"points": 2}', "--state", state)
    assert json.loads(again.stdout) == {"score": 7, "history": [5, 7]}, "the file store kept the first run"


def test_run_reports_a_failing_step_as_json_with_a_code(tmp_path: Path) -> None:
    step = tmp_path / "fail.step.py"
    step.write_text("async def handler(data, ctx):\n    raise KeyError('missing')\n")
    proc = cli("run", str(step))
    assert proc.returncode == 1
    error = json.loads(proc.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "STEP_FAILED" and "KeyError" in error["message"]


def test_demo_races_every_language_and_checks_the_totals() -> None:
    require_tool("node")
    require_tool("ruby")
    proc = cli("demo", "--workers", "2", "--rounds", "30")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["languages"] == ["python", "node", "ruby"]
    assert report["checks"]["counter"] == {"got": 180, "want": 180}


def test_demo_on_the_file_store(tmp_path: Path) -> None:
    proc = cli("demo", "--workers", "1", "--rounds", "20", "--state", f"file:{tmp_path / 's'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
