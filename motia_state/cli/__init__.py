"""The ``motia-state`` command line: one module per command group, sharing ``_common``.

The entry point takes over SIGINT and SIGTERM before it imports anything
else (``_stop``), and the command modules import their libraries only when
their command runs, so ``--help`` and the start of every command stay quick
and a stop that comes while a command is still loading is a clean stop.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection
from typing import Any

from . import _stop

__all__ = ["build_parser", "main"]

#: Bad usage (see ``_common``; repeated here so that a usage error needs no other import).
EXIT_USAGE = 2

#: The commands that serve until stopped: a signal is their normal end (exit 0).
SERVERS = ("dev", "workbench")

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


def _add_server(
    sub: Any, name: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None, help: str, description: str
) -> None:
    """A server command (dev, workbench) whose own module declares its options and runs it.

    Without ``add_arguments`` the command is only named (with its help),
    so that listing the commands does not import the server's libraries.
    """
    from ._common import add_global_options

    own = argparse.ArgumentParser(add_help=False)
    add_global_options(own, skip=frozenset({"state", "debug"}))
    server = sub.add_parser(name, parents=[own], help=help, description=description, add_help=add_arguments is not None)
    if add_arguments is None:
        server.set_defaults(command_fn=None, runner=name)
        return
    add_arguments(server)
    if not any(action.dest == "debug" for action in server._actions):
        server.add_argument("--debug", action="store_true", help="add our own traceback to errors")
    # The command declares --state (and --debug) itself: a value given before its name must not be overwritten.
    for action in server._actions:
        if action.dest in ("state", "debug"):
            action.default = argparse.SUPPRESS
    server.set_defaults(command_fn=None, runner=name)


def _add_dev(sub: Any, parents: list[argparse.ArgumentParser], *, options: bool = True) -> None:
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    if options:
        from ..app.dev import add_arguments

    _add_server(
        sub,
        "dev",
        add_arguments,
        "serve a folder of steps on their triggers (HTTP, events, cron)",
        "Serve an app: a folder of steps on their triggers (HTTP, events, cron, state) and the workbench. "
        "SIGINT or SIGTERM stops it (exit 0).",
    )


def _add_workbench(sub: Any, parents: list[argparse.ArgumentParser], *, options: bool = True) -> None:
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    if options:
        from ..web.serve import add_arguments

    _add_server(
        sub,
        "workbench",
        add_arguments,
        "browse, edit and replay a store in the browser (no steps)",
        "Serve the workbench over a store, with no steps. SIGINT or SIGTERM stops it (exit 0).",
    )


def build_parser(*, servers: Collection[str] = SERVERS) -> argparse.ArgumentParser:
    """The command line: every command, each with the global options.

    Only the server commands (dev, workbench) named in ``servers`` get their
    own options, which live in (and import) the app and the workbench; the
    others are only named. The entry point parses with none first, and again
    with the one the command line names when it is a server.
    """
    from .. import __version__
    from ._common import add_global_options
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
    _add_dev(sub, parents, options="dev" in servers)
    _add_workbench(sub, parents, options="workbench" in servers)
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
    """Entry point of the ``motia-state`` console script (and ``python -m motia_state``).

    SIGINT and SIGTERM are taken over first and kept until the process is
    gone (``_stop``): a stop while the command starts ends the process
    cleanly (a server with exit 0, any other command with 130), whatever it
    was importing at the time; one while it runs is the command's own to
    handle; one after it has its exit code changes nothing.
    """
    _stop.install()
    _closed_standard_streams()
    args: argparse.Namespace | None = None
    try:
        parser, args = _parse(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return _run(args)
    except BaseException as e:
        signum = _stop.stopped_by(e)
        if signum is None:
            raise
        return _stopped_early(args, argv, signum)
    finally:
        # An attribute store runs no signal handler before it (a call could): from here on, none raises.
        _stop.settled = True
        _stop.finish()


def _parse(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed command line; a server's own options are loaded only when it is the command."""
    parser = build_parser(servers=())
    first, _ = parser.parse_known_args(argv)
    server = getattr(first, "runner", None)
    if server in SERVERS:
        parser = build_parser(servers=(server,))
    return parser, parser.parse_args(argv)


def _run(args: argparse.Namespace) -> int:
    from ._common import Output, configure_logging, fill_global_defaults, run_command

    fill_global_defaults(args)
    configure_logging(args)
    runner = getattr(args, "runner", None)
    port = getattr(args, "port", None)
    if runner in SERVERS and isinstance(port, int) and not 0 <= port <= 65535:
        # Checked here for both servers: a socket library takes 99999 modulo 65536 and serves on another port.
        sys.stderr.write(f"motia-state {runner}: --port {port}: expected 0..65535 (0 picks a free one)\n")
        return EXIT_USAGE
    if runner == "dev":
        from ..app.dev import run_dev

        return run_dev(args)
    if runner == "workbench":
        from ..web.serve import run_workbench

        return run_workbench(args)
    out = Output(args)
    return run_command(args.command_fn, args, out)


def _closed_standard_streams() -> None:
    """Give a command started with stdout or stderr closed (``>&-``) streams it can use.

    Python leaves ``sys.stdout`` None then, and every write would fail with
    an AttributeError. A closed stdout becomes a pipe nobody reads: a result
    written to it is output cut short, as when the reader of a pipe went
    away (exit 1, no message). A closed stderr becomes /dev/null: the exit
    code still tells what happened.
    """
    import os

    if sys.stdout is None:
        read, write = os.pipe()
        os.dup2(write, 1)  # when the read end took fd 1, this closes it: either way nobody reads
        for fd in {read, write} - {1}:
            os.close(fd)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 (the process's stdout)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (the process's stderr)


def _stopped_early(args: argparse.Namespace | None, argv: list[str] | None, signum: int) -> int:
    """A stop before the command took over the signals: nothing was left running; say so and exit as a stop."""
    command = getattr(args, "command", None) or _command_in(sys.argv[1:] if argv is None else argv)
    name = _stop.signal_name(signum)
    try:
        if command in SERVERS:
            sys.stderr.write(f"motia-state {command}: stopped by {name} while starting; nothing is served\n")
        else:
            sys.stderr.write(f"motia-state: interrupted by {name}; everything it started was stopped\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the exit code still says it
        pass
    return 0 if command in SERVERS else 130


def _command_in(argv: list[str]) -> str | None:
    """The command of a command line that was not parsed yet (the stop came first): its first word."""
    words = iter(argv)
    for word in words:
        if word in ("--state", "--backend"):  # the global options that take a value
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


if __name__ == "__main__":
    sys.exit(main())
