"""The file store in odd environments: files it may not open, a full disk, odd paths, nested stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import motia_state as ms

ROOT = Path(__file__).resolve().parents[2]


async def _store_with_a_value(path: Path) -> None:
    a = ms.FileStateAdapter(path)
    await a.set("g", "k", 1)
    await a.close()


@pytest.mark.parametrize("name", ["lock", "log"])
async def test_a_store_file_that_cannot_be_opened_is_unavailable_not_a_raw_os_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "s"
    await _store_with_a_value(path)
    (path / name).unlink()
    (path / name).mkdir()  # opening it for writing fails (EISDIR), as a read-only file system does (EROFS)
    with pytest.raises(ms.errors.UnavailableError, match="cannot open the store") as caught:
        ms.FileStateAdapter(path)
    assert caught.value.code == "UNAVAILABLE"
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens files whatever their mode")
async def test_a_read_only_store_directory_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "s"
    await _store_with_a_value(path)
    for name in os.listdir(path):
        os.chmod(path / name, 0o400)
    os.chmod(path, 0o500)
    try:
        with pytest.raises(ms.errors.UnavailableError, match="cannot open the store"):
            ms.FileStateAdapter(path)
    finally:
        os.chmod(path, 0o700)
        for name in os.listdir(path):
            os.chmod(path / name, 0o600)
