"""What the codemod plans and reports: rewrites, findings, per-file results and the run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FileError", "FileResult", "Finding", "Rewrite", "Summary"]


@dataclass(frozen=True, slots=True)
class Rewrite:
    """One renamed method call: where it is (1-based line, 0-based column) and the name before and after."""

    line: int
    column: int
    old: str
    new: str
    offset: int  # character offset of ``old`` in the decoded text


@dataclass(frozen=True, slots=True)
class Finding:
    """Something reported and left as it is, with the operation to use instead (spelled for its language)."""

    path: str
    line: int
    column: int
    message: str
    suggestion: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column + 1}: {self.message}"


@dataclass(frozen=True, slots=True)
class FileResult:
    """The plan for one file: its rewrites, its findings and its text with the rewrites applied.

    ``new_text`` equals the original text when there is nothing to rewrite;
    ``new_bytes`` is that text encoded exactly as the file was (encoding,
    byte order mark and line endings kept).
    """

    path: str
    language: str
    rewrites: list[Rewrite]
    findings: list[Finding]
    new_text: str
    new_bytes: bytes

    @property
    def changed(self) -> bool:
        """Whether applying the plan changes the file."""
        return bool(self.rewrites)


@dataclass(frozen=True, slots=True)
class FileError:
    """A file (or a path) the codemod could not process; it was left as it was.

    ``code`` is INVALID_ARGUMENT for bad input (a missing path, a file that
    does not decode or tokenize) and INTERNAL for a bug in the codemod.
    """

    path: str
    message: str
    code: str = "INVALID_ARGUMENT"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(slots=True)
class Summary:
    """The outcome of :func:`run` over many paths.

    ``changed`` lists the files rewritten (with ``check``: the files that
    would be). ``exit_code`` follows the command line's contract: 2 when a
    path or file was bad input, 1 when the codemod itself failed on a file
    or, in check mode, when a rewrite would happen, else 0; findings alone
    never fail.
    """

    check: bool
    files: list[FileResult] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        """Paths of the files that were (or, with ``check``, would be) rewritten."""
        return [result.path for result in self.files if result.changed]

    @property
    def rewrites(self) -> int:
        """How many calls were (or would be) renamed, over every file."""
        return sum(len(result.rewrites) for result in self.files)

    @property
    def findings(self) -> list[Finding]:
        """Every finding, file by file in the order the files were visited."""
        return [finding for result in self.files for finding in result.findings]

    @property
    def exit_code(self) -> int:
        """0 ok, 1 the work failed or a check found rewrites to make, 2 bad input."""
        if any(error.code == "INVALID_ARGUMENT" for error in self.errors):
            return 2
        if self.errors or (self.check and self.changed):
            return 1
        return 0
