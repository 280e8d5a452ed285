"""``codemod``: upgrade step code to the current state API and point at read-modify-write patterns."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import Output

__all__ = ["add_codemod"]


def add_codemod(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``codemod`` parser."""
    codemod = sub.add_parser(
        "codemod",
        parents=parents,
        help="rewrite atomicUpdate/atomic_update calls to update, and report get-then-set patterns",
        description="Rewrite method calls .atomicUpdate( / .atomic_update( to .update( in .py, .js, .mjs, .cjs, "
        ".ts and .rb files (never strings, comments or your own definitions), and report read-modify-write "
        "patterns an atomic operation should replace. Folders are recursed (node_modules, .git and "
        "virtualenvs skipped).",
    )
    codemod.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    codemod.add_argument("--check", action="store_true", help="change nothing; exit 1 if any rewrite would happen")
    codemod.set_defaults(command_fn=run_codemod, needs_store=False)


async def run_codemod(args: argparse.Namespace, out: Output) -> int:
    """Run the codemod library and print what it did (or would do) and what it found."""
    from ..codemod import run

    summary = run(list(args.paths), check=args.check)
    report = {
        "check": args.check,
        "changed": summary.changed,
        "rewrites": summary.rewrites,
        "findings": [
            {"path": f.path, "line": f.line, "column": f.column, "message": f.message, "suggestion": f.suggestion}
            for f in summary.findings
        ],
        "errors": [{"path": e.path, "message": e.message, "code": e.code} for e in summary.errors],
    }

    def human(doc: dict[str, Any]) -> str:
        verb = "would rewrite" if args.check else "rewrote"
        lines = [f"{verb} {doc['rewrites']} call(s) in {len(doc['changed'])} file(s)"]
        lines += [f"  {path}" for path in doc["changed"]]
        lines += [str(f) for f in summary.findings]
        lines += [f"error: {e}" for e in summary.errors]
        return "\n".join(lines)

    out.data(report, human)
    return summary.exit_code
