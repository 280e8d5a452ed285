"""``codemod``: upgrade step code to the current state API and point at read-modify-write patterns."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import Output

__all__ = ["add_codemod"]

_HINT = "fix or skip the files named above (they were left as they are); the other files were processed"
_INTERNAL_HINT = "the files named above were left as they are; run again with --debug and report the problem"


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
        return "\n".join(lines)

    out.data(report, human)
    # Each file that could not be processed is also an error message (stderr), beside the report's list.
    for error in report["errors"]:
        if out.json_errors:
            out.stderr.write(json.dumps({"error": error}, ensure_ascii=False) + "\n")
        else:
            out.stderr.write(f"motia-state codemod: error [{error['code']}]: {error['path']}: {error['message']}\n")
    if summary.errors and not out.json_errors:
        out.stderr.write(f"  what to do: {_HINT if summary.exit_code == 2 else _INTERNAL_HINT}\n")
    out.stderr.flush()
    return summary.exit_code
