"""Peak memory of ``motia-state migrate`` for stores of different sizes.

Usage: python scripts/migrate_rss.py URL_FROM URL_TO N [N ...]

For each N: clears both stores, writes N entries (groups of 1,000 keys,
values of ~100 bytes) into the source, runs ``motia-state migrate --from
--to --verify`` as a child and prints its peak resident memory (VmHWM, read
from /proc while it runs) and its time.
"""

from __future__ import annotations

import subprocess
import sys
import time

import anyio

import motia_state as ms


async def fill(url: str, n: int) -> None:
    async with ms.StateManager(ms.create_state_adapter(url)) as m:
        for g in await m.groups():
            await m.clear(g)
        for start in range(0, n, 1000):
            group = f"g{start // 1000:05d}"
            ops = [
                {"type": "set", "key": f"k{i:06d}", "value": {"n": i, "text": "x" * 80}}
                for i in range(start, min(n, start + 1000))
            ]
            await m.batch(group, ops)


async def clear(url: str) -> None:
    async with ms.StateManager(ms.create_state_adapter(url)) as m:
        for g in await m.groups():
            await m.clear(g)


def peak_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    source, target, *sizes = sys.argv[1:]
    for n in map(int, sizes):
        anyio.run(fill, source, n)
        anyio.run(clear, target)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "motia_state", "migrate", "--from", source, "--to", target, "--verify"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, peak_kib(proc.pid))
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        print(f"{n:>8} entries: peak RSS {peak / 1024:6.1f} MiB, {elapsed:6.1f} s, exit {proc.returncode}")


if __name__ == "__main__":
    main()
