"""The file store's on-disk format: constants shared by reader and writer, records, snapshots.

A ``log`` file is a header (magic, format version, generation) followed by
records, then zeros: the file grows in zero-filled steps ahead of its
records, and the log ends at the first all-zero record header. A record is
``u32 length | u32 crc32(body) | body`` (little endian); the first byte of
the body is its :class:`RecordType`:

``CHANGES`` (1)
    The JSON list of changes one operation or transaction wrote:
    ``[group, key, value]`` stores a value, ``[group, key]`` removes it.
``MOVED`` (2)
    The last record of a log that a compaction replaced; the rest of the
    body is the new log's generation in ASCII decimal.
``FEED`` (3)
    One operation's changes as change-feed records, the JSON list
    ``[seq, at, depth, origin, rows]``: ``seq`` numbers the first row (the
    next rows follow on), ``at`` is the commit time in milliseconds,
    ``depth`` and ``origin`` describe the writer, and each row is
    ``[group, key, op, event, oldValue, newValue]`` (``event`` "deleted"
    removes the entry, otherwise it stores ``newValue``). A record whose
    ``seq`` is not above the snapshot's ``seq`` is history kept for the
    feed's retention window: the snapshot already holds its effect, so it is
    not applied again.
``HISTORY`` (4)
    The feed's retention window that a compaction carried over, as the
    first record of the new log: the JSON list of the retained records,
    each in the body form of a ``FEED`` record. The snapshot holds their
    effect; they are there for the feed's readers. (One record, not one per
    change, so that the new log never starts with the old log's bytes.)

Type 0 is never written: an all-zero header is the space ahead of the
records. Stores written before ``MOVED`` existed marked a replaced log with
a ``CHANGES`` record holding ``{"moved": generation}``; the reader still
accepts it.

A ``snapshot`` file is a header (magic, format version, body length,
CRC-32 of the body) and a JSON body ``{log_gen, base_gen, base_offset,
data, seq, window}`` (``seq``: the newest feed record the data holds;
``window``: the bytes of feed history at the head of the log it continues).

Format version 2 added ``FEED`` records and the snapshot's ``seq``. A store
of version 1 still opens: its ``CHANGES`` records are applied (they make no
feed records), new writes append ``FEED`` records to its log, and its next
compaction writes both files in version 2.

:class:`LogReader` replays records into a dict of groups; :class:`LogWriter`
appends records to a log file descriptor.
"""

from __future__ import annotations

import enum
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from ...errors import CorruptStoreError, UnavailableError

__all__ = [
    "FORMAT_VERSION",
    "LOG_HEADER",
    "LOG_MAGIC",
    "MAX_RECORD",
    "RECORD_HEADER",
    "SNAP_HEADER",
    "SNAP_MAGIC",
    "ZERO_HEADER",
    "CorruptStoreError",
    "Damage",
    "LogReader",
    "LogWriter",
    "Moved",
    "RecordType",
    "Snapshot",
    "READABLE_VERSIONS",
    "FeedHook",
    "apply_changes",
    "apply_rows",
    "feed_record",
    "history_record",
    "changes_record",
    "check_version",
    "encode_snapshot",
    "moved_record",
    "read_snapshot",
    "record",
    "walk_records",
]

FORMAT_VERSION: Final = 2
#: The versions this code reads: the current one and the one before (upgraded at the next compaction).
READABLE_VERSIONS: Final = (1, 2)
LOG_MAGIC: Final = b"MOTIALOG"
SNAP_MAGIC: Final = b"MOTIASNP"
LOG_HEADER: Final = struct.Struct("<8sHQ")  # magic, version, generation
SNAP_HEADER: Final = struct.Struct("<8sHQI")  # magic, version, body length, crc32
RECORD_HEADER: Final = struct.Struct("<II")  # body length, crc32(body)
ZERO_HEADER: Final = bytes(RECORD_HEADER.size)
#: The log file grows in zero-filled steps from this size...
GROW_MIN: Final = 64 << 10
#: ...doubling up to this one.
GROW_MAX: Final = 1 << 20
# Entries of a HISTORY record encoded in one call: fewer calls, and a short list at a time.
_HISTORY_CHUNK: Final = 256
# A record longer than this is not a record but garbage in a length field.
MAX_RECORD: Final = 1 << 31


class RecordType(enum.IntEnum):
    """The first byte of a record's body."""

    ZERO = 0  # reserved: the zero-filled space ahead of the records
    CHANGES = 1
    MOVED = 2
    FEED = 3
    HISTORY = 4


_encoder = msgspec.json.Encoder()
_encode = _encoder.encode
_decode = msgspec.json.Decoder().decode


class Snapshot(msgspec.Struct):
    """The whole state at one point of the log, and which log continues it."""

    log_gen: int
    base_gen: int
    base_offset: int
    data: dict[str, dict[str, Any]]
    seq: int = 0
    window: int = 0


def encode_snapshot(snap: Snapshot) -> tuple[bytes, bytes]:
    """The snapshot file's header and body."""
    body = _encode(snap)
    return SNAP_HEADER.pack(SNAP_MAGIC, FORMAT_VERSION, len(body), zlib.crc32(body)), body


def check_version(version: int, path: Path) -> None:
    """Refuse a file written in a format version this code does not read (UNAVAILABLE: upgrade to read it).

    Version 0 was never written: a header that says so is damaged.
    """
    if version == 0:
        raise CorruptStoreError(f"{path} is damaged (format version 0 in its header)", file=str(path), offset=0)
    if version not in READABLE_VERSIONS:
        raise UnavailableError(
            f"{path} has format version {version}; this motia-state reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}",
            file=str(path),
        )


def read_snapshot(path: Path) -> Snapshot | None:
    """The snapshot stored at ``path``; None when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < SNAP_HEADER.size:
        raise CorruptStoreError(f"{path} is truncated", file=str(path), offset=0)
    magic, version, length, crc = SNAP_HEADER.unpack_from(raw)
    if magic != SNAP_MAGIC:
        raise CorruptStoreError(f"{path} is not a motia-state snapshot", file=str(path), offset=0)
    check_version(version, path)
    body = raw[SNAP_HEADER.size :]
    if len(body) != length or zlib.crc32(body) != crc:
        raise CorruptStoreError(
            f"{path} is damaged (length or checksum mismatch at byte {SNAP_HEADER.size})",
            file=str(path),
            offset=SNAP_HEADER.size,
        )
    try:
        return msgspec.json.decode(body, type=Snapshot)
    except msgspec.DecodeError as e:
        raise CorruptStoreError(f"{path} is damaged: {e}", file=str(path), offset=SNAP_HEADER.size) from e


def record(kind: RecordType, payload: bytes) -> bytes:
    """One whole record: header, type byte, payload."""
    body = bytes([kind]) + payload
    return RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body


def changes_record(changes: list[list[Any]]) -> bytes:
    """The record of one operation's changes (raises TypeError/ValueError/OverflowError on a bad value)."""
    return record(RecordType.CHANGES, _encode(changes))


def feed_record(seq: int, at: int, depth: int, origin: dict[str, Any] | None, rows: list[list[Any]]) -> bytes:
    """The ``FEED`` record of one operation's changes, numbered from ``seq`` (raises like :func:`changes_record`)."""
    return record(RecordType.FEED, _encode([seq, at, depth, origin, rows]))


def history_record(entries: Iterable[Sequence[Any]]) -> bytearray:
    """The ``HISTORY`` record of a retention window: ``[seq, at, depth, origin, rows]`` per retained record.

    ``entries`` may be a generator: they are encoded a few hundred at a
    time and then dropped, so a window of many records never exists as a
    list of lists next to its encoding (a compaction builds it while
    writers run, and the collector would walk every such list). The record
    is built in one buffer, its header filled in last, so that a window of
    many megabytes is never copied whole.
    """
    head = RECORD_HEADER.size
    body = bytearray(head)
    body.append(RecordType.HISTORY)
    into = _encoder.encode_into
    chunk: list[Any] = []
    opened = False

    def flush() -> None:
        # Appends "[e,...,e]", joined onto what came before as one list.
        start = len(body)
        into(chunk, body, -1)
        if opened:
            body[start] = ord(",")
        del body[-1]
        chunk.clear()

    for entry in entries:
        chunk.append(entry)
        if len(chunk) == _HISTORY_CHUNK:
            flush()
            opened = True
    if chunk:
        flush()
        opened = True
    body += b"]" if opened else b"[]"
    with memoryview(body) as view:
        RECORD_HEADER.pack_into(body, 0, len(body) - head, zlib.crc32(view[head:]))
    return body


def moved_record(generation: int) -> bytes:
    """The record that ends a log a compaction replaced by the log of ``generation``."""
    return record(RecordType.MOVED, str(generation).encode())


def apply_changes(data: dict[str, dict[str, Any]], changes: list[Any]) -> None:
    """Apply one decoded ``CHANGES`` record to ``data``."""
    for change in changes:
        group, key = change[0], change[1]
        if len(change) == 3:
            entries = data.get(group)
            if entries is None:
                data[group] = {key: change[2]}
            else:
                entries[key] = change[2]
        else:
            entries = data.get(group)
            if entries is not None and key in entries:
                del entries[key]
                if not entries:
                    del data[group]


def apply_rows(data: dict[str, dict[str, Any]], rows: list[Any]) -> None:
    """Apply the rows of one decoded ``FEED`` record to ``data``."""
    for group, key, _op, event, _old, new in rows:
        entries = data.get(group)
        if event == "deleted":
            if entries is not None and key in entries:
                del entries[key]
                if not entries:
                    del data[group]
        elif entries is None:
            data[group] = {key: new}
        else:
            entries[key] = new


# The body of a FEED record, checked while it is decoded (in C, one pass):
# ``[seq >= 1, at, depth, origin (object or null), rows (at least one)]``,
# each row ``[group, key, op, event, oldValue, newValue]``. A bool is not an
# int here, nor is 1.0, exactly as the writer never writes them.
_Row = tuple[str, str, str, Literal["created", "updated", "deleted"], Any, Any]
_FeedBody = tuple[
    Annotated[int, msgspec.Meta(ge=1)],
    int,
    int,
    dict[str, Any] | None,
    Annotated[list[_Row], msgspec.Meta(min_length=1)],
]
_decode_feed = msgspec.json.Decoder(_FeedBody).decode
_decode_history = msgspec.json.Decoder(list[_FeedBody]).decode


#: Called with each ``FEED`` record a replay meets: ``(seq, at, depth, origin, rows)``.
FeedHook = Callable[[int, int, int, "dict[str, Any] | None", list[Any]], None]


def _valid_changes(changes: Any) -> bool:
    if type(changes) is not list or not changes:
        return False
    for change in changes:
        if (
            type(change) is not list
            or not 2 <= len(change) <= 3
            or type(change[0]) is not str
            or type(change[1]) is not str
        ):
            return False
    return True


class Damage(Exception):
    """A bad record at ``offset``; ``torn`` when it is a crash's cut-short last append."""

    def __init__(self, offset: int, reason: str, *, torn: bool) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.torn = torn


class Moved(Exception):
    """A ``MOVED`` record at ``offset`` (``end`` is where it ends): the store lives on in a new log."""

    def __init__(self, offset: int, end: int, generation: int) -> None:
        super().__init__(offset)
        self.offset = offset
        self.end = end
        self.generation = generation


class _NeedMore(Exception):
    """The buffer ends inside a record (not at the end of the file): read on from ``offset``."""

    def __init__(self, offset: int, *, to_eof: bool = False) -> None:
        super().__init__(offset)
        self.offset = offset
        self.to_eof = to_eof


def _moved_generation(kind: int, payload: bytes) -> int | None:
    """The generation a ``MOVED`` record (or the older JSON marker) names; None when it is not one."""
    if kind == RecordType.MOVED:
        return int(payload) if payload.isdigit() and len(payload) < 20 else None
    try:
        marker = _decode(payload)
    except msgspec.DecodeError:
        return None
    if type(marker) is dict and len(marker) == 1 and type(marker.get("moved")) is int:
        return int(marker["moved"])
    return None


class LogReader:
    """Replays the records of one log file descriptor into a dict of groups.

    ``on_feed`` sees every ``FEED`` record replayed; records numbered at or
    below ``applied`` (history the snapshot already holds) are not applied.
    """

    def __init__(self, fd: int, on_feed: FeedHook | None = None, applied: int = 0) -> None:
        self.fd = fd
        self.on_feed = on_feed
        self.applied = applied

    def replay(self, start: int, data: dict[str, dict[str, Any]], *, whole: bool) -> int:
        """Apply every record from ``start`` to the log's end to ``data``; returns that end.

        ``whole`` reads everything to the end of the file (opening: bytes
        after the end are checked too). Otherwise (catching up with other
        processes) it reads 8 KiB first, growing the read while records run
        past it, so that the zero-filled space ahead of the records is not
        read (and checked) on every operation. Raises
        :class:`Damage` at a bad record (records before it are applied) and
        :class:`Moved` at a compaction's marker.
        """
        fd = self.fd
        if whole:
            size = os.fstat(fd).st_size
            buf = os.pread(fd, size - start, start) if size > start else b""
            return _replay(buf, start, data, self, at_eof=True)
        base, chunk = start, 1 << 13
        while True:
            buf = os.pread(fd, chunk, base)
            try:
                return _replay(buf, base, data, self, at_eof=len(buf) < chunk)
            except _NeedMore as more:
                if more.to_eof:  # a bad record: judge it against the whole rest of the file
                    return self.replay(more.offset, data, whole=True)
                base, chunk = more.offset, chunk * 4

    def replay_written(self, start: int, data: dict[str, dict[str, Any]]) -> int:
        """Apply the whole, intact records from ``start`` on, without the store's lock; returns where it stopped.

        Another process may be writing the next record at this moment: a
        record is applied only once its length and checksum say it is all
        there, and anything else (the end of the records, a record being
        written, a damaged one, a compaction's marker, a kind of record that
        only loading meets) ends the walk quietly, never as an error. A
        record whose checksum holds stays in the log for good (only a
        damaged or torn record, and what follows it, is ever cut away), so
        what this applies is what the locked replay that continues from the
        returned offset would have applied.
        """
        base, chunk = start, 1 << 13
        while True:
            try:
                buf = os.pread(self.fd, chunk, base)
            except OSError:
                return base  # the locked replay meets it again and reports it
            end, cut = _replay_written(buf, base, data, self)
            if not cut or len(buf) < chunk:  # stopped, or at the end of the file
                return end
            base, chunk = end, chunk if end > base else chunk * 4  # a record longer than the read: read more

    def replay_between(self, start: int, stop: int, data: dict[str, dict[str, Any]]) -> None:
        """Apply the records from ``start`` to ``stop`` (a record boundary) to ``data``.

        For a stretch already known to hold whole records with good
        checksums (see :func:`walk_records`); raises like :meth:`replay`
        otherwise.
        """
        buf = os.pread(self.fd, stop - start, start) if stop > start else b""
        _replay(buf, start, data, self, at_eof=True)

    def zeros_from(self, start: int) -> bool:
        """Whether the file holds nothing but zeros from ``start`` on."""
        size = os.fstat(self.fd).st_size
        return size <= start or _zeros(os.pread(self.fd, size - start, start), 0)


def _zeros(buf: bytes, start: int) -> bool:
    """Whether ``buf`` holds nothing but zeros from ``start`` on (a memcmp; ``any`` loops in Python)."""
    return buf[start:] == bytes(len(buf) - start) if start else buf == bytes(len(buf))


def _replay(buf: bytes, base: int, data: dict[str, dict[str, Any]], reader: LogReader, *, at_eof: bool) -> int:
    """Apply every whole record in ``buf`` (which starts at file offset ``base``).

    The log ends at the first all-zero record header or at the end of the
    file. Returns that end; raises :class:`Damage` at a bad record, or
    :class:`_NeedMore` when ``buf`` stops inside a record before the end of
    the file (``at_eof`` says whether it reaches the end). With ``at_eof``,
    bytes after the end are damage too.

    The file always grows (zero-filled) before a record is written into it,
    so a record that runs past the end of the file, or a header cut by it,
    was not cut short by a crash: it is damage. A bad record is a torn tail
    only as :func:`_torn` decides.
    """
    pos, end = 0, len(buf)
    header = RECORD_HEADER.size
    while True:
        if end - pos < header:
            if not at_eof:
                raise _NeedMore(base + pos)
            if _zeros(buf, pos):
                return base + pos
            raise Damage(base + pos, "the file ends inside a record header", torn=False)
        length, crc = RECORD_HEADER.unpack_from(buf, pos)
        if length == 0 and crc == 0:
            if at_eof and not _zeros(buf, pos):
                raise Damage(base + pos, "data after the end of the log", torn=False)
            return base + pos
        body_end = pos + header + length
        if length == 0 or length > MAX_RECORD:
            if not at_eof:
                raise _NeedMore(base + pos, to_eof=True)
            raise Damage(base + pos, f"impossible record length {length}", torn=False)
        if body_end > end:
            if not at_eof:
                raise _NeedMore(base + pos)
            raise Damage(base + pos, f"record length {length} runs past the end of the file", torn=False)
        body = buf[pos + header : body_end]
        if zlib.crc32(body) != crc:
            if not at_eof:
                raise _NeedMore(base + pos, to_eof=True)
            raise Damage(base + pos, "checksum mismatch", torn=_torn(body, crc, buf[body_end:]))
        kind, payload = body[0], body[1:]
        if kind == RecordType.CHANGES:
            try:
                changes = _decode(payload)
            except msgspec.DecodeError:
                changes = None
            if _valid_changes(changes):
                apply_changes(data, changes)
                pos = body_end
                continue
        elif kind == RecordType.FEED:
            try:
                seq, at, depth, origin, rows = _decode_feed(payload)
            except msgspec.DecodeError:  # ValidationError included
                raise Damage(base + pos, "record body is not a feed record", torn=False) from None
            if seq > reader.applied:
                apply_rows(data, rows)
            if reader.on_feed is not None:
                reader.on_feed(seq, at, depth, origin, rows)
            pos = body_end
            continue
        elif kind == RecordType.HISTORY:
            try:
                entries = _decode_history(payload)
            except msgspec.DecodeError:
                raise Damage(base + pos, "record body is not a feed record", torn=False) from None
            for seq, at, depth, origin, rows in entries:
                if seq > reader.applied:
                    apply_rows(data, rows)
                if reader.on_feed is not None:
                    reader.on_feed(seq, at, depth, origin, rows)
            pos = body_end
            continue
        elif kind != RecordType.MOVED:
            raise UnavailableError(
                f"record at byte {base + pos} has type {kind}, which this motia-state does not know "
                f"(format version {FORMAT_VERSION}): upgrade motia-state to open this store",
                offset=base + pos,
            )
        generation = _moved_generation(kind, payload)
        if generation is None:
            raise Damage(base + pos, "record body is not a change list", torn=False)
        raise Moved(base + pos, base + body_end, generation)


def _replay_written(buf: bytes, base: int, data: dict[str, dict[str, Any]], reader: LogReader) -> tuple[int, bool]:
    """Apply the intact ``FEED`` and ``CHANGES`` records at the head of ``buf`` (see :meth:`LogReader.replay_written`).

    Returns where it stopped, and whether that is because ``buf`` ends
    inside a record (reading more may go on).
    """
    pos, end = 0, len(buf)
    header = RECORD_HEADER.size
    while True:
        if end - pos < header:
            return base + pos, True
        length, crc = RECORD_HEADER.unpack_from(buf, pos)
        if length == 0 or length > MAX_RECORD:
            return base + pos, False
        body_end = pos + header + length
        if body_end > end:
            return base + pos, True
        body = buf[pos + header : body_end]
        if zlib.crc32(body) != crc:
            return base + pos, False
        kind, payload = body[0], body[1:]
        if kind == RecordType.FEED:
            try:
                seq, at, depth, origin, rows = _decode_feed(payload)
            except msgspec.DecodeError:
                return base + pos, False
            if seq > reader.applied:
                apply_rows(data, rows)
            if reader.on_feed is not None:
                reader.on_feed(seq, at, depth, origin, rows)
        elif kind == RecordType.CHANGES:
            try:
                changes = _decode(payload)
            except msgspec.DecodeError:
                return base + pos, False
            if not _valid_changes(changes):  # the older compaction marker, or damage
                return base + pos, False
            apply_changes(data, changes)
        else:
            return base + pos, False
        pos = body_end


# The last byte of a whole record's body: ``]`` ends a changes record, a digit a moved record.
_BODY_ENDS: Final = re.compile(rb"[\]0-9]")


def _torn(body: bytes, crc: int, after: bytes) -> bool:
    """Whether a record whose checksum fails is a crash's cut-short last append.

    A write interrupted by a crash leaves part of the record as the zeros
    that were there before it, and nothing after it was ever written. So:
    only zeros follow it, its last byte is still zero (a whole record never
    ends in zero: a changes record ends with ``]``, a moved record with a
    digit), and its length field is not the damage (no shorter body ending
    where a whole body can end matches its checksum: when one does, the
    record was whole and its length has changed since).
    """
    if not _zeros(after, 0) or body[-1] != 0:
        return False
    # Could a shorter length have been right? Try every place a whole body can end.
    written = body.rstrip(b"\0")
    running, done = 0, 0
    for end in _BODY_ENDS.finditer(written):
        running = zlib.crc32(written[done : end.end()], running)
        done = end.end()
        if running == crc:
            return False
    return True


def walk_records(buf: bytes, start: int, stop: int) -> bool:
    """Whether whole records with good checksums lead from ``start`` exactly to ``stop`` in ``buf``."""
    pos, header = start, RECORD_HEADER.size
    while pos < stop:
        if len(buf) - pos < header:
            return False
        length, crc = RECORD_HEADER.unpack_from(buf, pos)
        body = buf[pos + header : pos + header + length]
        if length == 0 or len(body) != length or zlib.crc32(body) != crc:
            return False
        pos += header + length
    return pos == stop


class LogWriter:
    """Appends records to a log file descriptor, growing the file ahead of them.

    Overwriting space that is already part of the file spares fdatasync the
    inode's size change (figures in docs/performance.md), so the file grows
    in zero-filled steps doubling from GROW_MIN up to GROW_MAX.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        #: The file's size as last seen: records fit below it without growing.
        self.capacity = 0

    def write(self, data: bytes, offset: int) -> None:
        """Write ``data`` at ``offset``, growing the file first if it would not fit (raises OSError)."""
        end = offset + len(data)
        if end > self.capacity:
            self._grow(end)
        written = os.pwrite(self.fd, data, offset)
        if written != len(data):
            raise OSError(f"short write ({written} of {len(data)} bytes)")

    def _grow(self, end: int) -> None:
        size = os.fstat(self.fd).st_size  # another process may have grown it
        if end > size:
            step = max(end - size, min(GROW_MAX, max(GROW_MIN, size)))
            os.pwrite(self.fd, bytes(step), size)
            size += step
        self.capacity = size
