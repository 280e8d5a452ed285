"""The entry point called a second time in one process still stops on SIGINT or SIGTERM.

The first call leaves its command's outcome settled (signals ignored); a
later call is a new command whose start and run a signal must stop, as the
first one's could. Each case runs in a child interpreter that sends the
signal to itself while the second command starts (a signal a process sends
itself is delivered before ``kill`` returns: nothing depends on timing).
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from ._cli import env

DRIVER = r"""
import os, signal, sys
import motia_state.cli as cli

signum = int(sys.argv[1])
first = cli.main(["state", "get", "g", "k", "--state", "memory:"])  # refused at once: exit 2
run = cli._run

def signalled_run(args):
    os.kill(os.getpid(), signum)
    return run(args)

cli._run = signalled_run
second = cli.main(["state", "get", "g", "k", "--state", "memory:"])
print(first, second)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_a_second_call_of_the_entry_point_is_stopped_by_a_signal(signum: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(int(signum))],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "130"], (done.stdout, done.stderr)
