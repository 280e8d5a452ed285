"""SIGINT and SIGTERM from the first instruction of the entry point on, before anything heavy is imported.

A command's own signal handling (a command's cancel scope, a server's
graceful stop) is installed only once its libraries are imported and its
event loop runs. A signal that comes earlier must still end the process as
a stop does (a clean exit, no traceback), not with the default disposition
(SIGTERM kills the process, SIGINT raises a bare KeyboardInterrupt). This
module imports nothing but the standard library's ``signal``.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["STOP_SIGNALS", "Stopped", "install", "signal_name", "stopped_by"]

#: The signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived before the command took over the signals.

    A KeyboardInterrupt, so every layer that already unwinds cleanly on
    Ctrl-C (the event loop, task groups, the adapters' and pools' cleanup)
    does the same for a SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`Stopped` until a command installs its own handling."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)


def stopped_by(error: BaseException) -> int | None:
    """The signal a KeyboardInterrupt (possibly inside exception groups) stands for; None for anything else."""
    if isinstance(error, Stopped):
        return error.signum
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    # An exception group (built in from Python 3.11, a backport before): a stop that
    # interrupted concurrent work, the other errors being its consequences.
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple):
        for each in inner:
            signum = stopped_by(each) if isinstance(each, BaseException) else None
            if signum is not None:
                return signum
    return None
