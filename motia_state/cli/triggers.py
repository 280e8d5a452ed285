"""``triggers ls|dead|retry|drop|reset``: the state triggers' positions, lag and dead letters, from the store.

Everything is read from and written to the store (the reserved groups the
trigger runner keeps), so these commands work with no runtime running and
beside running ones: a retry or a reset is a request that a running
runtime picks up within a few seconds, and every edit is a
compare-and-swap or a transaction.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError
from ._common import EXIT_FAILED, EXIT_OK, CliError, Output, fail, open_store, seconds

if TYPE_CHECKING:
    from ..triggers.store import TriggerStore

__all__ = ["add_triggers"]

REFUSAL = "the triggers command"
NAME_HELP = "the trigger's name (`triggers ls` lists them)"
#: How often ``retry`` looks whether a runtime finished the retry it asked for.
POLL = 0.2


def add_triggers(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``triggers`` command group's parsers."""
    triggers = sub.add_parser(
        "triggers",
        parents=parents,
        help="the state triggers' positions, lag and dead letters; retry, drop, reset",
        description="The state triggers kept in a file or Redis store: their positions, lag and dead letters. "
        "Works with no runtime running and beside running ones (a retry or a reset is picked up by a running "
        "runtime within a few seconds).",
    )
    cmds = triggers.add_subparsers(dest="triggers_command", metavar="SUBCOMMAND", required=True)

    ls = cmds.add_parser(
        "ls",
        parents=parents,
        help="each trigger: state, position, records behind, oldest pending age, dead letters",
        description="Each trigger the store has seen: its state (running while a runtime runs it, idle, or "
        "CURSOR_EXPIRED when its position fell behind the feed's retention: stopped until reset), its position "
        "(the oldest partition's saved cursor), the records behind it, the age of the oldest matching change "
        "still to handle, its dead letters and the runtimes running it.",
    )
    ls.set_defaults(command_fn=triggers_ls)

    dead = cmds.add_parser("dead", parents=parents, help="the dead letters, of every trigger or of one")
    dead.add_argument("name", nargs="?", metavar="NAME", help="only this trigger's (default: every trigger's)")
    dead.set_defaults(command_fn=triggers_dead)

    retry = cmds.add_parser(
        "retry",
        parents=parents,
        help="run a dead letter's change again (through a running runtime)",
        description="Ask the runtimes running the trigger to run a dead letter's change once more, and wait for "
        "the outcome: exit 0 when it succeeded (it leaves the list), 1 when it failed again (it stays). With no "
        "runtime running, the request is kept and runs when one starts (exit 0).",
    )
    retry.add_argument("name", metavar="NAME", help=NAME_HELP)
    retry.add_argument("id", metavar="ID", help="the dead letter's id (`triggers dead NAME` lists them)")
    retry.add_argument(
        "--wait",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for a running runtime's outcome (default 30)",
    )
    retry.set_defaults(command_fn=triggers_retry)

    drop = cmds.add_parser("drop", parents=parents, help="forget a dead letter")
    drop.add_argument("name", metavar="NAME", help=NAME_HELP)
    drop.add_argument("id", metavar="ID", help="the dead letter's id (`triggers dead NAME` lists them)")
    drop.set_defaults(command_fn=triggers_drop)

    reset = cmds.add_parser(
        "reset",
        parents=parents,
        help="move a trigger to the feed's end or start (restarts one stopped by CURSOR_EXPIRED)",
        description="Move every partition of a trigger to the feed's last record (--to now: the changes in "
        "between are not handled) or its oldest retained one (--to start: they are handled again). This "
        "restarts a trigger stopped by CURSOR_EXPIRED; running runtimes follow within a few seconds.",
    )
    reset.add_argument("name", metavar="NAME", help=NAME_HELP)
    reset.add_argument("--to", choices=("now", "start"), required=True, help="where the trigger goes on from")
    reset.set_defaults(command_fn=triggers_reset)


@asynccontextmanager
async def _store(args: argparse.Namespace) -> AsyncIterator[TriggerStore]:
    from ..triggers.store import TriggerStore

    async with open_store(args.state, args, refuse_memory=REFUSAL) as manager:
        yield TriggerStore(manager.adapter)


async def _require(store: TriggerStore, name: str) -> None:
    try:
        await store.require(name)
    except NotFoundError as e:
        raise CliError(e.message, code="NOT_FOUND", hint="list the triggers with `motia-state triggers ls`") from None


def _not_found(e: NotFoundError, name: str) -> CliError:
    return CliError(e.message, code="NOT_FOUND", hint=f"list them with `motia-state triggers dead {name}`")


async def triggers_ls(args: argparse.Namespace, out: Output) -> int:
    """Print each trigger's status."""
    async with _store(args) as store:
        rows = [await store.status(name) for name in await store.names()]
    out.data(rows, _status_table)
    return EXIT_OK


async def triggers_dead(args: argparse.Namespace, out: Output) -> int:
    """Print the dead letters (with any retry asked for each)."""
    async with _store(args) as store:
        if args.name is not None:
            await _require(store, args.name)
        names = [args.name] if args.name is not None else await store.names()
        rows = []
        for name in names:
            for dead in await store.dead_letters(name):
                row = dead.as_dict()
                request = await store.retry_request(name, dead.id)
                row["retry"] = request.get("state") if isinstance(request, dict) else None
                rows.append(row)
    out.data(rows, _dead_table)
    return EXIT_OK


async def triggers_retry(args: argparse.Namespace, out: Output) -> int:
    """Ask for a retry, then wait for a running runtime's outcome."""
    async with _store(args) as store:
        await _require(store, args.name)
        try:
            request = await store.request_retry(args.name, args.id)
        except NotFoundError as e:
            raise _not_found(e, args.name) from None
        if not await store.live_members(args.name):
            out.message(
                f"no runtime runs trigger {args.name!r} now: the retry of {args.id} is kept and runs when one starts"
            )
            out.data({"retried": False, "queued": True, "id": args.id})
            return EXIT_OK
        outcome: Any = await store.await_retry(args.name, args.id, request, args.wait, POLL)
        state = outcome.get("state") if isinstance(outcome, dict) else None
        if state == "gone":
            out.message(
                f"dead letter {args.id} of {args.name} left the list meanwhile "
                "(a retry made elsewhere succeeded, or it was dropped)"
            )
            out.data({"retried": False, "gone": True, "id": args.id})
            return EXIT_OK
        if state not in ("succeeded", "failed"):
            fail(
                f"no runtime finished the retry of {args.id} within {args.wait:g} s",
                code="TIMEOUT",
                exit_code=EXIT_FAILED,
                hint="the request is kept: a runtime running the trigger runs it; see `motia-state triggers dead`",
            )
    succeeded = outcome["state"] == "succeeded"
    report: dict[str, Any] = {"retried": True, "succeeded": succeeded, "id": args.id}
    if not succeeded:
        report["error"] = outcome.get("error")
    out.data(report)
    if succeeded:
        out.message(f"dead letter {args.id} of {args.name} ran again and succeeded: it left the list")
        return EXIT_OK
    # The work failed: said even under -q, in the shape of every error.
    out.stderr.write(
        f"motia-state: error [STEP_FAILED]: dead letter {args.id} of {args.name} failed again: "
        f"{outcome.get('error')}\n  what to do: fix the step and retry it, or drop it with "
        f"`motia-state triggers drop {args.name} {args.id}`\n"
    )
    out.stderr.flush()
    return EXIT_FAILED


async def triggers_drop(args: argparse.Namespace, out: Output) -> int:
    """Forget a dead letter."""
    async with _store(args) as store:
        await _require(store, args.name)
        try:
            await store.drop(args.name, args.id)
        except NotFoundError as e:
            raise _not_found(e, args.name) from None
    out.data({"dropped": args.id, "trigger": args.name})
    return EXIT_OK


async def triggers_reset(args: argparse.Namespace, out: Output) -> int:
    """Move a trigger's partitions to the feed's end or start."""
    async with _store(args) as store:
        await _require(store, args.name)
        _, partitions = await store.config(args.name)
        if partitions is None:  # recorded by no runtime of this version: cover every partition it may have
            status = await store.status(args.name)
            partitions = max(status["partitions"], 8)
        request = await store.request_reset(args.name, args.to, partitions)
        running = len(await store.live_members(args.name))
    out.data({"reset": args.name, "to": args.to, "cursor": request["cursor"], "runtimes": running})
    where = "the feed's end" if args.to == "now" else "the feed's oldest retained record"
    follow = f"; {running} running runtime(s) follow within a few seconds" if running else ""
    out.message(f"trigger {args.name} goes on from {where}{follow}")
    return EXIT_OK


# -- tables for a terminal --------------------------------------------------------------------------


def _age(seconds_: float | None) -> str:
    if seconds_ is None:
        return "-"
    if seconds_ < 60:
        return f"{seconds_:.1f} s"
    if seconds_ < 3600:
        return f"{seconds_ / 60:.1f} min"
    return f"{seconds_ / 3600:.1f} h"


def _status_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    if not rows:
        return "no state triggers in this store"
    table = Table(
        "trigger", "state", "position", "behind", "oldest pending", "dead letters", "runtimes", header_style="bold"
    )
    for row in rows:
        state = row["state"]
        style = {"CURSOR_EXPIRED": "bold red", "running": "green"}.get(state, "")
        table.add_row(
            row["name"],
            f"[{style}]{state}[/]" if style else state,
            row["position"] or "(start)",
            "-" if row["behind"] is None else str(row["behind"]),
            _age(row["oldestPendingAge"]),
            str(row["deadLetters"]),
            str(row["runtimes"]),
        )
    return table


def _dead_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    if not rows:
        return "no dead letters"
    table = Table("trigger", "id", "entry", "event", "committed", "attempts", "error", "retry", header_style="bold")
    for row in rows:
        change = row["change"]
        at = datetime.datetime.fromtimestamp(change["at"] / 1000).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            row["trigger"],
            row["id"],
            f"{change['group']}/{change['key']}",
            change["event"],
            at,
            str(row["attempts"]),
            row["error"],
            row["retry"] or "",
        )
    return table
