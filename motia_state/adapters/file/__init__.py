"""The file store: a crash-safe, log-structured store that processes share.

- ``format.py``: the on-disk format (constants shared by reader and writer,
  record types and their encoding, one log reader, one log writer, the
  snapshot codec).
- ``locking.py``: the process lock and directory fsync.
- ``store.py``: :class:`FileStateAdapter`, the memory adapter over a
  :class:`~motia_state.adapters.file.store.LogSession` (loading, catching
  up with other processes, appending, durability, compaction).

docs/file-store.md describes the design for users.
"""

from __future__ import annotations

from .format import CorruptStoreError
from .store import FileStateAdapter, FsyncMode

__all__ = ["CorruptStoreError", "FileStateAdapter", "FsyncMode"]
