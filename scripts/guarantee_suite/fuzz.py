"""Section ``fuzz``: one bit flipped at a time in every byte of a small file store.

Two small stores are written and closed: one that is only a log, and one
compacted into a snapshot with a log after it. For each byte of each file
(the log's zero-filled space ahead of its records included) a copy of the
store gets one bit of that byte flipped, and is opened afresh. Each trial
ends one of three ways:

- intact: every acknowledged record reads back (the flip hit nothing that
  matters);
- reported: opening or reading it raises ``CorruptStoreError`` (code
  CORRUPT);
- refused: opening raises UNAVAILABLE naming a newer format version (a flip
  in the version field looks like a store written by a later release);
  nothing is lost, the store is not opened;
- lost: it opens and reads without error but the state differs: an
  acknowledged record lost or changed. "dropped as torn" when the store
  only logged a warning that it dropped a torn tail (the contract allows
  that for a crash's cut-short last append, never for damage to records
  that were acknowledged), "silent" when not even that. Any other exception
  is counted as lost too, as it is not the error the contract promises.

In the bytes that hold headers and records every bit is flipped in turn
(one bit per byte in the short run); in the zero-filled space one bit of a
sample of the bytes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import motia_state as ms

from .linearizability import json_equal
from .report import Row, render


@dataclass(frozen=True)
class Size:
    """Where headers and records are: flip each bit (``every_bit``) or one per byte; in the zero-filled space: one bit of every ``tail_stride``-th byte."""

    tail_stride: int
    every_bit: bool


FULL = Size(tail_stride=64, every_bit=True)
SHORT = Size(tail_stride=4096, every_bit=False)


async def _write_store(path: Path, compacted: bool) -> None:
    adapter = ms.FileStateAdapter(path, fsync="never")
    try:
        for i in range(4):
            await adapter.set("g", f"k{i}", {"i": i, "name": f"entry {i}"})
        await adapter.transaction(
            "g", [{"type": "increment", "key": "n", "delta": 7}, {"type": "push", "key": "list", "items": [1, "two"]}]
        )
        await adapter.set("other", "k", None)
        await adapter.delete("g", "k0")
        if compacted:
            await adapter.compact()
            await adapter.set("g", "after", [True, False])
            await adapter.increment("g", "n")
    finally:
        await adapter.close()


async def _read_store(path: Path) -> dict[str, dict[str, Any]]:
    adapter = ms.FileStateAdapter(path, fsync="never")
    try:
        out = {}
        for group in await adapter.groups():
            out[group] = {key: await adapter.get(group, key) for key in await adapter.keys(group)}
        return out
    finally:
        await adapter.close()


def _used_length(data: bytes) -> int:
    """Where the zero-filled space at the end of a file begins."""
    return len(data.rstrip(b"\0"))


class _Warnings(logging.Handler):
    """Keeps what the store logs during one trial, instead of printing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _trial(pristine: Path, work: Path, name: str, offset: int, bit: int, expected: Any, log: _Warnings) -> str:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pristine, work)
    target = work / name
    data = bytearray(target.read_bytes())
    data[offset] ^= 1 << bit
    target.write_bytes(bytes(data))
    log.messages.clear()
    try:
        got = anyio.run(_read_store, work)
    except ms.CorruptStoreError:
        return "reported"
    except ms.UnavailableError as e:
        if "format version" in str(e):
            return "refused"
        return f"raised {type(e).__name__}"
    except Exception as e:  # counted: any error but CORRUPT breaks the contract
        return f"raised {type(e).__name__}"
    if json_equal(got, expected):
        return "intact"
    return "dropped as torn" if any("torn" in m for m in log.messages) else "silent"


def log_regions(data: bytes) -> list[str]:
    """Name the part of a log file each byte belongs to (header fields, record fields, the last record, after)."""
    names = ["magic"] * 8 + ["format version"] * 2 + ["generation"] * 8
    pos, records = len(names), []
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "little")
        if length == 0 or pos + 8 + length > len(data):
            break
        records.append(pos)
        names += ["record length"] * 4 + ["record checksum"] * 4 + ["record body"] * length
        pos += 8 + length
    if records:
        last = records[-1]
        names[last:] = ["the last record"] * (pos - last)
    names += ["after the last record"] * (len(data) - pos)
    return names


def run_store(compacted: bool, size: Size, regions: Counter[tuple[str, str]] | None = None) -> Row:
    """Flip bits through every file of one store; count the outcomes (by region of a log, into ``regions``)."""
    outcomes: Counter[str] = Counter()
    log = _Warnings()
    logger = logging.getLogger("motia_state")
    logger.addHandler(log)
    propagate, logger.propagate = logger.propagate, False
    try:
        return _flip_all(compacted, size, outcomes, log, regions if regions is not None else Counter())
    finally:
        logger.removeHandler(log)
        logger.propagate = propagate


def _flip_all(
    compacted: bool, size: Size, outcomes: Counter[str], log: _Warnings, regions: Counter[tuple[str, str]]
) -> Row:
    flips = 0
    with tempfile.TemporaryDirectory(prefix="motia-guarantees-fuzz-") as tmp:
        pristine, work = Path(tmp) / "store", Path(tmp) / "work"
        anyio.run(_write_store, pristine, compacted)
        expected = anyio.run(_read_store, pristine)
        for file in sorted(pristine.iterdir()):
            data = file.read_bytes()
            if not data:
                continue  # the lock file holds nothing
            used = _used_length(data) + 16  # and the first bytes past the end, where a next header would go
            names = log_regions(data[:used]) if file.name == "log" else [file.name] * used
            for offset in range(len(data)):
                if offset < used and size.every_bit:
                    bits: range = range(8)
                elif offset < used or (offset - used) % size.tail_stride == 0:
                    bits = range(offset % 8, offset % 8 + 1)
                else:
                    continue
                for bit in bits:
                    outcome = _trial(pristine, work, file.name, offset, bit, expected, log)
                    outcomes[outcome] += 1
                    regions[(names[offset] if offset < used else "zero-filled space", outcome)] += 1
                    flips += 1
    files = "snapshot + log" if compacted else "log only"
    bad = sum(n for outcome, n in outcomes.items() if outcome not in ("intact", "reported", "refused"))
    notes = ", ".join(f"{n:,} {outcome}" for outcome, n in sorted(outcomes.items()))
    tried = f"{flips:,} single-bit flips ({'every bit' if size.every_bit else 'one bit per byte'}"
    tried += f" of headers and records, 1 in {size.tail_stride} zero bytes)"
    return Row("fuzz", f"file store, {files}", tried, bad, notes)


def run(size: Size, seed: str) -> list[Row]:
    """One row per store shape."""
    del seed  # every byte is tried: nothing is drawn
    return [run_store(False, size), run_store(True, size)]


if __name__ == "__main__":
    # Where the flips landed in the log-only store, every bit of each byte: one line per part of the log.
    by_region: Counter[tuple[str, str]] = Counter()
    print(render([run_store(False, FULL, by_region)]))
    for part in dict.fromkeys(region for region, _ in by_region):
        counts = ", ".join(f"{n:,} {outcome}" for (r, outcome), n in sorted(by_region.items()) if r == part)
        print(f"{part}: {counts}")
