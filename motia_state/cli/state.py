"""``state ls|get|set|rm|op|watch|history``: read and change a store's entries from the command line."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._common import EXIT_OK, CliError, Output, fail, open_store, parse_json, read_text_arg, text_source

if TYPE_CHECKING:
    from ..manager import StateManager
    from ..records import Change

__all__ = ["add_state", "json_type"]

REFUSAL = "the state command"

#: ``state op`` operation names (both spellings) and the manager method each calls.
OPERATIONS = {
    "get": "get",
    "set": "set",
    "delete": "delete",
    "exists": "exists",
    "increment": "increment",
    "decrement": "decrement",
    "push": "push",
    "unshift": "unshift",
    "pop": "pop",
    "shift": "shift",
    "setField": "set_field",
    "set_field": "set_field",
    "deleteField": "delete_field",
    "delete_field": "delete_field",
    "compareAndSwap": "compare_and_swap",
    "compare_and_swap": "compare_and_swap",
}


def json_type(value: Any) -> str:
    """The JSON type name of a value (null, boolean, number, string, array, object)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def encoded_size(value: Any) -> int:
    """How many bytes the value takes as compact JSON."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def add_state(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``state`` command group's parsers."""
    state = sub.add_parser(
        "state",
        parents=parents,
        help="read and change a store's entries",
        description="Read and change the entries of a file or Redis store (memory: is refused: it lives in one process).",
    )
    cmds = state.add_subparsers(dest="state_command", metavar="SUBCOMMAND", required=True)

    ls = cmds.add_parser("ls", parents=parents, help="the groups, or a group's keys with type and size")
    ls.add_argument("group", nargs="?", help="list this group's keys (default: list the groups)")
    ls.set_defaults(command_fn=state_ls)

    get = cmds.add_parser("get", parents=parents, help="print an entry's value (null when missing)")
    get.add_argument("group")
    get.add_argument("key")
    get.set_defaults(command_fn=state_get)

    set_ = cmds.add_parser("set", parents=parents, help="write an entry")
    set_.add_argument("group")
    set_.add_argument("key")
    set_.add_argument("value", metavar="JSON|@FILE|@-", help="the value as JSON, @FILE, or @- for stdin")
    set_.set_defaults(command_fn=state_set)

    rm = cmds.add_parser("rm", parents=parents, help="delete an entry, or every entry of a group")
    rm.add_argument("group")
    rm.add_argument("key", nargs="?", help="the entry to delete (default: the whole group)")
    rm.set_defaults(command_fn=state_rm)

    op = cmds.add_parser(
        "op",
        parents=parents,
        help="run any operation (state op shop stock decrement 2)",
        description="Run one state operation. Each ARG is JSON when it parses as JSON, else a string. "
        f"Operations: {', '.join(sorted({k for k in OPERATIONS if '_' not in k}))}.",
    )
    op.add_argument("group")
    op.add_argument("key")
    op.add_argument("operation")
    op.add_argument("args", nargs="*", metavar="ARG")
    op.set_defaults(command_fn=state_op)

    watch = cmds.add_parser("watch", parents=parents, help="print the change feed live (Ctrl-C stops)")
    watch.add_argument("--group", action="append", help="only this group (repeatable)")
    watch.add_argument("--key", action="append", help="only this key (repeatable)")
    watch.add_argument("--after", metavar="CURSOR", help="start after this cursor (default: from now on)")
    watch.add_argument("--no-follow", action="store_true", help="print what is recorded and stop")
    watch.set_defaults(command_fn=state_watch)

    history = cmds.add_parser("history", parents=parents, help="an entry's recorded changes, newest first")
    history.add_argument("group")
    history.add_argument("key")
    history.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    history.set_defaults(command_fn=state_history)


def _check_names(args: argparse.Namespace) -> None:
    """The group and key as the command line names them (a bad one is reported as the group or the key)."""
    from ..values import check_name

    with _bad_input():
        if getattr(args, "group", None) is not None:
            check_name(args.group, "group")
        if getattr(args, "key", None) is not None:
            check_name(args.key, "key")


@contextlib.contextmanager
def _bad_input() -> Iterator[None]:
    """What the store would refuse in the command line's own words or values is bad input (exit 2), not a failure."""
    from ..errors import StateError

    try:
        yield
    except StateError as e:
        raise CliError(e.message, code=e.code) from None


def _checked(value: Any, what: str = "value") -> Any:
    """``value`` as the store would take it (a name, size or depth over the limits refused before the store opens)."""
    from ..values import import_value

    with _bad_input():
        import_value(value, what=what)
    return value


async def state_ls(args: argparse.Namespace, out: Output) -> int:
    """The groups with their entry counts, or one group's keys with type and size."""
    _check_names(args)
    async with open_store(args.state, args, refuse_memory=REFUSAL, existing=True) as manager:
        if args.group is None:
            rows = [{"group": g, "keys": len(await manager.keys(g))} for g in sorted(await manager.groups())]
            out.data(rows, lambda r: _table(["group", "keys"], r))
            return EXIT_OK
        rows = []
        for key in sorted(await manager.keys(args.group)):
            value = await manager.get(args.group, key)
            rows.append({"key": key, "type": json_type(value), "size": encoded_size(value)})
        out.data(rows, lambda r: _table(["key", "type", "size"], r))
    return EXIT_OK


def _table(columns: list[str], rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(*columns, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    return table if rows else "(none)"


def _value(value: Any) -> Any:
    from rich.json import JSON

    return JSON(json.dumps(value, ensure_ascii=False))


async def state_get(args: argparse.Namespace, out: Output) -> int:
    """Print an entry's value; a missing key prints null (exit 0)."""
    _check_names(args)
    async with open_store(args.state, args, refuse_memory=REFUSAL, existing=True) as manager:
        out.data(await manager.get(args.group, args.key), _value)
    return EXIT_OK


async def state_set(args: argparse.Namespace, out: Output) -> int:
    """Write an entry and print what was stored."""
    _check_names(args)
    value = _checked(parse_json(read_text_arg(args.value, "value"), "value", text_source(args.value)))
    async with open_store(args.state, args, refuse_memory=REFUSAL) as manager:
        out.data(await manager.set(args.group, args.key, value), _value)
    return EXIT_OK


async def state_rm(args: argparse.Namespace, out: Output) -> int:
    """Delete one entry (printing its old value), or clear a whole group."""
    _check_names(args)
    async with open_store(args.state, args, refuse_memory=REFUSAL) as manager:
        if args.key is None:
            await manager.clear(args.group)
            out.message(f"cleared group {args.group}")
            return EXIT_OK
        out.data(await manager.delete(args.group, args.key), _value)
    return EXIT_OK


def _arg(text: str) -> Any:
    # JSON when it parses as JSON (NaN and Infinity do not: they stay strings), else the text.
    try:
        return parse_json(text, "argument")
    except CliError as e:
        if e.code == "LIMIT_EXCEEDED":
            raise
        return text


async def state_op(args: argparse.Namespace, out: Output) -> int:
    """Run one operation by name with JSON-or-string arguments and print its result."""
    _check_names(args)
    method = OPERATIONS.get(args.operation)
    if method is None:
        fail(f"{args.operation}: not an operation", hint=f"use one of {', '.join(sorted(OPERATIONS))}")
    values = [_checked(_arg(a), "argument") for a in args.args]
    async with open_store(args.state, args, refuse_memory=REFUSAL) as manager:
        fn = getattr(manager, method)
        try:
            inspect.signature(fn).bind(args.group, args.key, *values)
        except TypeError as e:
            fail(f"{args.operation}: wrong arguments: {e}", hint="see docs/state.md for the operation's arguments")
        out.data(await fn(args.group, args.key, *values), _value)
    return EXIT_OK


def _change_line(change: Change) -> str:
    at = datetime.datetime.fromtimestamp(change.at / 1000).strftime("%H:%M:%S.%f")[:-3]
    origin = f" by {change.origin.get('step')}" if change.origin else ""
    return (
        f"{at} {change.cursor} {change.group}/{change.key} {change.op}: "
        f"{json.dumps(change.old_value)} -> {json.dumps(change.new_value)}{origin}"
    )


async def _feed(manager: StateManager, args: argparse.Namespace) -> Any:
    after = args.after or ("now" if not args.no_follow else None)
    return manager.changes(after, groups=args.group, keys=args.key, follow=not args.no_follow)


async def state_watch(args: argparse.Namespace, out: Output) -> int:
    """Print each change as it is recorded (a JSON line in a pipe) until stopped."""
    from ..values import check_name

    with _bad_input():  # a filter no entry can match (an empty or reserved name) is a mistake, not a quiet watch
        for group in args.group or ():
            check_name(group, "--group")
        for key in args.key or ():
            check_name(key, "--key")
    async with open_store(args.state, args, refuse_memory=REFUSAL) as manager:
        stream = await _feed(manager, args)
        if not args.no_follow:
            out.message("watching the change feed (Ctrl-C stops)")
        async for change in stream:
            if out.json:
                out.line(change.to_wire())
            else:
                out.stdout.write(_change_line(change) + "\n")
                out.stdout.flush()
    return EXIT_OK


async def state_history(args: argparse.Namespace, out: Output) -> int:
    """An entry's retained changes, newest first."""
    _check_names(args)
    async with open_store(args.state, args, refuse_memory=REFUSAL, existing=True) as manager:
        records = await manager.history(args.group, args.key, args.limit)
    if out.json:
        out.data([c.to_wire() for c in records])
    else:
        out.stdout.write("".join(_change_line(c) + "\n" for c in records) or "(no recorded changes)\n")
    return EXIT_OK
