"""The codemod's entry points: plan a text or a file, run over paths (the ``codemod`` command's library)."""

from __future__ import annotations

import os

from ._model import FileError, FileResult, Summary
from ._tokens import LineIndex, SourceError
from .files import decode, encode, walk, write_atomically
from .languages import Language, language_for
from .readmodifywrite import find_read_modify_writes
from .rename import plan_renames

__all__ = ["plan_file", "plan_text", "run"]


def plan_text(text: str, language: Language, path: str = "<text>", encoding: str = "utf-8") -> FileResult:
    """Plan the codemod for source ``text`` in ``language``: its rewrites, findings and rewritten text.

    Nothing is read or written; ``path`` only labels the findings.
    Raises :class:`SourceError` (a ``TokenizeError``) when the text cannot be
    tokenized, so that nothing is planned for text that is not understood.
    """
    tokens = language.tokenize(text)
    lines = LineIndex(text)
    rewrites, findings = plan_renames(path, tokens, language, lines)
    findings.extend(find_read_modify_writes(path, tokens, language, lines))
    findings.sort(key=lambda finding: (finding.line, finding.column))
    pieces: list[str] = []
    cursor = 0
    for rewrite in rewrites:
        if text[rewrite.offset : rewrite.offset + len(rewrite.old)] != rewrite.old:
            # the tokenizer's position and the text disagree: never guess, leave the file
            raise SourceError(f"position {rewrite.line}:{rewrite.column + 1} does not hold {rewrite.old!r}")
        pieces.append(text[cursor : rewrite.offset])
        pieces.append(rewrite.new)
        cursor = rewrite.offset + len(rewrite.old)
    pieces.append(text[cursor:])
    new_text = "".join(pieces)
    return FileResult(path, language.name, rewrites, findings, new_text, encode(new_text, encoding))


def plan_file(path: str) -> FileResult:
    """Plan the codemod for one file (by its extension's language) without changing it.

    Raises :class:`SourceError` for a file of another type, one that does
    not decode or tokenize, and ``OSError`` when it cannot be read.
    """
    language = language_for(path)
    if language is None:
        raise SourceError(f"not a file the codemod handles (.py, .js, .mjs, .cjs, .ts, .rb): {path}")
    with open(path, "rb") as handle:
        data = handle.read()
    text, encoding = decode(data, language)
    return plan_text(text, language, path, encoding)


def run(paths: list[str], check: bool = False) -> Summary:
    """Run the codemod over files and folders (recursed); rewrite files unless ``check``.

    Each file is planned, then written atomically when it changes (with
    ``check``, nothing is written). A path that does not exist, a file that
    cannot be read, decoded or tokenized is recorded in ``Summary.errors``
    and left as it was; the other files are still processed. A file reached
    twice (overlapping paths, links) is processed once. See
    :attr:`Summary.exit_code` for the command's exit status.
    """
    summary = Summary(check=check)
    seen: set[str] = set()
    for root in paths:
        if not os.path.exists(root):
            summary.errors.append(FileError(root, "no such file or folder"))
            continue
        for path in walk(root):
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
                result = _plan_bytes(path, data)
                if result.changed and not check:
                    write_atomically(path, result.new_bytes, data)
            except SourceError as exc:
                summary.errors.append(FileError(path, exc.message))
                continue
            except OSError as exc:
                summary.errors.append(FileError(path, exc.strerror or str(exc)))
                continue
            except Exception as exc:
                # a bug of ours on one file must not stop the others (some may be written already)
                summary.errors.append(FileError(path, f"{type(exc).__name__}: {exc}", code="INTERNAL"))
                continue
            summary.files.append(result)
    return summary


def _plan_bytes(path: str, data: bytes) -> FileResult:
    language = language_for(path)
    if language is None:
        raise SourceError(f"not a file the codemod handles (.py, .js, .mjs, .cjs, .ts, .rb): {path}")
    text, encoding = decode(data, language)
    return plan_text(text, language, path, encoding)
