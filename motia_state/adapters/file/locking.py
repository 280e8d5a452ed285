"""Locking and file-system helpers of the file store: the process lock, directory fsync.

The store's ``lock`` file is held (``flock``) around every operation by
whichever process runs it; :class:`ProcessLock` holds it on a descriptor
kept open.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:  # POSIX: flock on a descriptor held open; the kernel wakes waiters.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ProcessLock", "fsync_dir", "pid_alive"]


class ProcessLock:
    """An exclusive lock between processes on the store's ``lock`` file.

    POSIX uses ``flock`` on a descriptor kept open: the kernel wakes a
    blocked waiter the moment the holder releases, and an uncontended
    acquire costs about a microsecond. filelock, the portable fallback,
    reopens the file on every acquire and polls while contended, which is
    too slow for a per-operation lock (figures in docs/file-store.md).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if fcntl is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._file_lock = None
            st = os.fstat(self._fd)
        else:  # pragma: no cover - Windows
            import filelock

            self._fd = -1
            self._file_lock = filelock.FileLock(str(path), mode=0o600, thread_local=False)
            st = os.stat(path) if path.exists() else None
        self._identity = None if st is None else (st.st_dev, st.st_ino)

    def still_at_path(self) -> bool:
        """Whether the file this lock holds is still the one at its path.

        It is not once the store's directory was removed (or replaced, or
        the lock file deleted) while the store was open: another opener
        then locks another file, and both would write.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return self._identity is None or (st.st_dev, st.st_ino) == self._identity

    def acquire(self) -> None:
        """Block until this process holds the lock."""
        if self._file_lock is None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        else:  # pragma: no cover
            self._file_lock.acquire(poll_interval=0.001)

    def release(self) -> None:
        """Let the next process in."""
        if self._file_lock is None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        else:  # pragma: no cover
            self._file_lock.release()

    def close(self) -> None:
        """Close the descriptor (which releases the lock)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def fsync_dir(path: Path) -> None:
    """fsync a directory so that renames and creations in it last."""
    with contextlib.suppress(OSError):  # some filesystems refuse a directory fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
