"""The file store: the memory adapter over a :class:`LogSession`.

Layout of the store's directory (created 0700, files 0600; group and key
names live only inside records, never in paths): ``snapshot`` and ``log``
(their format is in ``format.py``), ``lock`` (``locking.py``).

Every process keeps the whole state in memory (a :class:`StateTable`), so a
read costs what it costs in the memory adapter. :class:`FileStateAdapter` is
the memory adapter with a :class:`LogSession` as its storage session: each
operation takes the store lock, reads the 8 bytes where its view of the log
ends (zeros: nobody appended since; otherwise it replays what others
appended, or reloads if it finds a compaction's ``MOVED`` record), applies
the pure ops, and its commit writes one record there with one ``pwrite``
before the lock is released. In mode "always" every write operation is
acknowledged only once its record is fsynced (the session's
``acknowledge``). Compaction, durability and loading live in the session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import anyio.lowlevel
import anyio.to_thread

from ...errors import InternalError, InvalidArgumentError, LimitExceededError, UnavailableError
from ...feed import DEFAULT_RETENTION, DEFAULT_RETENTION_BYTES, FeedRing, Stamp, check_retention
from ...records import StateChange
from ...values import DEFAULT_LIMITS, Limits
from ..memory import MemoryStateAdapter, TableSession
from ..table import StateTable
from .format import (
    FORMAT_VERSION,
    LOG_HEADER,
    LOG_MAGIC,
    MAX_RECORD,
    RECORD_HEADER,
    SNAP_HEADER,
    ZERO_HEADER,
    CorruptStoreError,
    Damage,
    LogReader,
    LogWriter,
    Moved,
    Snapshot,
    changes_record,
    check_version,
    encode_snapshot,
    feed_record,
    history_record,
    moved_record,
    read_snapshot,
    walk_records,
)
from .locking import CommitMarks, Position, ProcessLock, fsync_dir, pid_alive
from .watch import LogWatch

__all__ = ["FileStateAdapter", "FsyncMode", "LogSession"]

log = logging.getLogger("motia_state.file")

FsyncMode = Literal["always", "batch", "never"]
_MODES: Final = ("always", "batch", "never")

_T = TypeVar("_T")

# After an automatic compaction fails, the next waits this long, doubling
# after each failure in a row up to the maximum.
_RETRY_MIN: Final = 1.0
_RETRY_MAX: Final = 300.0

# fdatasync skips inode timestamps but still flushes the size a record
# changed, which is all that reading the record back needs.
_datasync: Final = getattr(os, "fdatasync", os.fsync)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of ``data`` at ``fd``'s position (a write may take less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _StoreLock:
    """The session's lock: the thread lock, the process lock, and catching up.

    Entering takes both locks and replays what other processes appended
    since this one last looked; leaving releases them, then starts a
    compaction if the log has outgrown the snapshot.
    """

    __slots__ = ("_mutex", "_session")

    def __init__(self, session: LogSession) -> None:
        self._session = session
        self._mutex = threading.Lock()

    def __enter__(self) -> None:
        self._mutex.acquire()
        session = self._session
        try:
            if session.closed:
                raise UnavailableError("the adapter is closed")
            # Records other processes wrote are applied before taking the
            # process lock where that can be done (see catch_up_written),
            # so that less is left to do while holding it and others wait:
            # in mode "always" always (how many writes one fsync covers
            # depends on how short the lock is held), otherwise when another
            # process holds the lock.
            if session.marks is not None:
                session.catch_up_written()
            if not session.plock.try_acquire():
                session.catch_up_written()
                session.plock.acquire()
            try:
                # One pread tells whether other processes appended (or
                # compacted: that leaves a MOVED record) since we looked.
                head = os.pread(session.log_fd, 8, session.offset)
                if head and head != ZERO_HEADER:
                    session.catch_up()
                elif not head:
                    # The file ends where the records do: another process
                    # cut a torn or failed append away. The file must grow
                    # again before the next append (what this process knew
                    # of its size is stale), or a crash cutting that append
                    # short would leave what looks like damage, not a torn tail.
                    session.regrow()
            except BaseException:
                session.plock.release()
                raise
        except BaseException:
            self._mutex.release()
            raise

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        session = self._session
        try:
            # An operation that raised after writing (a batch aborted halfway)
            # still commits what it wrote: memory and the log must agree.
            if session.table.journal and session.flush is not None:
                session.flush()
        finally:
            session.plock.release()
            self._mutex.release()
        # Compaction starts once the log outgrows the snapshot (and a floor).
        if session.offset > session.compact_at and not session.compacting and not session.closed:
            session.start_compaction()


class LogSession(TableSession):
    """The file store's storage session: one directory's snapshot, log and lock.

    Its lock (:class:`_StoreLock`) makes an operation atomic across threads
    and processes; :meth:`commit` appends the operation's changes as one
    record; in mode "always", :meth:`acknowledge` returns a write's result
    only once its record is fsynced.
    """

    journal_always = True

    def __init__(
        self,
        path: Path,
        table: StateTable,
        *,
        fsync: FsyncMode,
        fsync_interval: float,
        compact_min_bytes: int,
        repair: bool,
        feed_retention: int = DEFAULT_RETENTION,
        feed_retention_bytes: int = DEFAULT_RETENTION_BYTES,
    ) -> None:
        super().__init__(table)
        if feed_retention:
            self.feed = FeedRing("f", feed_retention, feed_retention_bytes)
        #: The sequence number of the newest feed record in the log (whoever wrote it).
        self.seq = 0
        #: The newest feed record the snapshot holds: records up to it are history, not applied again.
        self.applied = 0
        self._watcher: threading.Thread | None = None
        #: Whether the watch thread asks the kernel (inotify) or only polls.
        self.use_inotify = True
        self.path = path
        self.fsync = fsync
        self.lock = _StoreLock(self)
        #: The adapter's ``_flush``, for what an operation that raised wrote.
        self.flush: Callable[[], None] | None = None
        self.closed = False
        self._interval = fsync_interval
        self._compact_min = compact_min_bytes
        self._window = 0  # bytes of feed history at the head of the log
        self.log_fd = -1
        #: The generation of the log ``log_fd`` is open on; 0 while that is not known yet.
        self._fd_gen = 0
        self._writer = LogWriter(-1)
        self.gen = 0
        self.offset = 0  # end of what this process has applied, in the log
        self.compact_at = 0
        self.appended = 0  # records this process appended (for fsync tracking)
        #: The error of a failed fsync of the log: once set, nothing is written or acknowledged.
        self.fsync_error: OSError | None = None
        self.synced = 0
        self._sync_lock = threading.Lock()
        #: Held by the thread that compacts: one compaction at a time in a
        #: process, whoever started it and whether or not its caller waits.
        self._compaction_mutex = threading.Lock()
        self.compacting = False  # a compaction is running or about to (spares starting threads)
        #: No automatic compaction before this (time.monotonic()), after one failed.
        self.retry_at = 0.0
        self._backoff = 0.0
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._syncer: threading.Thread | None = None
        self.compaction: threading.Thread | None = None
        self._writers = 0  # writes in flight in mode "always" (see _durable)
        self._last_yield = 0.0
        #: Set while a thread fsyncs for this process's writers; they wait for it.
        self._syncing: anyio.Event | None = None

        created = not path.exists()
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise UnavailableError(f"cannot create the store directory {path}: {e}", file=str(path)) from e
        if created:
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        if not path.is_dir():
            raise InvalidArgumentError(f"path: {path} is not a directory")
        try:
            self.plock = ProcessLock(path / "lock")
        except OSError as e:  # a read-only directory or file system, a file the process may not open
            raise UnavailableError(f"cannot open the store {path}: {e}", file=str(path)) from e
        #: Mode "always": the fsync marks shared with other processes (group commit between them).
        self.marks: CommitMarks | None = None
        self.plock.acquire()
        try:
            try:
                if fsync == "always":
                    self.marks = CommitMarks(path / "commit")
                self.load(repair=repair)
            except OSError as e:
                raise UnavailableError(f"cannot open the store {path}: {e}", file=str(path)) from e
        except BaseException:
            self.plock.release()
            self.plock.close()
            if self.marks is not None:
                self.marks.close()
            if self.log_fd >= 0:
                os.close(self.log_fd)
            raise
        self.plock.release()
        if fsync == "always":
            self.acknowledge = self._acknowledge
        if fsync == "batch":
            self._syncer = threading.Thread(target=self._sync_loop, name=f"motia-state fsync {path}", daemon=True)
            self._syncer.start()

    # ---------------------------------------------------------------- loading

    def _set_log(self, fd: int, gen: int = 0) -> None:
        # The generation first: whoever sees the new descriptor must not
        # take it for the old log's (see _sync_to).
        self._fd_gen = 0
        self.log_fd = fd
        self._writer = LogWriter(fd)
        self._fd_gen = gen

    def load(self, *, repair: bool) -> None:
        """(Re)build the in-memory state from snapshot + log; the caller holds the lock."""
        self._remove_stale_temporaries()
        snap = read_snapshot(self.path / "snapshot")
        # Without a snapshot the log is the first one, generation 1, with no older log before it.
        base_gen = -1 if snap is None else snap.base_gen
        if snap is None:
            snap = Snapshot(log_gen=1, base_gen=0, base_offset=0, data={})
        data = snap.data
        self.seq = self.applied = snap.seq
        if self.feed is not None:
            self.feed.restart(0)
        log_path = self.path / "log"
        with self._sync_lock:
            if self.log_fd >= 0:
                # A reload (another process compacted, or an append failed):
                # flush what this descriptor wrote before letting it go, so
                # that everything appended so far counts as synced.
                if self.fsync != "never" and self.fsync_error is None:
                    try:
                        _datasync(self.log_fd)
                    except OSError as e:
                        self.fsync_error = e  # what it wrote is not known to be on disk: never acknowledged
                os.close(self.log_fd)
                self._set_log(-1)
            if self.fsync_error is None:
                self.synced = self.appended
        if not log_path.exists():
            self._set_log(self._create_log(log_path, snap.log_gen), snap.log_gen)
            self.gen = snap.log_gen
            self.offset = LOG_HEADER.size
            fsync_dir(self.path)
        else:
            fd = os.open(log_path, os.O_RDWR | os.O_CLOEXEC)
            self._set_log(fd)
            head = os.pread(fd, LOG_HEADER.size, 0)
            if len(head) < LOG_HEADER.size:
                # A log without a whole header never held a record.
                os.ftruncate(fd, 0)
                os.pwrite(fd, LOG_HEADER.pack(LOG_MAGIC, FORMAT_VERSION, snap.log_gen), 0)
                head = os.pread(fd, LOG_HEADER.size, 0)
            magic, version, gen = LOG_HEADER.unpack(head)
            if magic != LOG_MAGIC:
                raise CorruptStoreError(f"{log_path} is not a motia-state log", file=str(log_path), offset=0)
            check_version(version, log_path)
            if gen == snap.log_gen:
                start = LOG_HEADER.size  # the feed's window first (not applied again), then the rest
            elif gen == base_gen and self._leads_to(fd, snap.base_offset):
                # The compaction that wrote this snapshot died before it
                # replaced the log: the snapshot already holds the records
                # before base_offset. (A new log whose generation was damaged
                # into base_gen has no record boundary there: refused below.)
                # The records before base_offset are still the feed's
                # retention window (the new log that would have carried it
                # is gone): they go to the feed only, never into the data.
                start = snap.base_offset
                if self.feed is not None:
                    LogReader(fd, self._on_feed, snap.seq).replay_between(LOG_HEADER.size, start, {})
            else:
                raise CorruptStoreError(
                    f"{log_path} has generation {gen} but the snapshot expects {snap.log_gen}",
                    file=str(log_path),
                    offset=0,
                )
            self.gen = self._fd_gen = gen
            self.offset = self._replay_from(start, data, repair=repair)
        self.table.data = data
        self.table.reordered()
        if self.feed is not None and not len(self.feed):
            self.feed.restart(self.seq)
        # The feed's window at the head of the log does not count toward the next compaction.
        self._window = snap.window if self.gen == snap.log_gen else 0
        self._snapshot_written(self._snapshot_size())
        if self.marks is not None:
            self.marks.check((self.gen, self.offset))

    @staticmethod
    def _leads_to(fd: int, offset: int) -> bool:
        """Whether the log's records, from its header, end a record exactly at ``offset``."""
        return offset >= LOG_HEADER.size and walk_records(os.pread(fd, offset, 0), LOG_HEADER.size, offset)

    def _remove_stale_temporaries(self) -> None:
        # Left by a compaction whose process died; a live one's are its own.
        for tmp in self.path.glob("*.tmp*"):
            pid = tmp.name.rpartition(".tmp")[2]
            if pid.isdigit() and pid_alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _snapshot_size(self) -> int:
        try:
            return (self.path / "snapshot").stat().st_size
        except FileNotFoundError:
            return 0

    def _create_log(self, path: Path, gen: int) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.pwrite(fd, LOG_HEADER.pack(LOG_MAGIC, FORMAT_VERSION, gen), 0)
        os.fsync(fd)
        return fd

    def _on_feed(self, seq: int, at: int, depth: int, origin: dict[str, Any] | None, rows: list[Any]) -> None:
        last = seq + len(rows) - 1
        if last > self.seq:
            self.seq = last
        if self.feed is not None:
            self.feed.add_rows(seq, at, depth, origin, rows)

    def _replay_from(self, start: int, data: dict[str, dict[str, Any]], *, repair: bool, whole: bool = True) -> int:
        fd = self.log_fd
        reader = LogReader(fd, self._on_feed, self.applied)
        try:
            return reader.replay(start, data, whole=whole)
        except Moved as moved:
            log_path = self.path / "log"
            if not whole:
                raise
            # Loading the current log and finding a marker in it: the
            # compaction that wrote it died before replacing this log. The
            # marker must be its last record; drop it and carry on.
            if reader.zeros_from(moved.end):
                log.warning("%s: dropping the marker of a compaction that did not finish", log_path)
                os.ftruncate(fd, moved.offset)
                self._writer.capacity = 0
                return moved.offset
            raise CorruptStoreError(
                f"{log_path} is damaged at byte {moved.offset} (a compaction marker before more records)",
                file=str(log_path),
                offset=moved.offset,
            ) from None
        except Damage as damage:
            log_path = self.path / "log"
            if not damage.torn and not repair:
                raise CorruptStoreError(
                    f"{log_path} is damaged at byte {damage.offset} ({damage.reason}); "
                    "open with repair=True to keep everything before it and move the damaged log aside",
                    file=str(log_path),
                    offset=damage.offset,
                ) from None
            if damage.torn:
                log.warning("%s: dropping a torn record at byte %d (%s)", log_path, damage.offset, damage.reason)
            else:
                aside = log_path.with_name(f"log.damaged-{int(time.time())}-{os.getpid()}")
                shutil.copyfile(log_path, aside)
                os.chmod(aside, 0o600)
                log.warning(
                    "%s: damaged at byte %d (%s); kept everything before it, copied the damaged log to %s",
                    log_path,
                    damage.offset,
                    damage.reason,
                    aside,
                )
            # Records before the damage were applied by the reader already.
            os.ftruncate(fd, damage.offset)
            os.fsync(fd)
            self._writer.capacity = 0
            return damage.offset

    # -------------------------------------------------------- per operation

    def catch_up(self) -> None:
        """Apply what other processes appended since we last looked (lock held); wake feed readers."""
        seq = self.seq
        try:
            offset = self._replay_from(self.offset, self.table.data, repair=False, whole=False)
            if offset != self.offset:
                self.table.reordered()  # the replay wrote to data directly
            self.offset = offset
        except Moved:
            # Another process compacted: reload its snapshot and new log.
            self.load(repair=False)
        if self.feed is not None and self.seq != seq:
            self.feed.wake()

    def catch_up_written(self) -> None:
        """Apply the intact records other processes appended, without the process lock (the thread lock held).

        Only records whose checksum holds, up to the first that is not (yet)
        whole (see :meth:`LogReader.replay_written`); :meth:`catch_up`, under
        the process lock, goes on from there and judges whatever stopped
        this one.
        """
        fd = self.log_fd
        try:
            head = os.pread(fd, 8, self.offset)
        except OSError:
            return  # the locked catch-up meets it again and reports it
        if not head or head == ZERO_HEADER:
            return
        seq = self.seq
        offset = LogReader(fd, self._on_feed, self.applied).replay_written(self.offset, self.table.data)
        if offset != self.offset:
            self.table.reordered()  # the replay wrote to data directly
            self.offset = offset
        if self.feed is not None and self.seq != seq:
            self.feed.wake()

    def commit(self, changes: list[StateChange], stamp: Stamp | None) -> None:
        """Append one operation's changes as one record (the lock is held).

        With a ``stamp`` the record is a ``FEED`` record numbered from the
        next sequence number; without, a plain ``CHANGES`` record.
        """
        if self.fsync_error is not None:
            self._undo(changes)
            raise UnavailableError(
                f"an fsync of the store {self.path} failed ({self.fsync_error}): what the disk holds is no longer "
                "known, so this adapter writes nothing more (open the store again)",
                file=str(self.path),
            )
        if not self.plock.still_at_path():
            self._undo(changes)
            raise UnavailableError(
                f"the store directory {self.path} was removed or replaced while this adapter had it open; "
                "nothing was written (open the store again)",
                file=str(self.path),
            )
        try:
            if stamp is None:
                data = changes_record(
                    [[c.trace_id, c.key] if c.event == "deleted" else [c.trace_id, c.key, c.new_value] for c in changes]
                )
            else:
                rows = [[c.trace_id, c.key, c.op, c.event, c.old_value, c.new_value] for c in changes]
                data = feed_record(self.seq + 1, stamp[0], stamp[1], stamp[2], rows)
        except (TypeError, ValueError, OverflowError) as e:
            # Validation should make this impossible; if it happens, memory
            # must not keep what the log could not: rebuild from the files.
            self.load(repair=False)
            raise InternalError(f"a change could not be encoded for the log: {e}") from e
        if len(data) - RECORD_HEADER.size > MAX_RECORD:
            # Only limits raised far past their defaults get here (old and new
            # values of many large entries); a reader would take such a record
            # for damage, so it is never written.
            self._undo(changes)
            raise LimitExceededError(
                f"this operation's changes take {len(data)} bytes in the store's log, over the "
                f"{MAX_RECORD} bytes one log record holds; nothing was written"
            )
        try:
            self._writer.write(data, self.offset)
        except OSError as e:
            # Undo: cut any partial record, rebuild memory from the files.
            with contextlib.suppress(OSError):
                os.ftruncate(self.log_fd, self.offset)
            self.load(repair=False)
            raise UnavailableError(f"cannot append to {self.path / 'log'}: {e}", file=str(self.path)) from e
        self.offset += len(data)
        self.appended += 1
        if self.marks is not None:
            self.marks.appended = (self.gen, self.offset)
        if stamp is not None:
            self.seq += len(changes)
        if self._syncer is not None and not self._dirty.is_set():
            self._dirty.set()

    def regrow(self) -> None:
        """Forget the log's size as last seen: the next append grows the file first (the lock is held)."""
        self._writer.capacity = 0

    def _undo(self, changes: list[StateChange]) -> None:
        """Take ``changes`` back out of the in-memory table, last first."""
        data = self.table.data
        for change in reversed(changes):
            entries = data.setdefault(change.trace_id, {})
            if change.event == "created":
                entries.pop(change.key, None)
                if not entries:
                    del data[change.trace_id]
            else:
                entries[change.key] = change.old_value

    # ------------------------------------------------------------ feed readers

    def watch(self) -> None:
        """Start (once) the thread that brings other processes' records to this process's feed readers."""
        if self._watcher is None and not self.closed:
            self._watcher = threading.Thread(
                target=self._watch_loop, name=f"motia-state watch {self.path}", daemon=True
            )
            self._watcher.start()

    def _watch_loop(self) -> None:
        watch = LogWatch(self.path, use_inotify=self.use_inotify)
        try:
            while not self._stop.is_set() and not self.closed:
                watch.wait()
                feed = self.feed
                if feed is None or not feed.waiting or self.closed:
                    continue
                # One pread says whether anything was appended since this
                # process looked; only then is the lock worth taking.
                try:
                    head = os.pread(self.log_fd, 8, self.offset)
                except OSError:
                    head = b"?"  # the log was just replaced: look under the lock
                if head and head != ZERO_HEADER:
                    with contextlib.suppress(UnavailableError), self.lock:
                        pass  # entering the lock catches up, and that wakes the readers
        finally:
            watch.close()

    # ------------------------------------------------------------ durability

    def _sync_to(self, target: int, position: Position | None = None) -> None:
        """fsync until the ``target``-th record this process appended is on disk (group commit).

        ``position`` is where that record ends in the logs; with it, in mode
        "always", an fsync by another process that covered it is enough, and
        this process's fsync covers (and tells) every other process whose
        records were appended before it. While another process fsyncs, this
        waits for that fsync first: it may cover the record.
        """
        with self._sync_lock:
            if self.synced >= target:
                return
            if self.log_fd < 0:
                # Closed, and close() could not fsync what it had.
                raise UnavailableError(f"the store {self.path} was closed before this write reached the disk")
            marks = self.marks
            if marks is None or position is None:
                upto = self.appended
                self._datasync(self.log_fd)
                self.synced = max(self.synced, upto)
                return
            if marks.sleeps:
                while True:
                    seen = marks.ends()  # first: a holder letting go after this wakes the sleep below
                    if marks.synced >= position:  # covered by an fsync that ended meanwhile
                        self.synced = max(self.synced, target)
                        return
                    if marks.try_acquire():
                        break
                    marks.sleep(seen)  # until the fsync in progress ends: it may cover this record
            elif not marks.try_acquire():
                marks.wait()
                if marks.synced >= position:  # the fsync we waited for covered it
                    self.synced = max(self.synced, target)
                    return
                # Blocking, not trying again: others waking from the same
                # wait hold the lock shared for an instant, and retrying
                # against them would spin.
                marks.acquire()
            try:
                if marks.synced >= position:  # covered by an fsync that ended just before
                    self.synced = max(self.synced, target)
                    return
                upto = self.appended
                fd, gen = self.log_fd, self._fd_gen
                # Every record up to the published end was written before we
                # read it, so the fsync below covers them, whoever wrote them.
                appended = marks.appended
                self._datasync(fd)
                self.synced = max(self.synced, upto)
                if gen == position[0]:  # the descriptor is that log's (0 while a reload opens the next)
                    done = max(position, appended) if appended[0] == gen else position
                    if done > marks.synced:
                        marks.synced = done
                return
            finally:
                marks.release()

    def _datasync(self, fd: int) -> None:
        """fdatasync the log; a failure is remembered for good (see ``fsync_error``)."""
        if self.fsync_error is not None:
            raise UnavailableError(
                f"an fsync of the store {self.path} failed earlier ({self.fsync_error}); open the store again",
                file=str(self.path),
            )
        try:
            _datasync(fd)
        except OSError as e:
            # After a failed fsync the kernel may have dropped the dirty
            # pages and reports the error once: a later fsync can succeed
            # without the lost bytes ever reaching the disk. Nothing written
            # since can be acknowledged as durable, so the session stops.
            self.fsync_error = e
            raise UnavailableError(
                f"an fsync of the store {self.path} failed ({e}); nothing more is acknowledged: open the store again",
                file=str(self.path),
            ) from e

    async def _acknowledge(self, write: Awaitable[_T]) -> _T:
        """Mode "always": the write's result, once its record is fsynced."""
        self._writers += 1
        try:
            result = await write
            # Taken at once: this process's records so far, and where they end.
            await self._durable(self.appended, (self.gen, self.offset))
        finally:
            self._writers -= 1
        return result

    async def _durable(self, target: int, position: Position) -> None:
        marks = self.marks
        yielded = 0.0
        while self.synced < target:
            if marks is not None and marks.synced >= position:
                self.synced = max(self.synced, target)  # another process's fsync covered it
                return
            syncing = self._syncing
            if syncing is not None:
                # An fsync runs in a thread: it may cover this record; if
                # not, the next one will, with everything appended meanwhile.
                await syncing.wait()
                continue
            if self._writers == 1:
                # A lone writer fsyncs right here, as sqlite3 does: a hop to
                # a worker thread costs about as much as a fast disk's fsync.
                # (When another process is fsyncing, it waits for that fsync
                # here too.) It still yields (once) every millisecond so that
                # a tight loop of writes cannot starve the event loop.
                now = time.monotonic()
                if not yielded and now - self._last_yield > 0.001:
                    self._last_yield = yielded = now
                    await anyio.lowlevel.checkpoint()
                    continue
                self._sync_to(target, position)
                return
            # The fsync (or the wait for another process's) runs in a
            # thread while the other writers append: the next fsync covers
            # them all (group commit).
            self._syncing = syncing = anyio.Event()
            try:
                await anyio.to_thread.run_sync(self._sync_to, self.appended, (self.gen, self.offset))
            finally:
                self._syncing = None
                syncing.set()

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(self._interval):
                break
            self._dirty.clear()
            with contextlib.suppress(OSError, UnavailableError):
                # A failure is kept in fsync_error: the next write reports it.
                self._sync_to(self.appended)

    # ------------------------------------------------------------ compaction

    def _snapshot_written(self, size: int) -> None:
        # The log may grow to the snapshot's size (and a floor) before the
        # next compaction: rewriting costs O(state), so amortized O(1).
        self.compact_at = LOG_HEADER.size + self._window + max(self._compact_min, size)

    def start_compaction(self) -> None:
        """Compact in a background thread, unless one failed a moment ago (see ``retry_at``)."""
        if time.monotonic() < self.retry_at:
            return
        self.compacting = True
        thread = threading.Thread(target=self._compact_quietly, name="motia-state compaction", daemon=True)
        self.compaction = thread
        thread.start()

    def _compact_quietly(self) -> None:
        if not self._compaction_mutex.acquire(blocking=False):
            return  # another compaction is running: the log is being compacted already
        try:
            if self.closed:
                return
            self.compact_once()
        except Exception as e:
            # Retried with exponential backoff: a full disk must not cost a
            # failed snapshot (and a traceback) after every write.
            first = self._backoff == 0
            self._backoff = min(max(2 * self._backoff, _RETRY_MIN), _RETRY_MAX)
            self.retry_at = time.monotonic() + self._backoff
            log.log(
                logging.ERROR if first else logging.WARNING,
                "%s: compaction failed (%s); the log keeps growing, next try in %.0f s",
                self.path,
                e,
                self._backoff,
                exc_info=first,
            )
        else:
            self._backoff = 0.0
        finally:
            self.compacting = False
            self._compaction_mutex.release()

    async def compact(self) -> None:
        """Write a snapshot and start a new log (see :meth:`FileStateAdapter.compact`)."""
        # The thread owns the whole compaction: a caller that is cancelled
        # stops waiting, and the compaction finishes (or fails) cleanly.
        await anyio.to_thread.run_sync(self._compact_now)

    def _compact_now(self) -> None:
        with self._compaction_mutex:
            self.compacting = True
            try:
                # Another process may compact first and make this attempt
                # moot; try again so that a snapshot is taken after this call
                # began.
                for _ in range(3):
                    if self.compact_once():
                        break
            finally:
                self.compacting = False

    def compact_once(self) -> bool:
        """One compaction; False when another one replaced the log first."""
        lock = self.lock
        with lock:
            # Values are never mutated in place, so shallow copies of the
            # groups are a consistent picture of this instant.
            data = {group: dict(entries) for group, entries in self.table.data.items()}
            gen, base, seq = self.gen, self.offset, self.seq
            feed = self.feed
            retained = None if feed is None else feed.retained()
        # The feed's retention window moves to the head of the new log as
        # one history record (the snapshot holds its effect).
        window: bytes | bytearray = b""
        if feed is not None and retained is not None and retained[1]:
            window = history_record(feed.bodies(retained))
        snapshot = Snapshot(log_gen=gen + 1, base_gen=gen, base_offset=base, data=data, seq=seq, window=len(window))
        header, body = encode_snapshot(snapshot)
        # Named for this session too: two sessions of one process (one pid)
        # write their snapshots at the same time, without the lock.
        tag = f"{id(self):x}.tmp{os.getpid()}"
        snap_tmp = self.path / f"snapshot.{tag}"
        log_tmp = self.path / f"log.{tag}"
        try:
            return self._swap_in(header, body, window, gen, base, seq, snap_tmp, log_tmp)
        finally:
            # Gone when the swap succeeded; otherwise nobody else will remove them.
            for tmp in (snap_tmp, log_tmp):
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)

    def _swap_in(
        self,
        header: bytes,
        body: bytes,
        window: bytes | bytearray,
        gen: int,
        base: int,
        seq: int,
        snap_tmp: Path,
        log_tmp: Path,
    ) -> bool:
        lock = self.lock
        fd = os.open(snap_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, header)
            _write_all(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        # The new log's head (its header and the feed's window, fixed at the
        # snapshot's instant) is written and synced before the lock is taken,
        # so writers wait only while the tail they appended meanwhile is
        # copied; and piece by piece, as joining the pieces would hold
        # another copy of the window in memory.
        new_fd = os.open(log_tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(new_fd, LOG_HEADER.pack(LOG_MAGIC, FORMAT_VERSION, gen + 1))
            _write_all(new_fd, window)
            os.fsync(new_fd)
            with lock:
                if self.gen != gen:  # another process compacted meanwhile
                    os.close(new_fd)
                    return False
                tail = os.pread(self.log_fd, self.offset - base, base)
                _write_all(new_fd, tail)
                os.fsync(new_fd)
                # Processes still reading the old log learn that it moved
                # from a record at its end (one pread per operation finds it,
                # where an fstat per operation would cost as much again).
                # Written before the renames: if we die in between, loading
                # the still-current log drops it.
                self._writer.write(moved_record(gen + 1), self.offset)
                # Order matters for a crash between the two renames: a new
                # snapshot beside the old log replays it from base_offset.
                # The directory is synced between them so that a power loss
                # cannot keep the second rename without the first (the new
                # log beside the old snapshot is a store no one can open).
                os.replace(snap_tmp, self.path / "snapshot")
                fsync_dir(self.path)
                os.replace(log_tmp, self.path / "log")
                fsync_dir(self.path)
                with self._sync_lock:
                    os.close(self.log_fd)
                    self._set_log(new_fd, gen + 1)
                    self.synced = self.appended  # all of it is in fsynced files now
                self.gen = gen + 1
                self.offset = LOG_HEADER.size + len(window) + len(tail)
                self.applied = seq
                self._window = len(window)
                self._snapshot_written(SNAP_HEADER.size + len(body))
        except BaseException:
            if self.log_fd != new_fd:
                with contextlib.suppress(OSError):
                    os.close(new_fd)
            raise
        return True

    # ------------------------------------------------------------- lifecycle

    def _close_after_compaction(self) -> None:
        with self._compaction_mutex, self.lock:
            self.closed = True

    async def close(self) -> None:
        """Flush (except in mode "never"), release the files; later operations fail."""
        if self.closed:
            return
        # Let a running compaction finish (cut short, it would fail and log);
        # once closed, none starts.
        await anyio.to_thread.run_sync(self._close_after_compaction)
        self._stop.set()
        self._dirty.set()
        if self._syncer is not None:
            await anyio.to_thread.run_sync(self._syncer.join)
        with self._sync_lock:
            if self.fsync != "never":
                with contextlib.suppress(OSError):
                    os.fsync(self.log_fd)
                    self.synced = self.appended  # writes still waiting for an fsync have it
            os.close(self.log_fd)
            self._set_log(-1)
            if self.marks is not None:
                self.marks.close()  # under the lock: no thread is using the marks meanwhile
        self.plock.close()


class FileStateAdapter(MemoryStateAdapter):
    """State in a directory: an append-only log plus snapshots, safe across processes.

    ``fsync`` chooses when appended records reach the disk itself (each is in
    the OS, and survives the process being killed, before it is
    acknowledged): ``"always"`` fsyncs before acknowledging, sharing one
    fsync among concurrent writers; ``"batch"`` (the default) fsyncs at most
    ``fsync_interval_ms`` later; ``"never"`` leaves it to the OS. ``repair``
    salvages a log damaged in the middle: everything before the damage is
    kept and the damaged file is moved aside. Compaction starts once the log
    is larger than both the snapshot and ``compact_min_bytes``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fsync: FsyncMode = "batch",
        *,
        fsync_interval_ms: float = 1000,
        repair: bool = False,
        compact_min_bytes: int = 4 << 20,
        limits: Limits = DEFAULT_LIMITS,
        feed_retention: int = DEFAULT_RETENTION,
        feed_retention_bytes: int = DEFAULT_RETENTION_BYTES,
    ) -> None:
        if fsync not in _MODES:
            raise InvalidArgumentError(f"fsync: expected 'always', 'batch' or 'never', got {fsync!r}")
        if not isinstance(fsync_interval_ms, (int, float)) or not fsync_interval_ms > 0:
            raise InvalidArgumentError(f"fsync_interval_ms: expected a positive number, got {fsync_interval_ms!r}")
        if not isinstance(compact_min_bytes, int) or compact_min_bytes < 0:
            raise InvalidArgumentError(f"compact_min_bytes: expected a non-negative int, got {compact_min_bytes!r}")
        check_retention(feed_retention, feed_retention_bytes)
        if feed_retention_bytes > MAX_RECORD // 2:
            # A compaction carries the retained window over as one log record,
            # and a log record holds at most MAX_RECORD bytes.
            raise InvalidArgumentError(
                f"feed_retention_bytes: at most {MAX_RECORD // 2} for a file store "
                f"(its window is kept in one log record), got {feed_retention_bytes}"
            )
        self.path = Path(path)
        self.fsync: FsyncMode = fsync
        self._log = LogSession(
            self.path,
            StateTable(limits),
            fsync=fsync,
            fsync_interval=fsync_interval_ms / 1000,
            compact_min_bytes=compact_min_bytes,
            repair=repair,
            feed_retention=feed_retention,
            feed_retention_bytes=feed_retention_bytes,
        )
        super().__init__(limits=limits, session=self._log)
        self._log.flush = self._flush

    async def compact(self) -> None:
        """Write a snapshot of the current state and start a new, short log.

        Runs by itself in a background thread once the log outgrows the
        snapshot; call it for maintenance or before a backup. Operations are
        blocked only while the tail of the log written during the snapshot
        is copied and the files are swapped.
        """
        await self._log.compact()

    async def close(self) -> None:
        """Flush (except in mode "never"), release the files; later operations fail."""
        await self._log.close()
        self._closed = True
        if self._feed is not None:
            self._feed.wake()  # followers end with UNAVAILABLE instead of waiting forever

    async def _feed_wait(self, after: int) -> None:
        self._log.watch()
        await super()._feed_wait(after)
