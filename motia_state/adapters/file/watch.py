"""Noticing other processes' appends to a file store: inotify on Linux, a slow poll elsewhere.

A :class:`LogWatch` blocks until something in the store's directory changed
(an append to the log, a compaction's new log) or its poll interval passed,
whichever comes first. On Linux it asks the kernel through ``inotify``
(called with ctypes: no dependency); where that is missing it only waits
out the interval, so a change is noticed within it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import sys
from pathlib import Path
from typing import Final

__all__ = ["POLL_INTERVAL", "LogWatch"]

#: How long a watch waits at most before looking anyway (the only wake-up without inotify).
POLL_INTERVAL: Final = 0.5

_IN_MODIFY: Final = 0x00000002
_IN_MOVED_TO: Final = 0x00000080
_IN_CREATE: Final = 0x00000100


def _inotify(path: Path) -> int | None:
    """An inotify descriptor watching ``path`` (a directory), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY | _IN_MOVED_TO | _IN_CREATE) < 0:
        os.close(fd)
        return None
    return fd


class LogWatch:
    """Waits for a change in one store directory (see the module docstring)."""

    def __init__(self, path: Path, *, use_inotify: bool = True) -> None:
        self._fd = _inotify(path) if use_inotify else None

    @property
    def notified(self) -> bool:
        """Whether the kernel tells this watch about changes (else it polls)."""
        return self._fd is not None

    def wait(self, timeout: float = POLL_INTERVAL) -> None:
        """Return once the directory changed, or after ``timeout`` seconds."""
        if self._fd is None:
            select.select([], [], [], timeout)
            return
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._fd, 1 << 16):
                    pass

    def close(self) -> None:
        """Stop watching."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
