"""A SIGTERM or SIGINT that comes while a command is still starting (importing, reading configs) is a clean stop.

The command runs as a real process. The signal is sent a moment after the
interpreter is up (Python catches SIGINT from then on), i.e. while the
package is being imported: a server (``dev``, ``workbench``) then exits 0,
any other command 130, without a traceback and without leaving a process
behind. The entry point can only catch a signal once its first line runs:
one sent while the interpreter itself still starts (site, the path finders)
ends the process as it would any program, so such an attempt is repeated a
little later instead of counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._cli import env

STEP = """
config = {"name": "Hello", "triggers": [{"type": "api", "method": "GET", "path": "/hello"}]}

async def handler(req, ctx):
    return {"status": 200, "body": "hello"}
"""

#: Attempts per delay whose signal landed before the entry point ran (see the module docstring).
ATTEMPTS = 5


def _caught(pid: int) -> int:
    """The signals process ``pid`` catches (``SigCgt`` of /proc), as a bit mask; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _catches(pid: int, signum: int) -> bool:
    return bool(_caught(pid) >> (signum - 1) & 1)


def _session_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop_early(argv: list[str], signum: int, delay: float, cwd: Path) -> tuple[int, str, bool]:
    """Start ``python -m motia_state ARGV``, send ``signum`` ``delay`` s after the interpreter is up.

    Returns the exit code, stderr, and whether the process caught ``signum``
    when it was sent (False: it came before the entry point ran).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "motia_state", *argv],
        env=env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a worker left behind is found below
    )
    try:
        deadline = time.monotonic() + 30
        # Python catches SIGINT once it is initialised, before it imports anything of ours.
        while not _catches(proc.pid, signal.SIGINT) and proc.poll() is None:
            assert time.monotonic() < deadline, "the interpreter did not start"
            time.sleep(0.001)
        time.sleep(delay)
        caught = _catches(proc.pid, signum)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while not _session_gone(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session_gone(proc.pid), f"a process of the stopped command is still running\n{err}"
        return proc.returncode, err, caught
    finally:
        if not _session_gone(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _assert_clean_stop(argv: list[str], signum: int, delay: float, cwd: Path, expected: int) -> str:
    for attempt in range(ATTEMPTS):
        code, err, caught = _stop_early(argv, signum, delay + 0.05 * attempt, cwd)
        if code == -signum and not caught:
            continue  # it came before the entry point's first line: try a little later
        assert code == expected, f"exit {code} after {signal.Signals(signum).name} at {delay} s\n{err}"
        assert "Traceback" not in err, err
        return err
    pytest.fail(
        f"{signal.Signals(signum).name} at {delay} s (and {ATTEMPTS - 1} later moments) killed the process "
        "before it handled the signal"
    )


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "steps").mkdir(parents=True)
    (root / "steps" / "hello.step.py").write_text(STEP)
    return root


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3])
def test_sigterm_while_dev_starts_exits_0(app: Path, tmp_path: Path, delay: float) -> None:
    _assert_clean_stop(["dev", str(app), "--port", "0"], signal.SIGTERM, delay, tmp_path, 0)


def test_sigint_while_dev_starts_exits_0(app: Path, tmp_path: Path) -> None:
    _assert_clean_stop(["dev", str(app), "--port", "0"], signal.SIGINT, 0.15, tmp_path, 0)


@pytest.mark.parametrize("delay", [0.05, 0.2])
def test_sigterm_while_workbench_starts_exits_0(tmp_path: Path, delay: float) -> None:
    _assert_clean_stop(["workbench", "--port", "0"], signal.SIGTERM, delay, tmp_path, 0)


def test_sigterm_while_a_command_starts_exits_130(tmp_path: Path) -> None:
    err = _assert_clean_stop(
        ["state", "watch", "--state", f"file:{tmp_path / 'store'}"], signal.SIGTERM, 0.15, tmp_path, 130
    )
    assert "interrupted" in err
