"""``bindings``: where the shipped Node, Ruby and Python bindings are, for editors and type checkers."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_OK, Output

__all__ = ["add_bindings"]


def add_bindings(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``bindings`` parser."""
    bindings = sub.add_parser(
        "bindings",
        parents=parents,
        help="print where the shipped bindings are (for NODE_PATH, RUBYLIB, editors)",
        description="Print where the bindings shipped with motia-state are. Steps run by motia-state can "
        "already require('motia-state') (Node) and require \"motia_state\" (Ruby); point an editor or a type "
        "checker at these folders to resolve the same names.",
    )
    bindings.add_argument("--lang", choices=("node", "ruby", "python"), help="print only this language's folder")
    bindings.set_defaults(command_fn=show_bindings, needs_store=False)


async def show_bindings(args: argparse.Namespace, out: Output) -> int:
    """One folder (with --lang), or all of them."""
    from ..runtime.runners import bindings_dir, module_paths

    paths = {lang: str(path) for lang, path in module_paths().items()}
    if args.lang:
        out.stdout.write(paths[args.lang] + "\n")
        return EXIT_OK
    doc = {
        "root": str(bindings_dir()),
        "node": {"NODE_PATH": paths["node"], "types": str(module_paths()["node"] / "motia-state" / "index.d.ts")},
        "ruby": {"RUBYLIB": paths["ruby"]},
        "python": {"PYTHONPATH": paths["python"]},
    }

    def human(d: dict[str, Any]) -> str:
        return "\n".join(
            [
                f"node:   NODE_PATH={d['node']['NODE_PATH']}   (types: {d['node']['types']})",
                f"ruby:   RUBYLIB={d['ruby']['RUBYLIB']}",
                f"python: PYTHONPATH={d['python']['PYTHONPATH']}",
            ]
        )

    out.data(doc, human)
    return EXIT_OK
