"""``bash scripts/bench SUITE``: parse the command line and run one suite."""

from __future__ import annotations

import argparse
import os
import sys

import motia_state as ms

from . import __doc__ as usage
from . import app, feed, file, listing, memory, pool, redis, rpc
from .harness import Options

SUITES = {
    "memory": memory,
    "file": file,
    "feed": feed,
    "redis": redis,
    "rpc": rpc,
    "pool": pool,
    "app": app,
    "listing": listing,
}


def main() -> int:
    """Run the suite named on the command line with its default operations per round unless ``-n`` is given."""
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=usage, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suite", choices=list(SUITES))
    parser.add_argument("--dir", default=None, help="where the file benchmark puts its stores (default: the temp dir)")
    parser.add_argument("-n", type=int, default=None, help="operations per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, motia-state {ms.__version__}")
    suite = SUITES[args.suite]
    suite.run(Options(n=args.n or suite.DEFAULT_N, rounds=args.rounds, where=args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
