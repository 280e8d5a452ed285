"""The token model the three tokenizers share, and their one error.

A tokenizer turns source text into a list of :class:`Token` with character
offsets into that text. Everything that is not code (strings, comments,
template and heredoc text, regex literals, Ruby symbols) comes out as one
opaque token, so the rewrite and the read-modify-write analysis, which look
only at NAME and PUNCT tokens, can never touch it.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass

from ..errors import InvalidArgumentError

__all__ = ["Kind", "LineIndex", "SourceError", "Token", "TokenizeError", "significant"]


class Kind(enum.Enum):
    """What a token is, as far as the codemod cares."""

    NAME = "name"  # identifiers and keywords
    PUNCT = "punct"  # operators and brackets
    NUMBER = "number"
    STRING = "string"  # any literal text: strings, template parts, heredocs, %-literals
    REGEX = "regex"
    SYMBOL = "symbol"  # Ruby :name, and a Ruby label `name:`
    COMMENT = "comment"
    NEWLINE = "newline"  # end of a logical line (Python, Ruby)
    BLOCK_START = "block_start"  # Python INDENT
    BLOCK_END = "block_end"  # Python DEDENT


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its exact source text and where it starts (a character offset)."""

    kind: Kind
    text: str
    start: int

    @property
    def end(self) -> int:
        """The offset just past the token."""
        return self.start + len(self.text)


class SourceError(InvalidArgumentError):
    """Raised when the codemod cannot process a file exactly (bytes, tokens or a concurrent edit); it is left as it was.

    Its code is INVALID_ARGUMENT: the command reports the file and exits 2.
    """


class TokenizeError(SourceError):
    """Raised when a source file cannot be tokenized (an unterminated string, comment, regex or heredoc).

    The codemod then leaves the file alone: rewriting a file it cannot read
    exactly could change a string. Its code is INVALID_ARGUMENT (bad input).
    """

    def __init__(self, message: str, line: int, column: int) -> None:
        SourceError.__init__(self, f"{message} at line {line}, column {column + 1}", line=line, column=column)
        self.line = line
        self.column = column


class LineIndex:
    """Maps character offsets to (line, column), lines counted from 1 and split on ``\\n``."""

    def __init__(self, text: str) -> None:
        starts = [0]
        index = text.find("\n")
        while index != -1:
            starts.append(index + 1)
            index = text.find("\n", index + 1)
        self._starts = starts
        self._length = len(text)

    def position(self, offset: int) -> tuple[int, int]:
        """The 1-based line and 0-based column of ``offset``."""
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1]

    def offset(self, line: int, column: int) -> int:
        """The character offset of a 1-based line and 0-based column (past the last line: the end)."""
        if line > len(self._starts):
            return self._length  # Python's tokenizer ends a file without a final newline on a line of its own
        return self._starts[line - 1] + column


_INSIGNIFICANT = (Kind.COMMENT, Kind.NEWLINE, Kind.BLOCK_START, Kind.BLOCK_END)


def significant(tokens: list[Token]) -> list[Token]:
    """The tokens that carry code: no comments, line ends or indentation markers."""
    return [token for token in tokens if token.kind not in _INSIGNIFICANT]
