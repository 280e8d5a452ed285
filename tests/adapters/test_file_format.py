"""The file store's format on its own: one writer, one reader, record types, torn tails vs damage.

The store's behaviour over these (recovery, processes, crashes) is in
test_file_adapter.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms
from motia_state.adapters.file import format as fmt

HEADER = fmt.LOG_HEADER.pack(fmt.LOG_MAGIC, fmt.FORMAT_VERSION, 1)


@pytest.fixture
def log_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "log", os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd, HEADER, 0)
    yield fd
    os.close(fd)


def write_records(fd: int, *records: bytes) -> list[int]:
    """Append records with a LogWriter after the header; returns where each ends."""
    writer, offset, ends = fmt.LogWriter(fd), len(HEADER), []
    for data in records:
        writer.write(data, offset)
        offset += len(data)
        ends.append(offset)
    return ends


def replay(fd: int) -> tuple[int, dict[str, dict[str, Any]]]:
    data: dict[str, dict[str, Any]] = {}
    return fmt.LogReader(fd).replay(len(HEADER), data, whole=True), data


def test_the_writer_grows_the_file_ahead_and_the_reader_stops_at_the_zeros(log_fd: int) -> None:
    ends = write_records(
        log_fd,
        fmt.changes_record([["g", "a", 1], ["g", "b", {"x": [1]}]]),
        fmt.changes_record([["g", "a"]]),
    )
    assert os.fstat(log_fd).st_size >= fmt.GROW_MIN > ends[-1]
    assert replay(log_fd) == (ends[-1], {"g": {"b": {"x": [1]}}})
    # Catching up reads in chunks and ends at the same place.
    data: dict[str, dict[str, Any]] = {}
    assert fmt.LogReader(log_fd).replay(len(HEADER), data, whole=False) == ends[-1]


@pytest.mark.parametrize("marker", [fmt.moved_record(7), fmt.record(fmt.RecordType.CHANGES, b'{"moved":7}')])
def test_a_moved_record_names_the_next_generation(log_fd: int, marker: bytes) -> None:
    ends = write_records(log_fd, fmt.changes_record([["g", "k", 1]]), marker)
    with pytest.raises(fmt.Moved) as info:
        replay(log_fd)
    assert (info.value.offset, info.value.end, info.value.generation) == (ends[0], ends[1], 7)


def test_a_whole_record_never_ends_in_a_zero_byte() -> None:
    """What tells a torn append (its end still zero) from a changed record."""
    for data in (fmt.changes_record([["g", "k", "\0"]]), fmt.moved_record(10), fmt.moved_record(1 << 40)):
        assert data[-1] != 0


def test_an_unknown_record_type_asks_for_an_upgrade(log_fd: int) -> None:
    write_records(log_fd, fmt.record(fmt.RecordType.CHANGES, b'[["g","k",1]]'), fmt.record(9, b"{}"))  # type: ignore[arg-type]
    with pytest.raises(ms.UnavailableError, match="type 9") as info:
        replay(log_fd)
    assert not isinstance(info.value, ms.CorruptStoreError)


def _cases() -> list[tuple[str, bytes, bool]]:
    whole = fmt.changes_record([["g", "k", "value"]])
    body_length = len(whole) - 8
    return [
        ("partial body, rest zeros", whole[:-4] + bytes(4), True),
        ("header only", whole[:8] + bytes(body_length), True),
        ("a few header bytes", whole[:2] + bytes(len(whole) - 2), True),
        ("a changed byte", whole[:-1] + b"}", False),
        ("length one longer", (body_length + 1).to_bytes(4, "little") + whole[4:] + b"\0", False),
        ("length one shorter", (body_length - 1).to_bytes(4, "little") + whole[4:], False),
    ]


@pytest.mark.parametrize(("name", "tail", "torn"), _cases(), ids=[c[0] for c in _cases()])
def test_a_bad_last_record_is_torn_only_when_a_crash_could_have_left_it(
    log_fd: int, name: str, tail: bytes, torn: bool
) -> None:
    ends = write_records(log_fd, fmt.changes_record([["g", "first", 1]]))
    fmt.LogWriter(log_fd).write(tail, ends[-1])
    with pytest.raises(fmt.Damage) as info:
        replay(log_fd)
    assert info.value.offset == ends[-1]
    assert info.value.torn is torn, f"{name}: {info.value.reason}"


def test_a_bad_record_with_anything_after_it_is_damage(log_fd: int) -> None:
    first = fmt.changes_record([["g", "a", 1]])
    write_records(log_fd, first[:-4] + bytes(4), fmt.changes_record([["g", "b", 2]]))
    with pytest.raises(fmt.Damage) as info:
        replay(log_fd)
    assert not info.value.torn


def test_walking_records_finds_their_boundaries() -> None:
    records = [fmt.changes_record([["g", str(i), i]]) for i in range(3)]
    buf = HEADER + b"".join(records)
    boundaries = [len(HEADER) + sum(len(r) for r in records[:i]) for i in range(4)]
    for b in boundaries:
        assert fmt.walk_records(buf, len(HEADER), b)
    assert not fmt.walk_records(buf, len(HEADER), boundaries[1] + 1)
    assert not fmt.walk_records(buf, len(HEADER), len(buf) + 10)


def test_replaying_what_is_written_without_the_lock_applies_whole_records_and_stops_quietly(log_fd: int) -> None:
    """Cut anywhere while a writer appends: only the whole records are applied, up to where the cut is, no error."""
    records = [
        fmt.feed_record(1, 1000, 0, None, [["g", "a", "set", "created", None, 1]]),
        fmt.changes_record([["g", "b", "x" * 20_000]]),  # longer than one read
        fmt.feed_record(
            2, 1001, 1, {"s": 1}, [["g", "a", "increment", "updated", 1, 2], ["h", "c", "set", "created", None, [3]]]
        ),
        fmt.feed_record(4, 1002, 0, None, [["g", "b", "delete", "deleted", "x", None]]),
    ]
    log = b"".join(records)
    ends = [len(HEADER) + sum(len(r) for r in records[: i + 1]) for i in range(len(records))]
    cuts = sorted({0, 1, 7, 8, 9, len(log)} | {e - len(HEADER) + d for e in ends for d in (-1, 0, 1, 8)})
    for cut in (c for c in cuts if 0 <= c <= len(log)):
        os.ftruncate(log_fd, len(HEADER))
        fmt.LogWriter(log_fd).write(
            log[:cut], len(HEADER)
        )  # the rest of the file: zeros, as a record being written leaves it
        seen: list[int] = []
        data: dict[str, dict[str, Any]] = {}
        end = fmt.LogReader(log_fd, lambda seq, *_, seen=seen: seen.append(seq)).replay_written(len(HEADER), data)
        whole = [e for e in ends if e - len(HEADER) <= cut]
        assert end == (whole[-1] if whole else len(HEADER)), cut
        # What it applied is what replaying those records under the lock applies.
        prefix: dict[str, dict[str, Any]] = {}
        os.ftruncate(log_fd, end)
        assert fmt.LogReader(log_fd).replay(len(HEADER), prefix, whole=True) == end
        assert data == prefix, cut
        assert seen == [1, 2, 4][: len([e for e in whole if e != ends[1]])], cut


@pytest.mark.parametrize(
    "stop",
    [
        fmt.moved_record(7),
        fmt.record(fmt.RecordType.CHANGES, b'{"moved":7}'),
        fmt.history_record([]),
        fmt.record(9, b"{}"),  # type: ignore[arg-type]
        fmt.record(fmt.RecordType.FEED, b'[0,1,0,null,[["g","k","set","created",null,1]]]'),
        fmt.changes_record([["g", "k", 2]])[:-1] + b"}",  # a changed byte: damage
    ],
    ids=["moved", "old moved", "history", "unknown type", "bad feed body", "damaged"],
)
def test_replaying_without_the_lock_leaves_every_judgement_to_the_locked_replay(log_fd: int, stop: bytes) -> None:
    ends = write_records(log_fd, fmt.changes_record([["g", "k", 1]]), stop, fmt.changes_record([["g", "k", 3]]))
    data: dict[str, dict[str, Any]] = {}
    assert fmt.LogReader(log_fd).replay_written(len(HEADER), data) == ends[0]
    assert data == {"g": {"k": 1}}


@pytest.mark.parametrize("count", [0, 1, 255, 256, 257, 700])
def test_a_history_record_streamed_from_a_generator_is_the_list_encoded_whole(count: int) -> None:
    # The window is encoded a chunk at a time; however the entries fall
    # into chunks, the record is the JSON list of all of them, in order.
    import msgspec

    entries = [
        [i + 1, 1_700_000_000_000 + i, i % 3, None, [["g", f"k{i}", "set", "created", None, {"i": i}]]]
        for i in range(count)
    ]
    streamed = fmt.history_record(iter(entries))
    assert streamed == fmt.record(fmt.RecordType.HISTORY, msgspec.json.encode(entries))
    assert msgspec.json.decode(streamed[fmt.RECORD_HEADER.size + 1 :]) == entries
