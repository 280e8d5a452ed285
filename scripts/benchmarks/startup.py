"""CLI start-up: best-of-N wall time of ``motia-state --help`` and ``motia-state dev --help``.

``python -m scripts.benchmarks.startup BEFORE AFTER [ROUNDS]`` runs two
checkouts of the package side by side, interleaved, and keeps each one's
best of ``ROUNDS`` (10 by default): BEFORE and AFTER are folders that hold a
``motia_state/`` (for instance a ``git worktree`` of an earlier commit and
this checkout). ``python -c pass`` is timed beside them: the interpreter's
own start, which both sides pay.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

COMMANDS = {"--help": ["--help"], "dev --help": ["dev", "--help"]}
# What the motia-state console script runs.
ENTRY = "import sys; from motia_state.cli import main; sys.exit(main())"


def main(argv: list[str]) -> int:
    """Time both checkouts, interleaved, and print the best of each with their ratio."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    roots = {"before": os.path.abspath(argv[0]), "after": os.path.abspath(argv[1])}
    # Run from elsewhere: `python -c` puts its working directory first on sys.path,
    # where a checkout would shadow the one PYTHONPATH names.
    cwd = tempfile.gettempdir()
    rounds = int(argv[2]) if len(argv) == 3 else 10
    best: dict[tuple[str, str], float] = {}
    floor = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor = min(floor, time.perf_counter() - start)
        for name, args in COMMANDS.items():
            for side, root in roots.items():
                env = {**os.environ, "PYTHONPATH": root}
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", ENTRY, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True
                )
                elapsed = time.perf_counter() - start
                best[name, side] = min(best.get((name, side), elapsed), elapsed)
    print(f"python -c pass: {floor * 1000:.0f} ms")
    for name in COMMANDS:
        b, a = best[name, "before"], best[name, "after"]
        print(f"motia-state {name}: before {b * 1000:.0f} ms, after {a * 1000:.0f} ms ({b / a:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
