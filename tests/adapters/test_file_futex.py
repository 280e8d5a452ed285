"""The futex that processes waiting for another's fsync sleep on (mode "always"): where it cannot be used.

A wait that returns at once, every time, turns the waiting loop of
``LogSession._sync_to`` into a spin that lasts as long as the other
process's fsync: these tests hold the commit lock from a second mapping (as
another process would) and count the waits.
"""

from __future__ import annotations

import ctypes
import errno
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms
from motia_state.adapters.file import locking
from motia_state.adapters.file.locking import CommitMarks

linux_only = pytest.mark.skipif(locking._futex is None, reason="the futex wait is used on 64-bit Linux only")


def test_a_32_bit_process_does_not_call_the_64_bit_futex_number(monkeypatch: Any) -> None:
    """The machine names the kernel, not the process: a 32-bit build there has other syscall numbers."""
    monkeypatch.setattr(locking.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(locking.sys, "platform", "linux")
    monkeypatch.setattr(locking.sys, "maxsize", (1 << 31) - 1)
    assert locking._futex_call() is None


@linux_only
def test_a_64_bit_linux_process_has_the_futex() -> None:
    assert sys.maxsize > 1 << 32
    assert locking._futex_call() is not None


@linux_only
@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM])
async def test_a_refused_futex_wait_waits_on_the_lock_instead_of_spinning(
    tmp_path: Path, monkeypatch: Any, code: int
) -> None:
    waits = []

    def refused(address: int, op: int, value: int, timeout: Any) -> int:
        if op == locking._FUTEX_WAIT:
            waits.append(value)
        ctypes.set_errno(code)
        return -1

    store = ms.FileStateAdapter(tmp_path / "s", fsync="always")
    other = CommitMarks(tmp_path / "s" / "commit")  # another process's mapping and lock
    try:
        assert other.try_acquire()
        monkeypatch.setattr(locking, "_futex", refused)
        timer = threading.Timer(0.3, other.release)
        started = time.monotonic()  # before the timer starts: the release is at least 0.3 s after this
        timer.start()
        await store.set("g", "k", 1)  # acknowledged after its fsync, which waits for the other's
        timer.join()
        assert time.monotonic() - started >= 0.25
        assert len(waits) <= 2, f"{len(waits)} futex waits while another process held the lock for 0.3 s"
        assert await store.get("g", "k") == 1
    finally:
        other.close()
        await store.close()


@linux_only
def test_a_futex_wait_that_times_out_or_is_interrupted_keeps_using_the_futex(tmp_path: Path) -> None:
    holder, waiter = CommitMarks(tmp_path / "commit"), CommitMarks(tmp_path / "commit")
    try:
        assert holder.try_acquire()
        waiter._timeout = locking._Timespec(0, 1_000_000)
        seen = waiter.ends()
        waiter.sleep(seen)  # ETIMEDOUT
        waiter.sleep(seen + 1)  # EAGAIN: the count is not what the caller saw
        assert waiter._futex_waits and waiter.sleeps
    finally:
        holder.release()
        holder.close()
        waiter.close()
