"""A child process for the group commit test of the file store (fsync mode "always").

usage: commit_writer.py PATH COUNT

Opens the store at PATH in mode "always", prints "ready", waits for a line
on stdin, then makes COUNT increments of "n". Each fsync of the log is
made slow (a disk, not tmpfs: writers of other processes pile up behind it)
and logged with the position its bytes reach: the ``appended`` mark read
as it starts (everything appended up to there was written before it). At
the end it prints one JSON line per event, in the order they happened:
``["fsync", gen, offset, started, ended]`` and ``["ack", gen, offset,
acknowledged]`` (times from the system-wide monotonic clock; ``gen,
offset`` of an ack is where its record ends in the logs).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import motia_state as ms
from motia_state.adapters.file import store


async def main() -> None:
    path, count = sys.argv[1], int(sys.argv[2])
    adapter = ms.FileStateAdapter(path, fsync="always")
    session = adapter._log
    marks = session.marks
    assert marks is not None
    events: list[list[Any]] = []
    real = store._datasync

    def slow_datasync(fd: int) -> None:
        gen, offset = marks.appended
        started = time.monotonic()
        time.sleep(0.003)
        real(fd)
        events.append(["fsync", gen, offset, started, time.monotonic()])

    store._datasync = slow_datasync
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        await adapter.increment("g", "n")
        events.append(["ack", session.gen, session.offset, time.monotonic()])
    await adapter.close()
    for event in events:
        print(json.dumps(event))


asyncio.run(main())
