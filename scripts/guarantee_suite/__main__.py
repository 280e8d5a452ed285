"""``bash scripts/guarantees [--short]``: run every section, print the table, exit 1 on any loss."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

import motia_state as ms

from . import __doc__ as usage
from . import crash, feed_crash, fuzz, linearizable, redis_restart
from .report import Row, render

#: Each section module has a FULL and a SHORT size and a ``run(size, seed)`` returning rows.
SECTIONS = {
    "linearizable": linearizable,
    "crash": crash,
    "redis": redis_restart,
    "feed": feed_crash,
    "fuzz": fuzz,
}


def main() -> int:
    """Run the sections asked for (all by default) and print one table."""
    parser = argparse.ArgumentParser(
        prog="scripts/guarantees", description=usage, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the CI-sized run (under a minute)")
    parser.add_argument("--seed", default="guarantees", help="seed of the random workloads and kill times")
    parser.add_argument("sections", nargs="*", help=f"sections to run: {', '.join(SECTIONS)} (default: all)")
    args = parser.parse_args()
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (choose from {', '.join(SECTIONS)})")
    chosen = args.sections or list(SECTIONS)
    started = time.monotonic()
    print(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}, motia-state {ms.__version__}, "
        f"{'short' if args.short else 'full'} run, seed {args.seed!r}",
        flush=True,
    )
    rows: list[Row] = []
    for name in chosen:
        section = SECTIONS[name]
        section_started = time.monotonic()
        new = section.run(section.SHORT if args.short else section.FULL, args.seed)  # type: ignore[attr-defined]
        print(f"  {name}: {time.monotonic() - section_started:.1f} s", file=sys.stderr, flush=True)
        rows += new
    print(render(rows))
    failed = [r for r in rows if r.failed]
    total = time.monotonic() - started
    if failed:
        print(f"\n{len(failed)} row(s) lost something or could not decide ({total:.0f} s)")
        return 1
    print(f"\nnothing lost ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
