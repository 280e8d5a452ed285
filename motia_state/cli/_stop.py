"""SIGINT and SIGTERM for the whole life of the process: one handler from the entry point's first line to exit.

A command's stop must be clean whenever the signal comes, so the handler
is installed before anything heavy is imported and never replaced by the
default disposition (SIGTERM kills the process, SIGINT raises a bare
KeyboardInterrupt) until the process is gone. What a signal does depends on
where the command is:

- starting (importing, parsing, opening its store): :class:`Stopped` is
  raised where the main thread is, and the command unwinds as from Ctrl-C;
- running (inside :func:`receiver`): the signal is handed to the command,
  which cancels its work or stops its server gracefully;
- done (after :func:`settle`, and at the entry point's end): the command's
  outcome is decided and its exit code stands; the signal is ignored, at
  once and without delaying the exit. :func:`finish` then ignores both
  signals at the OS level too, which the interpreter keeps while it shuts
  down (it puts the default disposition back for the Python handlers only).

An event loop's own signal receiver would put the default disposition back
when it closes, which leaves the end of every command exposed: commands use
:func:`receiver` instead. This module imports only the standard library's
``os`` and ``signal`` (``anyio`` only inside :func:`receiver`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "Stopped", "finish", "install", "receiver", "settle", "settled", "signal_name", "stopped_by"]

#: The signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: The write end of the pipe that hands signals to a running command (see :func:`receiver`).
_listener: int | None = None
#: A :class:`Stopped` was raised: it is unwinding the command, and a second signal must not cut that short.
_stopping = False
#: The command's outcome is decided: signals change nothing any more (set by :func:`settle`; the
#: entry point also sets it directly, since a plain store, unlike a call, runs no handler first).
settled = False


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


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stopping
    if settled:
        return
    listener = _listener
    if listener is not None:
        # A full pipe already holds a signal the command has not read: that one stops it.
        with contextlib.suppress(OSError):
            os.write(listener, bytes((signum,)))
        return
    if _stopping:
        return
    _stopping = True
    raise Stopped(signum)


def install() -> None:
    """Take over SIGINT and SIGTERM for the rest of the process (see the module docstring).

    A new command starts unsettled: a previous one in the same process
    (the entry point called again) left its outcome settled, which would
    have the new command ignore every signal.
    """
    global settled, _stopping
    settled = False
    _stopping = False
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)


def settle() -> None:
    """The command's outcome is decided: from now on a signal changes nothing (the exit code stands)."""
    global settled
    settled = True


def finish() -> None:
    """The process is about to exit: ignore SIGINT and SIGTERM until it is gone.

    The handler already ignores them once settled; the OS-level ignore
    also covers the last moments of the interpreter's shutdown, after it
    has put the default disposition back in place of Python handlers.
    """
    settle()
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class _Signals:
    """The signals handed to a running command, as an async iterator of signal numbers."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending: list[int] = []

    def __aiter__(self) -> _Signals:
        return self

    async def __anext__(self) -> int:
        import anyio

        while not self._pending:
            await anyio.wait_readable(self._fd)
            with contextlib.suppress(BlockingIOError):
                self._pending.extend(os.read(self._fd, 64))
        return self._pending.pop(0)


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[AsyncIterator[int]]:
    """SIGINT and SIGTERM handed to the running command, while the context is open.

    Leaving the context settles the command (:func:`settle`): whatever
    comes after it is ignored, so the exit code the command reached stands.
    Used where the entry point did not install the handler (a command run
    inside another program), it installs it for the context's duration and
    puts the program's own handlers back when it ends.
    """
    global _listener
    previous: dict[int, Any] = {}
    if signal.getsignal(signal.SIGINT) is not _on_signal:
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        install()
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    _listener = write
    try:
        yield _Signals(read)
    finally:
        if previous:
            for signum, handler in previous.items():
                if handler is not None:  # None: a handler not set from Python, which cannot be put back
                    signal.signal(signum, handler)
        else:
            settle()
        _listener = None
        os.close(read)
        os.close(write)


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
