"""Peer comparison: the same step files under Motia's published core and under motia-state.

``bash scripts/peer/run [--version V] [--scratch DIR] [--rounds R]``
installs ``@motiadev/core`` (and ``typescript``, which its Node runner's
``ts-node`` needs) from the npm registry into a scratch folder, then runs,
interleaved, each probe once per round on both sides and keeps each one's
best round:

- cold calls: sequential invocations of ``steps/trivial.step.{py,js}``
  (one state write), a new process per call on both sides, and ours on a
  warm ``WorkerPool`` too;
- state writes per second from inside one invocation of
  ``steps/state.step.{py,js}`` (the step times itself);
- one ``set`` on the file store holding 1k, 10k and 100k entries (Motia's
  ``FileStateAdapter``, ours in its default fsync mode, "batch").

Both sides keep their state in memory for the step probes. It is a
benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio

import motia_state as ms
from motia_state.runtime import WorkerPool, call_step_file

HERE = Path(__file__).resolve().parent
STEPS = HERE / "steps"
DRIVER = HERE / "motia_driver.js"


def install(scratch: Path, version: str) -> str:
    """``npm install`` Motia's core at ``version`` into ``scratch`` (once); returns the installed version."""
    scratch.mkdir(parents=True, exist_ok=True)
    package = scratch / "node_modules" / "@motiadev" / "core" / "package.json"
    wanted = None if version == "latest" else version
    if not package.exists() or (wanted and json.loads(package.read_text())["version"] != wanted):
        (scratch / "package.json").write_text('{"private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"@motiadev/core@{version}", "typescript@5"],
            cwd=scratch,
            check=True,
        )
    installed: str = json.loads(package.read_text())["version"]
    return installed


def motia(scratch: Path, *args: str | int | Path) -> dict[str, float]:
    """One probe on Motia's side (``motia_driver.js``); its JSON answer."""
    out = subprocess.run(
        ["node", str(DRIVER), str(scratch), *map(str, args)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"Motia probe {args} failed:\n{out.stderr[-2000:]}")
    answer: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


def motia_rate(scratch: Path, probe: str, step: Path, n: int) -> float:
    """A ``cold`` or ``state`` probe on Motia's side: its rate."""
    return motia(scratch, probe, step, n)["rate"]


def motia_set_us(scratch: Path, entries: int, reps: int, directory: Path) -> float:
    """Microseconds per ``set`` on Motia's file store holding ``entries`` entries."""
    return motia(scratch, "fileset", entries, reps, directory / f"motia-{entries}")["seconds"] * 1e6


def ours_set_us(entries: int, reps: int, directory: Path) -> float:
    """Microseconds per ``set`` on our file store holding ``entries`` entries, in a fresh folder."""
    return ours_fileset(entries, reps, Path(tempfile.mkdtemp(dir=directory))) * 1e6


def ours_cold(step: Path, n: int) -> float:
    """Calls/s of ``n`` sequential ``call_step_file`` calls (a new process each)."""

    async def run() -> float:
        state = ms.StateManager()
        await call_step_file(step, trace_id="peer", state=state)
        start = time.perf_counter()
        for _ in range(n):
            await call_step_file(step, trace_id="peer", state=state)
        return n / (time.perf_counter() - start)

    return anyio.run(run)


def ours_warm(step: Path, n: int) -> float:
    """Calls/s of ``n`` sequential calls on a warm ``WorkerPool``."""

    async def run() -> float:
        async with WorkerPool(ms.StateManager()) as pool:
            await pool.call(step, trace_id="peer")
            start = time.perf_counter()
            for _ in range(n):
                await pool.call(step, trace_id="peer")
            return n / (time.perf_counter() - start)

    return anyio.run(run)


def ours_state(step: Path, n: int) -> float:
    """The step's own state writes/s over ``n`` sequential writes in one invocation."""

    async def run() -> float:
        out = await call_step_file(step, data={"n": n}, trace_id="peer", state=ms.StateManager(), timeout=600)
        return float(out["rate"])

    return anyio.run(run)


def ours_fileset(entries: int, reps: int, directory: Path) -> float:
    """Seconds per ``set`` on our file store holding ``entries`` entries (default fsync mode)."""

    async def run() -> float:
        adapter = ms.FileStateAdapter(directory / "peer.state")
        try:
            for i in range(entries):
                await adapter.set("peer", f"k{i}", {"i": i, "pad": "x" * 32})
            await adapter.set("peer", "probe", 0)
            start = time.perf_counter()
            for i in range(reps):
                await adapter.set("peer", "probe", i)
            return (time.perf_counter() - start) / reps
        finally:
            await adapter.close()

    return anyio.run(run)


def main() -> int:
    """Install, run every probe on both sides for ``--rounds`` interleaved rounds, print figures and ratios."""
    parser = argparse.ArgumentParser(prog="scripts/peer/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="latest", help="@motiadev/core version (default: the registry's latest)")
    parser.add_argument("--scratch", default=str(Path(tempfile.gettempdir()) / "motia-peer"), help="install folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=5_000, help="state writes per state probe")
    args = parser.parse_args()
    scratch = Path(args.scratch)
    version = install(scratch, args.version)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"@motiadev/core {version} vs motia-state {ms.__version__}; node {node}, python {sys.version.split()[0]}")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    n = args.n
    cold_n = {"py": 10, "js": 3}  # Motia's Node runner registers ts-node on every call (~1 s)
    reps = {1_000: 50, 10_000: 10, 100_000: 3}
    # Higher is better for the rates, lower for the seconds per set.
    probes: dict[str, Callable[[], float]] = {}
    with tempfile.TemporaryDirectory(prefix="motia-peer-") as tmp:
        for ext in ("py", "js"):
            trivial, state = STEPS / f"trivial.step.{ext}", STEPS / f"state.step.{ext}"
            probes[f"{ext}: cold calls/s, Motia"] = partial(motia_rate, scratch, "cold", trivial, cold_n[ext])
            probes[f"{ext}: cold calls/s, ours"] = partial(ours_cold, trivial, cold_n[ext] * 3)
            probes[f"{ext}: warm calls/s, ours"] = partial(ours_warm, trivial, 1_000)
            probes[f"{ext}: state writes/s, Motia"] = partial(motia_rate, scratch, "state", state, n)
            probes[f"{ext}: state writes/s, ours"] = partial(ours_state, state, n)
        for entries, r in reps.items():
            probes[f"file set, {entries:,} entries: us, Motia"] = partial(motia_set_us, scratch, entries, r, Path(tmp))
            probes[f"file set, {entries:,} entries: us, ours"] = partial(ours_set_us, entries, r, Path(tmp))
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, probe in probes.items():
                value = probe()
                keep = min if name.endswith(": us, Motia") or name.endswith(": us, ours") else max
                best[name] = keep(best[name], value) if name in best else value
    print(f"\nbest of {args.rounds} interleaved rounds")
    width = max(map(len, best))
    for name, value in best.items():
        print(f"  {name:<{width}}  {value:>14,.1f}")
    print("\nratios (ours over Motia; > 1 means ours is faster)")
    for ext in ("py", "js"):
        motia_cold = best[f"{ext}: cold calls/s, Motia"]
        print(
            f"  {ext}: cold calls, ours / Motia:              {best[f'{ext}: cold calls/s, ours'] / motia_cold:8.2f}x"
        )
        print(f"  {ext}: warm pool, ours / Motia's cold call:  {best[f'{ext}: warm calls/s, ours'] / motia_cold:8.2f}x")
        print(
            f"  {ext}: state writes/s, ours / Motia:         "
            f"{best[f'{ext}: state writes/s, ours'] / best[f'{ext}: state writes/s, Motia']:8.2f}x"
        )
    for entries in reps:
        motia_us, ours_us = (
            best[f"file set, {entries:,} entries: us, Motia"],
            best[f"file set, {entries:,} entries: us, ours"],
        )
        print(f"  file set with {entries:>7,} entries, Motia / ours: {motia_us / ours_us:8.1f}x")
    for side in ("Motia", "ours"):
        growth = best[f"file set, 100,000 entries: us, {side}"] / best[f"file set, 1,000 entries: us, {side}"]
        print(f"  {side}: set cost at 100k / at 1k entries: {growth:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
