"""Files: which ones to visit, how to read them exactly and how to write them back atomically."""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import stat
import tempfile
import tokenize
from collections.abc import Iterator

from ._tokens import SourceError
from .languages import PYTHON, Language, language_for

__all__ = ["SKIPPED_DIRECTORIES", "decode", "encode", "walk", "write_atomically"]

#: Folders never entered: dependencies, version control, caches (virtualenvs are also found by pyvenv.cfg).
SKIPPED_DIRECTORIES = frozenset(("node_modules", ".git", ".hg", ".svn", ".venv", "venv", "__pycache__"))


def walk(root: str) -> Iterator[str]:
    """The source files under ``root`` (a file yields itself), in sorted order; skipped folders never entered.

    A folder is skipped by name (:data:`SKIPPED_DIRECTORIES`) or when it
    holds a ``pyvenv.cfg`` (any virtualenv). Symbolic links to folders are
    not followed, so a link cycle cannot loop.
    """
    if not os.path.isdir(root):
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIPPED_DIRECTORIES and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        )
        for name in sorted(files):
            if language_for(name) is not None:
                yield os.path.join(folder, name)


def decode(data: bytes, language: Language) -> tuple[str, str]:
    """The text of a source file and the codec that gives back exactly ``data`` when it re-encodes it.

    Python files follow PEP 263 (a BOM or a coding cookie, else UTF-8);
    JavaScript and Ruby files are UTF-8, with or without a BOM. Line endings
    are kept as they are. Raises :class:`SourceError` when the bytes do not
    decode (the message names the byte offset and line of the first bad
    byte), when a Python file's encoding declaration cannot be used, or when
    the bytes do not round-trip exactly (the codemod would then change bytes
    it never meant to touch).
    """
    if language is PYTHON:
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as exc:
            # The first two lines are not UTF-8 and declare no encoding, or declare one that cannot be used.
            raise _undeclared(data, exc.msg) from None
    else:
        encoding = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        # utf-8-sig counts positions after the byte order mark it skipped
        skipped = len(codecs.BOM_UTF8) if encoding == "utf-8-sig" and data.startswith(codecs.BOM_UTF8) else 0
        raise _undecodable(data, encoding, exc.start + skipped, exc.reason, language) from None
    except LookupError as exc:
        raise SourceError(f"cannot decode as {encoding}: {exc}") from None
    if encode(text, encoding) != data:
        raise SourceError(f"its bytes do not round-trip through {encoding}")
    return text, encoding


def _undecodable(data: bytes, encoding: str, offset: int, reason: str, language: Language) -> SourceError:
    """The error for bytes that are not valid ``encoding`` from byte ``offset`` on: where, which byte, what to do."""
    line = data.count(b"\n", 0, offset) + 1
    shown = f"byte 0x{data[offset]:02x}" if offset < len(data) else "the end of the file"
    hint = f"save the file as {encoding.removesuffix('-sig')}"
    if language is PYTHON:
        hint += " or declare its encoding on its first line (# -*- coding: NAME -*-)"
    return SourceError(f"cannot decode as {encoding} at byte offset {offset} (line {line}): {shown}: {reason}; {hint}")


def _undeclared(data: bytes, problem: str) -> SourceError:
    """The error for a Python file whose encoding cannot be told (``problem``: what the tokenizer said)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        skipped = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        if not skipped or exc.start >= skipped:
            return _undecodable(data, "utf-8", exc.start, exc.reason, PYTHON)
    if data.startswith(codecs.BOM_UTF8):
        problem = "it starts with a UTF-8 byte order mark but declares another encoding"
    return SourceError(f"its encoding declaration cannot be used ({problem})")


def encode(text: str, encoding: str) -> bytes:
    """``text`` in ``encoding`` (``utf-8-sig`` writes the BOM back)."""
    return text.encode(encoding)


def write_atomically(path: str, data: bytes, expected: bytes) -> None:
    """Replace the file at ``path`` with ``data``: a temporary file in its folder, then a rename.

    The file keeps its permission bits; a symbolic link is written through
    (its target is replaced, the link stays). ``expected`` is what the file
    held when it was planned: when it changed since, nothing is written and
    a :class:`SourceError` says so (a concurrent edit is never overwritten).
    """
    target = os.path.realpath(path)
    mode = stat.S_IMODE(os.stat(target).st_mode)
    folder = os.path.dirname(target)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(target) + ".", suffix=".codemod")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        with open(target, "rb") as current:
            if current.read() != expected:
                raise SourceError("the file changed while the codemod ran; run it again")
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    # the rename itself survives a power loss only once its folder is synced
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
