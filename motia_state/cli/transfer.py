"""``export``, ``import`` and ``migrate``: move a store's entries, streamed, checked by sha256."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias

from .._urls import redacted
from ..errors import LimitExceededError, StateError
from ._common import EXIT_FAILED, EXIT_OK, Output, check_store_url, fail, open_store

if TYPE_CHECKING:
    from ..manager import StateManager

__all__ = ["add_transfer", "entries", "verify_export"]

FORMAT = "motia-state-export"
VERSION = 1
#: Entries read from a store between two looks at the progress (and at a checkpoint).
PAGE = 500


def add_transfer(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``export``, ``import`` and ``migrate`` parsers."""
    export = sub.add_parser(
        "export",
        parents=parents,
        help="write the store as NDJSON (header, one line per entry, footer with sha256)",
        description="Write every entry of the store as NDJSON: a header line, one line per entry, and a footer "
        "with the count and the sha256 of the entry lines.",
    )
    export.add_argument("--groups", metavar="G,...", help="only these groups (comma-separated; default: all)")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    export.set_defaults(command_fn=export_store)

    imp = sub.add_parser(
        "import",
        parents=parents,
        help="read an export into the store",
        description="Read an export into the store. The footer is checked before anything is written.",
    )
    imp.add_argument("file", metavar="FILE|-", help="the export file, or - for stdin")
    imp.add_argument(
        "--mode",
        choices=("merge", "replace", "skip-existing"),
        default="merge",
        help="merge: set every entry, keep others (default); replace: the file's groups end up exactly as in "
        "the file; skip-existing: keep entries already present",
    )
    imp.set_defaults(command_fn=import_store)

    migrate = sub.add_parser(
        "migrate",
        parents=parents,
        help="copy every entry from one store to another (streamed, resumable)",
        description="Copy every entry from one store to another, a page at a time, resumable after an "
        "interruption (a checkpoint file records the last page copied). A Redis written in the layout before the "
        "change feed is read as it is; given as both --from and --to, it is moved into the current layout in place "
        "(stop its old runtimes first). A Redis of layout 2 given as both --from and --to is upgraded in place "
        "(its data, feed records and cursors kept).",
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="the store to read")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL", help="the store to write")
    migrate.add_argument("--verify", action="store_true", help="then compare both sides group by group")
    migrate.add_argument("--dry-run", action="store_true", help="write nothing (with --verify: only compare)")
    migrate.add_argument(
        "--follow",
        action="store_true",
        help="after the copy, apply the source's change feed until stopped, printing the lag",
    )
    migrate.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=None,
        help="where the copy's position is kept (default: .motia-migrate-<hash>.json in the current folder)",
    )
    migrate.set_defaults(command_fn=migrate_store)


class LegacyRedis:
    """A Redis store in the layout before the change feed, read for ``migrate`` (it refuses every operation).

    Groups are read in name order, each with HSCAN and its keys sorted, so a
    copy's checkpoint (a group and a key) means the same on every run. The
    reserved ``__motia/`` groups (a runtime's bookkeeping, such as trigger
    positions in that store's own feed) mean nothing in another store and
    are left out.
    """

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.client = adapter.client
        self.prefix: str = adapter.key_prefix

    @classmethod
    async def detect(cls, manager: StateManager) -> LegacyRedis | None:
        """The store behind ``manager`` when it is a Redis holding the old layout (no marker, old hashes)."""
        from ..adapters.redis import RedisStateAdapter  # without importing redis-py
        from ..adapters.redis.layout import legacy_groups

        adapter = manager.adapter
        if not isinstance(adapter, RedisStateAdapter):
            return None

        if await adapter.client.get(f"{adapter.key_prefix}layout") is not None:
            return None
        async for _ in legacy_groups(adapter.client, adapter.key_prefix):
            return cls(adapter)
        return None

    def _key(self, group: str) -> str:
        from ..adapters.redis.layout import escape_group

        return f"{self.prefix}{{{escape_group(group)}}}"

    async def groups(self) -> list[str]:
        """The old layout's groups, reserved ones left out, in name order."""
        from ..adapters.redis.layout import legacy_groups

        return sorted({g async for g in legacy_groups(self.client, self.prefix) if not g.startswith("__motia/")})

    async def count(self, groups: list[str] | None) -> int:
        """How many entries the groups hold."""
        return sum([int(await self.client.hlen(self._key(g))) for g in (groups or await self.groups())])

    async def pages(self, groups: list[str] | None, size: int) -> AsyncIterator[tuple[str, list[tuple[str, Any]]]]:
        """(group, [(key, value), ...]) pages, in group then key order; one group's entries held at a time."""
        for group in sorted(groups if groups is not None else await self.groups()):
            entries = {}
            async for field, text in self.client.hscan_iter(self._key(group), count=1000):
                entries[field.decode()] = text
            names = sorted(entries)
            for start in range(0, len(names), size):
                yield group, [(k, json.loads(entries[k])) for k in names[start : start + size]]


#: A store ``migrate`` reads: a running store, or a Redis in the old layout.
Store: TypeAlias = "StateManager | LegacyRedis"


def _same_store(left: str, right: str) -> bool:
    """Whether two store URLs name the same store (a Redis database, or a file store's folder)."""
    if left.startswith("file:") and right.startswith("file:"):
        return Path(left[5:]).resolve() == Path(right[5:]).resolve()
    if left.startswith("redis") and right.startswith("redis"):
        return _redis_database(left) == _redis_database(right)
    return left == right


def _redis_database(url: str) -> tuple[str | None, int, str]:
    """Host, port and database of a Redis URL (a ``?db=`` in the query wins over the path, as in redis-py)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    database = parse_qs(parts.query).get("db", [parts.path.strip("/") or "0"])[0]
    return parts.hostname, parts.port or 6379, database


def _entry_line(group: str, key: str, value: Any) -> bytes:
    return (json.dumps({"groupId": group, "key": key, "value": value}, ensure_ascii=False) + "\n").encode()


async def pages(manager: Store, groups: list[str] | None = None) -> AsyncIterator[tuple[str, list[tuple[str, Any]]]]:
    """The store's entries a page at a time: (group, [(key, value), ...]) in group then key order.

    Each page is read with one batch (an exists and a get per key, so a
    stored null is told apart from a key deleted meanwhile): one round trip
    per page on Redis. Only a group's key names and one page of values are
    held at once.
    """
    if isinstance(manager, LegacyRedis):
        async for item in manager.pages(groups, PAGE):
            yield item
        return
    for group in sorted(groups if groups is not None else await manager.groups()):
        keys = sorted(await manager.keys(group))
        for start in range(0, len(keys), PAGE):
            chunk = keys[start : start + PAGE]
            ops = [{"type": t, "key": k} for k in chunk for t in ("exists", "get")]
            try:
                results = (await manager.batch(group, ops)).results
                page = [
                    (key, results[2 * i + 1].value)
                    for i, key in enumerate(chunk)
                    if results[2 * i].value is True and results[2 * i + 1].code is None
                ]
            except LimitExceededError:
                # Large values: a page's results would be over the result limit; read them one by one.
                page = [(key, await manager.get(group, key)) for key in chunk if await manager.exists(group, key)]
            if page:
                yield group, page


async def entries(manager: StateManager, groups: list[str] | None = None) -> AsyncIterator[tuple[str, str, Any]]:
    """Every (group, key, value) of the store in group then key order, read a page at a time."""
    async for group, page in pages(manager, groups):
        for key, value in page:
            yield group, key, value


async def _count(manager: Store, groups: list[str] | None) -> int:
    if isinstance(manager, LegacyRedis):
        return await manager.count(groups)
    return sum([len(await manager.keys(g)) for g in (groups if groups is not None else await manager.groups())])


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """stdout, or a temporary file next to ``path`` renamed over it once complete."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        fail(f"-o {path}: is a folder", hint="give the export's file name, e.g. -o backup.ndjson")
    if not target.parent.is_dir():
        fail(f"-o {path}: the folder {target.parent} does not exist", hint="create it, or give another path")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def export_store(args: argparse.Namespace, out: Output) -> int:
    """Write the header, each entry, and the footer over the entry lines' bytes."""
    groups = [g for g in args.groups.split(",") if g] if args.groups is not None else None
    if groups == []:
        fail(
            f"--groups {args.groups!r} names no group", hint="give G1,G2,...; leave --groups out to export every group"
        )
    async with open_store(args.state, args, existing=True) as manager:
        total = await _count(manager, groups)
        digest = hashlib.sha256()
        count = 0
        with _output(args.output) as handle, out.progress("exporting", total) as advance:
            header = {
                "format": FORMAT,
                "version": VERSION,
                "source": redacted(args.state),
                "createdAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            }
            handle.write((json.dumps(header) + "\n").encode())
            async for group, key, value in entries(manager, groups):
                line = _entry_line(group, key, value)
                digest.update(line)
                handle.write(line)
                count += 1
                if count % PAGE == 0:
                    advance(PAGE)
            handle.write((json.dumps({"count": count, "sha256": digest.hexdigest()}) + "\n").encode())
            advance(count % PAGE)
    out.message(f"exported {count} entries" + (f" to {args.output}" if args.output else ""))
    return EXIT_OK


def verify_export(path: str, name: str | None = None) -> dict[str, Any]:
    """Check an export before it is used: header, every entry line, and the footer's count and sha256.

    Returns the header with ``count`` and ``groups``; a damaged file is a
    usage error (exit 2) naming the line (``name`` is how messages call the file).
    """
    from ..values import check_name, import_value

    shown = name or path
    digest = hashlib.sha256()
    count = 0
    groups: set[str] = set()
    footer: dict[str, Any] | None = None
    with open(path, "rb") as handle:
        first = handle.readline()
        if not first:
            fail(f"{shown}: is empty, not a motia-state export", hint="give a file written by `motia-state export`")
        try:
            header = json.loads(first)
        except (ValueError, RecursionError):
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            fail(f"{shown}: not a motia-state export (line 1 is not its header)")
        if header.get("version") != VERSION:
            fail(f"{shown}: export version {header.get('version')!r} is not supported (this one reads {VERSION})")
        number = 1
        for line in handle:
            number += 1
            if footer is not None:
                fail(f"{shown}:{number}: a line after the footer", hint="the file was damaged or concatenated")
            try:
                doc = json.loads(line)
            except ValueError:
                fail(f"{shown}:{number}: not a JSON line", hint="the file was damaged; export it again")
            except RecursionError:
                fail(
                    f"{shown}:{number}: nests too deep to read",
                    code="LIMIT_EXCEEDED",
                    hint="values nest at most 256 levels deep; this line was not written by export",
                )
            if isinstance(doc, dict) and "sha256" in doc and "groupId" not in doc:
                footer = doc
                continue
            if not (isinstance(doc, dict) and isinstance(doc.get("groupId"), str) and isinstance(doc.get("key"), str)):
                fail(f"{shown}:{number}: not an entry line (groupId, key, value)")
            if "value" not in doc:
                fail(f"{shown}:{number}: an entry line without a value")
            try:
                # What the store would refuse is refused here, before anything is written.
                check_name(doc["groupId"], "the group")
                check_name(doc["key"], "the key")
                import_value(doc["value"])
            except StateError as e:
                fail(
                    f"{shown}:{number}: {e.message}",
                    code=e.code,
                    hint="fix the entry or leave it out; nothing was written",
                )
            digest.update(line)
            groups.add(doc["groupId"])
            count += 1
    if footer is None:
        fail(f"{shown}: no footer: the export is incomplete", hint="export it again; nothing was written")
    if footer.get("count") != count or footer.get("sha256") != digest.hexdigest():
        fail(
            f"{shown}: the footer does not match the entries (count {footer.get('count')} vs {count}, "
            "or the sha256 differs)",
            hint="the file was changed or damaged; export it again; nothing was written",
        )
    return {**header, "count": count, "groups": sorted(groups)}


def _read_entries(path: str) -> Iterator[tuple[str, str, Any]]:
    with open(path, "rb") as handle:
        handle.readline()
        for line in handle:
            doc = json.loads(line)
            if "groupId" in doc:
                yield doc["groupId"], doc["key"], doc["value"]


@contextlib.contextmanager
def _spooled(source: str) -> Iterator[str]:
    """A path to read twice: the file itself, or standard input copied to a temporary file."""
    if source != "-":
        if os.path.isdir(source):
            fail(f"{source}: is a folder, not an export file", hint="give an export file, or - to read standard input")
        if not os.path.isfile(source):
            fail(f"{source}: no such file", hint="give an export file, or - to read standard input")
        yield source
        return
    if sys.stdin is None:
        fail("- reads standard input, which is closed", hint="give the export's file name")
    with tempfile.NamedTemporaryFile(prefix="motia-import-", suffix=".ndjson") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.flush()
        yield spool.name


async def import_store(args: argparse.Namespace, out: Output) -> int:
    """Check the store's URL and the whole file, then write it in the chosen mode."""
    check_store_url(args.state, args, refuse_memory="import")
    with _spooled(args.file) as path:
        info = verify_export(path, "standard input" if args.file == "-" else args.file)
        async with open_store(args.state, args, refuse_memory="import") as manager:
            written = skipped = removed = 0
            seen: dict[str, set[str]] = {g: set() for g in info["groups"]} if args.mode == "replace" else {}
            with out.progress("importing", info["count"]) as advance:
                for n, (group, key, value) in enumerate(_read_entries(path), 1):
                    if args.mode == "skip-existing" and await manager.exists(group, key):
                        skipped += 1
                    else:
                        await manager.set(group, key, value)
                        written += 1
                    if args.mode == "replace":
                        seen[group].add(key)
                    if n % PAGE == 0:
                        advance(PAGE)
                advance(info["count"] % PAGE)
            # Extras go only after every entry of the file is written: a crash never leaves a group emptied.
            for group, keys in seen.items():
                for key in await manager.keys(group):
                    if key not in keys:
                        await manager.delete(group, key)
                        removed += 1
    out.data({"written": written, "skipped": skipped, "removed": removed, "mode": args.mode})
    return EXIT_OK


# -- migrate ---------------------------------------------------------------------------------------


def _checkpoint_path(args: argparse.Namespace) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    name = hashlib.sha256(f"{args.source}\0{args.target}".encode()).hexdigest()[:12]
    return Path(f".motia-migrate-{name}.json")


def _check_checkpoint_folder(path: Path) -> None:
    """Refuse a checkpoint that could not be written, before anything is copied (the copy would stop after a page)."""
    folder = path.parent
    if not folder.is_dir():
        fail(
            f"--checkpoint {path}: the folder {folder} does not exist",
            hint="create it, or give another --checkpoint path",
        )
    if not os.access(folder, os.W_OK):
        fail(f"--checkpoint {path}: the folder {folder} is not writable", hint="give another --checkpoint path")


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by an interrupted copy; anything else is refused (it would be overwritten)."""
    try:
        mark = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"--checkpoint {path}: cannot read it: {e.strerror or e}", hint="give a file path for the checkpoint")
    except (ValueError, RecursionError):
        mark = None
    if not (isinstance(mark, dict) and all(isinstance(mark.get(k), str) for k in ("from", "to", "group", "key"))):
        fail(
            f"--checkpoint {path}: not a migrate checkpoint (the copy would overwrite it)",
            hint="give another --checkpoint file, or delete this one to copy from the start",
        )
    return mark


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def _copy(source: Store, target: StateManager, args: argparse.Namespace, out: Output) -> int:
    """Copy every entry after the checkpoint, recording the position after each page."""
    checkpoint = _checkpoint_path(args)
    after: tuple[str, str] | None = None
    if checkpoint.exists():
        mark = _read_checkpoint(checkpoint)
        if mark.get("from") == redacted(args.source) and mark.get("to") == redacted(args.target):
            after = (mark["group"], mark["key"])
            out.message(f"resuming after {after[0]}/{after[1]} (from {checkpoint})")
    total = await _count(source, None)
    copied = 0
    with out.progress("copying", total) as advance:
        async for group, page in pages(source):
            todo = [(k, v) for k, v in page if after is None or (group, k) > after]
            advance(len(page) - len(todo))
            if not todo:
                continue
            if not args.dry_run:
                failed = await _write_page(target, group, todo)
                if failed:
                    key, item = failed[0]
                    fail(
                        f"writing {group}/{key} to --to failed: [{item.code}] {item.error}",
                        code=item.code or "INTERNAL",
                        exit_code=EXIT_FAILED,
                        hint="fix the target store and run the same command again: it resumes",
                    )
                checkpoint.write_text(
                    json.dumps(
                        {"from": redacted(args.source), "to": redacted(args.target), "group": group, "key": todo[-1][0]}
                    )
                )
            copied += len(todo)
            advance(len(todo))
    with contextlib.suppress(FileNotFoundError):
        checkpoint.unlink()
    return copied


async def _write_page(target: StateManager, group: str, page: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Write a page with one batch (one by one when it is over a batch's limits); the items that failed."""
    try:
        result = await target.batch(group, [{"type": "set", "key": k, "value": v} for k, v in page])
    except LimitExceededError:
        for key, value in page:
            await target.set(group, key, value)
        return []
    return [(page[i][0], item) for i, item in enumerate(result.results) if item.code is not None]


async def _group_digest(manager: Store, group: str) -> tuple[str, dict[str, str]]:
    digest = hashlib.sha256()
    per_key: dict[str, str] = {}
    async for _, page in pages(manager, [group]):
        for key, value in page:
            h = hashlib.sha256(_canonical(value)).hexdigest()
            per_key[key] = h
            digest.update(key.encode() + b"\0" + h.encode() + b"\n")
    return digest.hexdigest(), per_key


async def _verify(source: Store, target: StateManager) -> list[dict[str, str]]:
    """Every differing key: by a checksum per group, then key by key where the group's differ."""
    differences: list[dict[str, str]] = []
    for group in sorted(set(await source.groups()) | set(await target.groups())):
        left, left_keys = await _group_digest(source, group)
        right, right_keys = await _group_digest(target, group)
        if left == right:
            continue
        for key in sorted(set(left_keys) | set(right_keys)):
            if key not in right_keys:
                differences.append({"group": group, "key": key, "side": "only in --from"})
            elif key not in left_keys:
                differences.append({"group": group, "key": key, "side": "only in --to"})
            elif left_keys[key] != right_keys[key]:
                differences.append({"group": group, "key": key, "side": "different values"})
    return differences


async def _follow(source: StateManager, target: StateManager, stream: Any, out: Output) -> None:
    """Apply the source's feed to the target until cancelled, printing the lag after each quiet moment."""
    from anyio import move_on_after

    applied = 0
    last_cursor: str | None = None
    iterator = stream.__aiter__()
    while True:
        change = None
        with move_on_after(0.5):
            change = await iterator.__anext__()
        if change is None:
            info = await source.feed_info()
            caught_up = last_cursor is None or info.get("last") in (None, last_cursor)
            out.message(
                f"following: {applied} changes applied, lag 0 (caught up)"
                if caught_up
                else f"following: {applied} changes applied, behind the feed's last record {info.get('last')}"
            )
            continue
        if change.event == "deleted":
            await target.delete(change.group, change.key)
        else:
            await target.set(change.group, change.key, change.new_value)
        applied += 1
        last_cursor = change.cursor


async def migrate_store(args: argparse.Namespace, out: Output) -> int:
    """Copy, then verify or follow as asked."""
    for url, what in ((args.source, "--from"), (args.target, "--to")):
        if url in ("memory", "memory:"):
            fail(
                f"migrate {what} memory: refused: a memory store lives only in its own process",
                hint="migrate between file: and redis:// stores",
            )
    if args.follow and args.dry_run:
        fail("--follow with --dry-run: following writes every change; drop one of them")
    check_store_url(args.target, args, option="--to")
    if not args.dry_run:
        _check_checkpoint_folder(_checkpoint_path(args))
    if not args.dry_run and _checkpoint_path(args).exists():
        _read_checkpoint(_checkpoint_path(args))  # refused before either store is opened (or created)
    same = _same_store(args.source, args.target)
    # The source must be there: a mistyped path would otherwise be a new, empty store copied as "0 entries".
    async with open_store(args.source, args, existing=True, option="--from") as source:
        shards = await _upgradable(source)
        if shards is not None:
            if not same:
                fail(
                    f"{redacted(args.source)} holds layout 2 of the Redis adapter, which this version reads only "
                    "once upgraded",
                    hint="stop its older runtimes, upgrade it in place (the same Redis as --from and --to), then copy",
                )
            return await _upgrade_layout(source, shards, args, out)
        legacy = await LegacyRedis.detect(source)
        if same:
            if legacy is None:
                fail(
                    "--from and --to are the same store: there is nothing to copy",
                    hint="give another store as --to (the same Redis is moved in place only when it holds the "
                    "layout before the change feed)",
                )
            return await _upgrade_in_place(legacy, args, out)
        if legacy is not None and args.follow:
            fail(
                f"--follow: {redacted(args.source)} holds the layout before the change feed, which has no feed to "
                "follow",
                hint="stop its writers, then copy it without --follow",
            )
        async with open_store(_dry_run_target(args), args, option="--to") as target:
            return await _migrate(legacy or source, source, target, args, out)


def _dry_run_target(args: argparse.Namespace) -> str:
    """The store to open as ``--to``: with ``--dry-run``, a file store that is not there is read as an empty one.

    Opening it would create it, and a dry run writes nothing.
    """
    config = check_store_url(args.target, args, option="--to")
    if args.dry_run and config["adapter"] == "file" and not Path(config["path"]).exists():
        return "memory:"
    return str(args.target)


async def _upgradable(manager: StateManager) -> int | None:
    """The shard count of the store behind ``manager`` when it is a Redis of layout 2, else None."""
    from ..adapters.redis import RedisStateAdapter  # without importing redis-py
    from ..adapters.redis.layout import upgradable_layout

    adapter = manager.adapter
    if not isinstance(adapter, RedisStateAdapter):
        return None
    return await upgradable_layout(adapter.client, adapter.key_prefix)


def _refuse_two_sided(args: argparse.Namespace, doing: str, done: str) -> None:
    """--follow and --verify need two stores: an in-place move has one (a usage error naming the option)."""
    if args.follow or args.verify:
        option = "--follow" if args.follow else "--verify"
        fail(
            f"{option}: {doing} a store in place leaves one copy, with no second side to "
            f"{'follow' if args.follow else 'compare'}",
            hint=f"drop {option}; `motia-state validate --state URL` checks the store once it {done}",
        )


async def _upgrade_layout(manager: StateManager, shards: int, args: argparse.Namespace, out: Output) -> int:
    """Upgrade a Redis of layout 2 to the current layout in place: its marker changes, nothing else."""
    _refuse_two_sided(args, "upgrading", "is upgraded")
    if args.dry_run:
        out.data({"inPlace": True, "dryRun": True, "upgraded": False, "fromLayout": 2, "shards": shards})
        out.message(f"would upgrade {redacted(args.source)} from layout 2 to the current layout, in place")
        return EXIT_OK
    from ..adapters.redis.layout import upgrade_layout

    adapter: Any = manager.adapter
    upgraded = await upgrade_layout(adapter.client, adapter.key_prefix)
    if not upgraded:
        fail(f"{redacted(args.source)}: its layout marker changed while upgrading; run migrate again")
    out.message(
        f"upgraded {redacted(args.source)} from layout 2 to the current layout, in place "
        f"(data, feed records and cursors kept)"
    )
    out.data({"inPlace": True, "upgraded": True, "fromLayout": 2, "shards": shards})
    return EXIT_OK


async def _upgrade_in_place(legacy: LegacyRedis, args: argparse.Namespace, out: Output) -> int:
    """Move a Redis in the old layout into the current one under the same prefix (the error's advice)."""
    _refuse_two_sided(args, "moving", "has moved")
    count = await legacy.count(None)
    if args.dry_run:
        out.data({"inPlace": True, "dryRun": True, "moved": 0, "toMove": count})
        out.message(f"would move {count} entries of {redacted(args.source)} into the current layout, in place")
        return EXIT_OK
    from ..adapters.redis import migrate_legacy_layout

    with out.progress("moving", None):
        moved = await migrate_legacy_layout(legacy.adapter)
    out.message(f"moved {moved} entries of {redacted(args.source)} into the current layout, in place")
    out.data({"inPlace": True, "moved": moved})
    return EXIT_OK


async def _migrate(
    source: Store, feed: StateManager, target: StateManager, args: argparse.Namespace, out: Output
) -> int:
    """Copy ``source`` into ``target``, then verify or follow ``feed`` as asked."""
    stream = feed.changes("now") if args.follow else None
    copied = 0
    if not (args.dry_run and args.verify):
        copied = await _copy(source, target, args, out)
        verb = "would copy" if args.dry_run else "copied"
        out.message(f"{verb} {copied} entries from {redacted(args.source)} to {redacted(args.target)}")
    if args.verify:
        differences = await _verify(source, target)
        out.data({"copied": copied, "differences": differences}, _differences_table)
        if differences:
            return EXIT_FAILED
    elif not args.follow:
        out.data({"copied": copied, "dryRun": bool(args.dry_run)})
    if stream is not None:
        await _follow(feed, target, stream, out)
    return EXIT_OK


def _differences_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    if not report["differences"]:
        return f"copied {report['copied']}; both sides are equal"
    table = Table("group", "key", "side", box=None, header_style="bold", title="differences")
    for row in report["differences"]:
        table.add_row(row["group"], row["key"], row["side"])
    return table
