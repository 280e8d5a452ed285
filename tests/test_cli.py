"""The command line: ``motia-state run`` on the examples and ``motia-state demo``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .helpers import process_alive, require_tool

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


@pytest.mark.parametrize(
    "args",
    [
        ["run", "STEP", "--timeout", "nan"],
        ["run", "STEP", "--timeout", "-1"],
        ["run", "STEP", "--timeout", "inf"],
        ["demo", "--workers", "0"],
        ["demo", "--rounds", "-3"],
        ["demo", "--timeout", "nan"],
    ],
)
def test_bad_numbers_are_usage_errors_not_tracebacks(args: list[str], tmp_path: Path) -> None:
    step = tmp_path / "ok.step.py"
    step.write_text("async def handler(data, ctx):\n    return 1\n")
    proc = cli(*[str(step) if a == "STEP" else a for a in args])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "expected" in proc.stderr


@pytest.mark.parametrize("data", ['{"x": NaN}', "Infinity", "[-Infinity]"])
def test_run_refuses_an_input_that_is_not_json(data: str, tmp_path: Path) -> None:
    step = tmp_path / "echo.step.py"
    step.write_text("async def handler(data, ctx):\n    return data\n")
    proc = cli("run", str(step), "--data", data)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert json.loads(proc.stderr.strip().splitlines()[-1])["error"]["code"] == "INVALID_ARGUMENT"


def _marked_processes(mark: str) -> list[int]:
    """Processes (ours) whose environment carries ``mark``: everything the CLI started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes() and process_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the CLI's processes through /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_signal_stops_the_cli_and_everything_it_started(tmp_path: Path, signum: signal.Signals, command: str) -> None:
    mark = f"MOTIA_TEST_MARK=signal-{uuid.uuid4()}"
    started = tmp_path / "started"
    step = tmp_path / "sleeper.step.py"
    step.write_text(
        "import subprocess, time\n"
        "def handler(data, ctx):\n"
        "    subprocess.Popen(['sleep', '60'])  # a child of the step: in its process group\n"
        f"    open({str(started)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
    )
    args = ["run", str(step)] if command == "run" else ["demo", "--workers", "1", "--rounds", "1000000"]
    name, value = mark.split("=")
    env = {**os.environ, "PYTHONPATH": str(ROOT), name: value}
    proc = subprocess.Popen(
        [sys.executable, "-m", "motia_state.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        # Wait until the work runs: the step has started its child, or the demo's racers race.
        while not (started.exists() if command == "run" else len(_marked_processes(mark)) >= 2):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    deadline = time.monotonic() + 10
    while (left := _marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], "processes the CLI started outlived it"
