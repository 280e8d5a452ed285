"""Locking and file-system helpers of the file store: the process lock, the commit marks, directory fsync.

The store's ``lock`` file is held (``flock``) around every operation by
whichever process runs it; :class:`ProcessLock` holds it on a descriptor
kept open. In fsync mode "always", the ``commit`` file is what processes
sharing the store tell each other about fsyncs (:class:`CommitMarks`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import platform
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

try:  # POSIX: flock on a descriptor held open; the kernel wakes waiters.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CommitMarks", "Position", "ProcessLock", "fsync_dir", "pid_alive"]

#: A place in the store's logs: (the log's generation, a byte offset in it).
#: Positions compare as tuples: a later log comes after every byte of an
#: earlier one (a compaction copies and fsyncs what it carries over).
Position = tuple[int, int]

# One mark: generation u64, offset u64, CRC-32 of those 16 bytes. A reader
# that catches a mark halfway through being written sees a bad CRC and
# takes the mark as unknown, which only ever costs an fsync.
_MARK: Final = struct.Struct("<QQI")
_APPENDED: Final = 0
_SYNCED: Final = 32
# A u32 counter that every holder of the commit lock advances as it lets
# go: waiters sleep on it in the kernel (a futex on the shared mapping).
_ENDS: Final = 56
_SIZE: Final = 64
_NOWHERE: Final = (0, 0)
# The futex system call's number, by machine (Linux only), for a 64-bit
# process: the machine is the kernel's, and a 32-bit process on a 64-bit
# kernel (i386, arm, x32) has other numbers and another timespec.
_FUTEX_NR: Final = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}
# What a wait may end with besides a wake-up: the count had moved on, a
# signal, the timeout. Any other error means the call cannot sleep here.
_FUTEX_RETRY: Final = frozenset({errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT})
_FUTEX_WAIT: Final = 0
_FUTEX_WAKE: Final = 1
#: The longest a waiter sleeps before it looks again: a holder killed before
#: its wake-up costs the others this much, never a lost wake-up.
_WAIT_MAX_NS: Final = 5_000_000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _futex_call() -> Callable[..., Any] | None:
    """libc's ``syscall`` when this system has a futex this code knows how to call, else None."""
    number = _FUTEX_NR.get(platform.machine().lower())
    if not sys.platform.startswith("linux") or number is None or sys.maxsize <= 1 << 32:
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):  # pragma: no cover - a libc without syscall()
        return None
    syscall.restype = ctypes.c_long

    def call(address: int, op: int, value: int, timeout: Any) -> int:
        return int(
            syscall(
                ctypes.c_long(number),
                ctypes.c_void_p(address),
                ctypes.c_int(op),
                ctypes.c_uint32(value),
                timeout,
                None,
                ctypes.c_uint32(0),
            )
        )

    return call


_futex: Final = _futex_call()


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

    def try_acquire(self) -> bool:
        """Take the lock unless another process holds it now (then False, at once)."""
        if self._file_lock is None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        return False  # pragma: no cover - the caller then blocks in acquire()

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


class CommitMarks:
    """Group commit between processes: two marks in a small shared file, and a lock to fsync under.

    ``appended`` is where the log's records end, written under the store's
    process lock by every writer in fsync mode "always" right after its
    record; ``synced`` is how far the log is known to be on disk, written
    only while holding this object's own lock, which a process holds around
    its fsync. A writer whose record ends at or before ``synced`` is durable
    without an fsync of its own; otherwise it takes the lock or, while
    another process holds it, waits for that fsync to end (it may cover this
    writer) and looks again. Holding the lock, it fsyncs and advances
    ``synced`` to the ``appended`` it read before the fsync, covering every
    process's records up to there. The file is mapped into memory: reading
    a mark costs no system call. The marks are hints between live
    processes, never needed to read the store: a mark that cannot be
    trusted is ignored.

    On 64-bit Linux a waiter sleeps on a counter in the mapping (a futex)
    that each holder advances as it lets go, and is woken right then:
    waiting on the lock itself instead, a waiter woken by the release loses
    the race for it to a writer that just appended, again and again, and
    learns late that the fsyncs in between covered it. Elsewhere, and where
    the kernel refuses the futex wait, a waiter waits on the lock
    (:meth:`wait`, then :meth:`acquire`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(self._fd).st_size < _SIZE:
                os.ftruncate(self._fd, _SIZE)  # callers hold the store's lock: no one maps it meanwhile
            self._map = mmap.mmap(self._fd, _SIZE)
        except BaseException:
            os.close(self._fd)
            raise
        self._ends: ctypes.c_uint32 | None = None
        #: False once a futex wait failed for a reason other than the count, a signal or the timeout.
        self._futex_waits = True
        self._timeout = _Timespec(0, _WAIT_MAX_NS)
        if _futex is not None and fcntl is not None:
            self._ends = ctypes.c_uint32.from_buffer(self._map, _ENDS)

    @property
    def sleeps(self) -> bool:
        """Whether waiters sleep on the futex (:meth:`ends`, :meth:`sleep`) rather than on the lock."""
        return self._ends is not None

    def ends(self) -> int:
        """How many times a holder let go of the lock (modulo 2**32): read it before looking at the marks."""
        return 0 if self._ends is None else self._ends.value

    def sleep(self, seen: int) -> None:
        """Sleep until a holder lets go after :meth:`ends` said ``seen`` (at once if one did), or a few ms pass.

        Where the kernel refuses the futex wait, this waits until no process
        holds the lock (:meth:`wait`) instead, then and from then on.
        """
        ends = self._ends
        if ends is None or _futex is None:
            return
        if self._futex_waits:
            if _futex(ctypes.addressof(ends), _FUTEX_WAIT, seen, ctypes.byref(self._timeout)) == 0:
                return
            if ctypes.get_errno() in _FUTEX_RETRY:
                return
            # ENOSYS, EPERM (a seccomp filter), EINVAL: the call returns at
            # once, every time, and the caller's loop would spin for as long
            # as the fsync lasts. Wait on the lock instead from now on.
            self._futex_waits = False
        self.wait()

    def _read(self, at: int) -> Position:
        if self._fd < 0:
            return _NOWHERE  # closed
        gen, offset, crc = _MARK.unpack_from(self._map, at)
        if crc != zlib.crc32(self._map[at : at + 16]):
            return _NOWHERE
        return gen, offset

    def _write(self, at: int, position: Position) -> None:
        body = struct.pack("<QQ", *position)
        self._map[at : at + _MARK.size] = body + struct.pack("<I", zlib.crc32(body))

    @property
    def appended(self) -> Position:
        """Where the log's records end, as last published; (0, 0) when unknown."""
        return self._read(_APPENDED)

    @appended.setter
    def appended(self, position: Position) -> None:
        self._write(_APPENDED, position)

    @property
    def synced(self) -> Position:
        """How far the logs are known to be fsynced; (0, 0) when unknown."""
        return self._read(_SYNCED)

    @synced.setter
    def synced(self, position: Position) -> None:
        self._write(_SYNCED, position)

    def check(self, end: Position) -> None:
        """Forget marks past ``end``, the log's end as just loaded (the caller holds the store's lock).

        Marks beyond the log describe other files: a store restored from a
        copy, or a log that repair cut short. Trusting them could
        acknowledge a write that no fsync covered.
        """
        if self.appended > end or self.synced > end:
            self.synced = _NOWHERE
            self.appended = end

    def try_acquire(self) -> bool:
        """Take the lock to fsync under, unless another process holds it (is fsyncing) now."""
        if fcntl is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self) -> None:
        """Block until this process holds the lock to fsync under."""
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def wait(self) -> None:
        """Block until no process holds the lock: the fsync in progress has ended.

        A shared lock, so that every process waiting for the same fsync
        wakes at once when it ends (those it covered return at once),
        instead of one after the other through the exclusive lock.
        """
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def release(self) -> None:
        """Let the next process fsync, and wake the processes sleeping until then."""
        ends = self._ends
        if ends is not None:
            ends.value = (ends.value + 1) & 0xFFFFFFFF  # before letting go: a waiter that saw it free sees it changed
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if ends is not None and _futex is not None:
            _futex(ctypes.addressof(ends), _FUTEX_WAKE, 0x7FFFFFFF, None)

    def close(self) -> None:
        """Unmap and close the file."""
        if self._fd >= 0:
            self._ends = None  # the mapping cannot close while it is exported
            self._map.close()
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
