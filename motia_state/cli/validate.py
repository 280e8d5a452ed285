"""``validate``: check a store without changing it, and list every problem found."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import StateError
from ._common import EXIT_FAILED, EXIT_OK, Output, open_store

__all__ = ["add_validate", "check_file_store"]


def add_validate(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``validate`` parser."""
    validate = sub.add_parser(
        "validate",
        parents=parents,
        help="check a store: values, names, and the file store's log and snapshot",
        description="Check a store without changing it: every value valid JSON within the limits, every name "
        "valid, and for a file store every record of its log and its snapshot. Exit 1 if anything is wrong.",
    )
    validate.set_defaults(command_fn=validate_store)


def check_file_store(directory: Path) -> list[dict[str, Any]]:
    """Read a file store's snapshot and every record of its log (read-only); the problems found."""
    from ..adapters.file import format as fmt

    problems: list[dict[str, Any]] = []
    if not directory.is_dir():
        return [{"where": str(directory), "problem": "no such store folder"}]
    try:
        fmt.read_snapshot(directory / "snapshot")
    except StateError as e:
        problems.append({"where": str(directory / "snapshot"), "problem": e.message})
    log = directory / "log"
    if not log.exists():
        return problems
    fd = os.open(log, os.O_RDONLY)
    try:
        head = os.pread(fd, fmt.LOG_HEADER.size, 0)
        if len(head) < fmt.LOG_HEADER.size:
            problems.append({"where": f"{log}:0", "problem": "the log's header is truncated"})
            return problems
        magic, version, _generation = fmt.LOG_HEADER.unpack(head)
        if magic != fmt.LOG_MAGIC:
            problems.append({"where": f"{log}:0", "problem": "not a motia-state log (bad magic)"})
            return problems
        if version not in fmt.READABLE_VERSIONS:
            problems.append({"where": f"{log}:0", "problem": f"format version {version} is not readable here"})
            return problems
        data: dict[str, dict[str, Any]] = {}
        try:
            fmt.LogReader(fd).replay(fmt.LOG_HEADER.size, data, whole=True)
        except fmt.Damage as d:
            kind = "a torn last record (a crash mid-append; dropped when the store opens)" if d.torn else "damage"
            problems.append({"where": f"{log}:{d.offset}", "problem": f"{kind}: {d.reason}", "torn": d.torn})
        except fmt.Moved:
            pass  # a compaction replaced this log while we read: its successor was checked by the snapshot
        except StateError as e:
            problems.append({"where": str(log), "problem": e.message})
        except (KeyError, TypeError, ValueError) as e:
            problems.append({"where": str(log), "problem": f"a record cannot be applied: {e}"})
    finally:
        os.close(fd)
    return problems


async def validate_store(args: argparse.Namespace, out: Output) -> int:
    """Check the files (file store), then every name and value through the adapter."""
    from ..values import check_name, import_value
    from ._common import check_store_url

    config = check_store_url(args.state, args, refuse_memory="validate")
    problems: list[dict[str, Any]] = []
    if config["adapter"] == "file":
        problems = check_file_store(Path(config["path"]))
        # Opening a damaged file store would repair it (a torn tail is dropped) or refuse it: report and stop.
        if problems:
            return _report(problems, 0, out)
    entries = 0
    # existing: a folder that holds no store is reported, not made into an empty one by the check.
    async with open_store(args.state, args, existing=True) as manager:
        limits = manager.limits
        for group in sorted(await manager.groups()):
            try:
                check_name(group, "group", limits)
            except StateError as e:
                problems.append({"where": group, "problem": e.message})
            for key in sorted(await manager.keys(group)):
                try:
                    check_name(key, "key", limits)
                    import_value(await manager.get(group, key), limits)
                except StateError as e:
                    problems.append({"where": f"{group}/{key}", "problem": f"[{e.code}] {e.message}"})
                entries += 1
    return _report(problems, entries, out)


def _report(problems: list[dict[str, Any]], entries: int, out: Output) -> int:
    def human(doc: dict[str, Any]) -> Any:
        if not doc["problems"]:
            return f"ok: {doc['entries']} entries checked, no problems"
        from rich.table import Table

        table = Table("where", "problem", box=None, header_style="bold", title=f"{len(doc['problems'])} problem(s)")
        for p in doc["problems"]:
            table.add_row(p["where"], p["problem"])
        return table

    out.data({"ok": not problems, "entries": entries, "problems": problems}, human)
    return EXIT_FAILED if problems else EXIT_OK
