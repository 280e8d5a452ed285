"""The ``motia-state`` command line: one module per command group, sharing ``_common``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import __version__
from ._common import (
    EXIT_USAGE,
    Output,
    add_global_options,
    configure_logging,
    fill_global_defaults,
    run_command,
)

__all__ = ["build_parser", "main"]

DESCRIPTION = (
    "One shared, atomic state for workflow steps in Python, Node and Ruby: run steps, serve an app, and "
    "inspect, move, check and upgrade state. Options marked global may come before or after the command."
)


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error that says what to do next (exit 2)."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"motia-state: error [INVALID_ARGUMENT]: {message}\n  what to do: see `{self.prog} --help`\n")
        raise SystemExit(EXIT_USAGE)


def _add_server(sub: Any, name: str, add_arguments: Any, help: str, description: str) -> None:
    """A server command (dev, workbench) whose own module declares its options and runs it."""
    own = argparse.ArgumentParser(add_help=False)
    add_global_options(own, skip=frozenset({"state", "debug"}))
    server = sub.add_parser(name, parents=[own], help=help, description=description)
    add_arguments(server)
    if not any(action.dest == "debug" for action in server._actions):
        server.add_argument("--debug", action="store_true", help="add our own traceback to errors")
    # The command declares --state (and --debug) itself: a value given before its name must not be overwritten.
    for action in server._actions:
        if action.dest in ("state", "debug"):
            action.default = argparse.SUPPRESS
    server.set_defaults(command_fn=None, runner=name)


def _add_dev(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    from ..app.dev import add_arguments

    _add_server(
        sub,
        "dev",
        add_arguments,
        "serve a folder of steps on their triggers (HTTP, events, cron)",
        "Serve an app: a folder of steps on their triggers (HTTP, events, cron, state) and the workbench. "
        "SIGINT or SIGTERM stops it (exit 0).",
    )


def _add_workbench(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    from ..web.serve import add_arguments

    _add_server(
        sub,
        "workbench",
        add_arguments,
        "browse, edit and replay a store in the browser (no steps)",
        "Serve the workbench over a store, with no steps. SIGINT or SIGTERM stops it (exit 0).",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line: every command, each with the global options."""
    from .bindings import add_bindings
    from .codemod import add_codemod
    from .run import add_demo, add_run
    from .state import add_state
    from .transfer import add_transfer
    from .validate import add_validate

    globals_ = argparse.ArgumentParser(add_help=False)
    add_global_options(globals_)
    parents = [globals_]
    parser = _Parser(
        prog="motia-state",
        description=DESCRIPTION,
        parents=parents,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"motia-state {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_run(sub, parents)
    _add_dev(sub, parents)
    _add_workbench(sub, parents)
    add_state(sub, parents)
    add_transfer(sub, parents)
    add_validate(sub, parents)
    add_codemod(sub, parents)
    add_bindings(sub, parents)
    add_demo(sub, parents)
    for extra in _optional_commands():
        extra(sub, parents)
    return parser


def _optional_commands() -> list[Any]:
    """Commands whose layer may be absent from this build (each module says so itself)."""
    found = []
    for module, name in (("create", "add_create"), ("triggers", "add_triggers"), ("bench", "add_bench")):
        try:
            mod = __import__(f"{__name__}.{module}", fromlist=[name])
        except ImportError:
            continue
        found.append(getattr(mod, name))
    return found


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``motia-state`` console script (and ``python -m motia_state``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    fill_global_defaults(args)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure_logging(args)
    if getattr(args, "runner", None) == "dev":
        from ..app.dev import run_dev

        return run_dev(args)
    if getattr(args, "runner", None) == "workbench":
        from ..web.serve import run_workbench

        return run_workbench(args)
    out = Output(args)
    return run_command(args.command_fn, args, out)


if __name__ == "__main__":
    sys.exit(main())
