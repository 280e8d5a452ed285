"""A SIGTERM or SIGINT that comes after a command has its exit code changes nothing: the code stands.

Each case runs the real entry point in a child interpreter whose driver
sends the signal to its own process at a chosen point after the command's
work: when the event loop is closing, at the very last Python code before
exit (an exit hook registered before the command runs, so it runs last),
and right after the command returned while its signal handling was still
open. A signal sent by a process to itself is delivered before ``kill``
returns, so no case depends on timing. The driver also reports the
disposition it found at its last point, which must still not be the
default (a SIGTERM would kill the process, a SIGINT raise a bare
KeyboardInterrupt in the interpreter's shutdown).
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ._cli import cli, env

DRIVER = r"""
import atexit, contextlib, os, signal, sys

where, signum, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def late():
    # Registered before the command runs, so the last exit hook: the last Python code before exit.
    handler = signal.getsignal(signum)
    sys.stderr.write(f"last point: {'SIG_DFL' if handler == signal.SIG_DFL else 'caught'}\n")
    if where == "at-exit":
        os.kill(os.getpid(), signum)
        sys.stderr.write("still running after the signal\n")

atexit.register(late)

import motia_state.cli._common as common
import motia_state.cli._stop as stop

if where == "loop-closing":
    # After the command's signal handling closed, while the event loop shuts down.
    until_signalled = common.until_signalled

    async def late_in_loop(command, args, out):
        try:
            return await until_signalled(command, args, out)
        finally:
            os.kill(os.getpid(), signum)

    common.until_signalled = late_in_loop
elif where == "receiver-closing":
    # The command returned its code; its signal receiver is about to close.
    receiver = stop.receiver

    @contextlib.asynccontextmanager
    async def late_receiver():
        async with receiver() as signals:
            yield signals
            os.kill(os.getpid(), signum)

    stop.receiver = late_receiver

from motia_state.cli import main

sys.exit(main(argv))
"""

WHERE = ["loop-closing", "receiver-closing", "at-exit"]
SIGNALS = [signal.SIGTERM, signal.SIGINT]


def _late(where: str, signum: int, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, where, str(int(signum)), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"file:{tmp_path / 'store'}"
    assert cli("state", "set", "g", "k", '{"n": 1}', "--state", url).returncode == 0
    return url


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("where", WHERE)
def test_a_signal_after_a_read_keeps_exit_0_and_the_output(tmp_path: Path, store: str, where: str, signum: int) -> None:
    proc = _late(where, signum, "state", "get", "g", "k", "--state", store, cwd=tmp_path)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout == '{"n": 1}\n'
    assert "Traceback" not in proc.stderr and "interrupted" not in proc.stderr, proc.stderr
    assert "last point: caught" in proc.stderr, proc.stderr
    if where == "at-exit":
        assert "still running after the signal" in proc.stderr


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("where", WHERE)
def test_a_signal_after_a_failed_command_keeps_its_exit_code(
    tmp_path: Path, store: str, where: str, signum: int
) -> None:
    proc = _late(where, signum, "state", "op", "g", "k", "push", "1", "--state", store, cwd=tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "[TYPE_MISMATCH]" in proc.stderr
    assert "Traceback" not in proc.stderr and "interrupted" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_after_a_usage_error_keeps_exit_2(tmp_path: Path, signum: int) -> None:
    proc = _late("at-exit", signum, "state", "get", cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "[INVALID_ARGUMENT]" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "still running after the signal" in proc.stderr


STEP = """
config = {"name": "Hello", "triggers": [{"type": "api", "method": "GET", "path": "/hello"}]}

async def handler(req, ctx):
    return {"status": 200, "body": "hello"}
"""


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> None:
    """Read the server's stdout until a line holding ``needle`` (it says where it serves)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
            if needle in line:
                return
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line, "the server ended before it served"
        if needle in line:
            return


@pytest.mark.parametrize("where", ["receiver-closing", "at-exit"])
@pytest.mark.parametrize("server", ["dev", "workbench"])
def test_a_second_signal_after_a_server_stopped_keeps_exit_0(tmp_path: Path, server: str, where: str) -> None:
    argv = [server, "--port", "0", "--state", f"file:{tmp_path / 'store'}"]
    if server == "dev":
        (tmp_path / "app" / "steps").mkdir(parents=True)
        (tmp_path / "app" / "steps" / "hello.step.py").write_text(STEP)
        argv.insert(1, str(tmp_path / "app"))
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, where, str(int(signal.SIGTERM)), *argv],
        env=env(),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(proc, "http://")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (proc.returncode, err)
    assert "Traceback" not in err and "last point: caught" in err, err
