"""Ruby source to tokens, by a small hand-written scanner.

It knows what can hide code-looking text: '' and "" strings and backquoted
commands (the ``#{...}`` of "" and backquotes is code, nested to any depth),
heredocs (``<<~ID``, ``<<-ID``, ``<<ID``, quoted ids; the body is opaque),
percent literals (``%q %Q %w %W %i %I %r %s %x`` and bare ``%(...)``, any
delimiter, brackets nested; opaque), regex literals, ``#`` comments,
``=begin``/``=end`` blocks, the ``__END__`` data section, symbols
(``:atomic_update`` is a SYMBOL, never a name), labels (``key:``), ``?c``
character literals and globals such as ``$'``.

Ruby's grammar decides some of these by what came before: ``/``, ``%`` and
``<<`` start a literal after an operator or a keyword, and after a method
name followed by a space but no space after (``split /,/``, ``puts <<~EOS``);
after any other value they are operators.
"""

from __future__ import annotations

import re

from ._tokens import Kind, LineIndex, Token, TokenizeError

__all__ = ["tokenize_ruby"]

_PUNCTUATORS = sorted(
    [
        "**=",
        "<=>",
        "===",
        "...",
        "<<=",
        ">>=",
        "&&=",
        "||=",
        "==",
        "!=",
        ">=",
        "<=",
        "&&",
        "||",
        "<<",
        ">>",
        "**",
        "=>",
        "->",
        "..",
        "::",
        "+=",
        "-=",
        "*=",
        "/=",
        "%=",
        "|=",
        "&=",
        "^=",
        "=~",
        "!~",
        "&.",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ";",
        ",",
        "<",
        ">",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "|",
        "^",
        "!",
        "~",
        "?",
        ":",
        "=",
        ".",
    ],
    key=len,
    reverse=True,
)
# Keywords that are values: after them '/' divides and 'if' is a modifier.
_VALUE_KEYWORDS = frozenset(["end", "self", "nil", "true", "false", "__FILE__", "__LINE__", "__method__"])
_PUNCT = re.compile("|".join(re.escape(punct) for punct in _PUNCTUATORS))  # longest first
_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_HEREDOC = re.compile(r"<<([~-]?)(?:(['\"`])([^'\"`\n]+)\2|([A-Za-z_]\w*))")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?[ri]?")
_GLOBAL = re.compile(r"\$(?:[A-Za-z_]\w*|-\w|\d+|[!@&`'+~=/\\,;.<>_*$?:\"])")
_SPACE = frozenset(" \t\r\f\v\ufeff")
_OPERATOR_SYMBOL = re.compile(
    r":(?:\[\]=?|\*\*|<=>|===?|=~|!=|!~|<<|>>|<=|>=|[+\-!~]@|[-+*/%<>!~&|^])(?![=>:])"
    r"|:\$(?:[A-Za-z_]\w*|-\w|\d+|[!@&`'+~=/\\,;.<>_*$?:\"])"
)
_CHAR_LITERAL = re.compile(
    r"\?(?:\\[MC]-|\\c)*(?:\\u\{[0-9a-fA-F ]+\}|\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{1,2}|\\[0-7]{1,3}|\\.|[^\\\s])"
)


def _is_ident_start(char: str) -> bool:
    return char.isalpha() or char == "_" or char > "\x7f"


def _is_ident_part(char: str) -> bool:
    return char.isalnum() or char == "_" or char > "\x7f"


def ends_value(token: Token | None) -> bool:
    """Whether ``token`` ends an expression (so a following ``/``, ``%`` or ``<<`` is an operator)."""
    if token is None:
        return False
    if token.kind is Kind.NAME:
        return token.text in _VALUE_KEYWORDS or token.text not in _KEYWORDS
    if token.kind is Kind.PUNCT:
        return token.text in (")", "]", "}")
    if token.kind is Kind.SYMBOL:
        return not token.text.endswith(":")  # a label `key:` is followed by a value
    if token.kind is Kind.STRING:
        return not token.text.endswith("#{")  # the start of an interpolation
    return token.kind in (Kind.NUMBER, Kind.REGEX)


_KEYWORDS = frozenset(
    [
        "alias",
        "and",
        "begin",
        "BEGIN",
        "break",
        "case",
        "class",
        "def",
        "defined?",
        "do",
        "else",
        "elsif",
        "end",
        "END",
        "ensure",
        "false",
        "for",
        "if",
        "in",
        "module",
        "next",
        "nil",
        "not",
        "or",
        "redo",
        "rescue",
        "retry",
        "return",
        "self",
        "super",
        "then",
        "true",
        "undef",
        "unless",
        "until",
        "when",
        "while",
        "yield",
    ]
)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = LineIndex(text)
        self.tokens: list[Token] = []
        # One entry per open '{': None for a brace, else the terminator of the string whose '#{' it is.
        self.braces: list[str | None] = []
        self.heredocs: list[tuple[str, bool, int]] = []  # (id, indented terminator, start)

    def fail(self, message: str, offset: int) -> TokenizeError:
        return TokenizeError(message, *self.lines.position(offset))

    def emit(self, kind: Kind, start: int, end: int) -> int:
        self.tokens.append(Token(kind, self.text[start:end], start))
        return end

    def previous(self) -> Token | None:
        for token in reversed(self.tokens):
            if token.kind is not Kind.COMMENT:
                return token
        return None

    def literal_allowed(self, i: int) -> bool:
        """Whether an ambiguous ``/``, ``%`` or ``<<`` at ``i`` starts a literal."""
        prev = self.previous()
        if not ends_value(prev) or (prev is not None and prev.kind is Kind.NEWLINE):
            return True
        # `puts <<~EOS`, `split /,/`: a command call whose first argument is a literal
        assert prev is not None
        return (
            prev.kind is Kind.NAME
            and prev.text not in _VALUE_KEYWORDS
            and prev.text[0].islower()
            and i > 0
            and self.text[i - 1] in " \t"
            and i + 1 < len(self.text)
            and self.text[i + 1] not in " \t\n="
        )

    def scan_quoted(self, start: int, i: int, close: str, interpolate: bool, opener: str = "") -> int:
        """Emit literal text up to ``close`` (nesting ``opener``), or up to a '#{' when ``interpolate``."""
        text, depth = self.text, 0
        while i < len(text):
            char = text[i]
            if char == "\\":
                i += 2
            elif opener and char == opener:
                depth += 1
                i += 1
            elif char == close:
                if depth == 0:
                    return self.emit(Kind.STRING, start, i + 1)
                depth -= 1
                i += 1
            elif interpolate and text.startswith("#{", i):
                self.braces.append(close)
                return self.emit(Kind.STRING, start, i + 2)
            else:
                i += 1
        raise self.fail("unterminated string", start)

    def skip_opaque(self, start: int, i: int, close: str, opener: str, interpolate: bool = True) -> int:
        """The end of an opaque literal (regex, percent literal) whose text runs to ``close``."""
        text, depth = self.text, 0
        while i < len(text):
            char = text[i]
            if char == "\\":
                i += 2
            elif interpolate and text.startswith("#{", i):
                i = self.skip_interpolation(start, i + 2)
            elif opener and char == opener:
                depth += 1
                i += 1
            elif char == close:
                if depth == 0:
                    return i + 1
                depth -= 1
                i += 1
            else:
                i += 1
        raise self.fail("unterminated literal", start)

    def skip_interpolation(self, start: int, i: int) -> int:
        """The end of a ``#{...}`` inside an opaque literal, found by scanning its code (then dropped)."""
        mark = len(self.tokens)
        end = self.scan(i, nested=True)
        if end is None:
            raise self.fail("unterminated interpolation", start)
        del self.tokens[mark:]
        return end

    def scan_percent(self, i: int) -> int | None:
        """A percent literal at ``i``: its end, or None when '%' is the operator here."""
        text = self.text
        kind_char = text[i + 1] if i + 1 < len(text) else ""
        at = i + 2 if kind_char in tuple("qQwWiIrsx") else i + 1
        if at >= len(text):
            return None
        delimiter = text[at]
        if delimiter.isalnum() or delimiter in " \t\r\n=" or delimiter == "":
            return None
        if not self.literal_allowed(i):
            return None
        close = _PAIRS.get(delimiter, delimiter)
        opener = delimiter if close != delimiter else ""
        end = self.skip_opaque(i, at + 1, close, opener, interpolate=kind_char not in tuple("qwis"))
        if text[at - 1] == "r" or kind_char == "r":
            while end < len(text) and text[end].isalpha():
                end += 1
        return end

    def read_heredoc_bodies(self, i: int) -> int:
        """Emit the bodies of the heredocs opened on the line that ends at ``i`` (just past its newline)."""
        text = self.text
        for ident, indented, opened in self.heredocs:
            start = i
            while True:
                if i >= len(text):
                    raise self.fail(f"heredoc {ident} is never terminated", opened)
                end = text.find("\n", i)
                line_end = len(text) if end == -1 else end + 1
                line = text[i:line_end].rstrip("\r\n")
                i = line_end
                if (line.strip() if indented else line) == ident:
                    break
            self.emit(Kind.STRING, start, i)
        self.heredocs.clear()
        return i

    def run(self) -> list[Token]:
        self.scan(0, nested=False)
        if self.heredocs:
            raise self.fail(f"heredoc {self.heredocs[0][0]} is never terminated", self.heredocs[0][2])
        return self.tokens

    def scan(self, i: int, nested: bool) -> int | None:
        """Tokenize from ``i`` to the end; ``nested``: to the '}' that closes an interpolation (its end).

        Returns None when the text ends first (only possible when ``nested``).
        """
        text, n = self.text, len(self.text)
        base = len(self.braces)
        while i < n:
            char = text[i]
            line_start = i == 0 or text[i - 1] == "\n"
            if char in _SPACE:
                i += 1
            elif char == "\\" and text.startswith("\n", i + 1):
                i += 2  # a line continuation
            elif char == "\n":
                self.emit(Kind.NEWLINE, i, i + 1)
                i = self.read_heredoc_bodies(i + 1) if self.heredocs else i + 1
            elif line_start and re.match(r"=begin(?:\s|$)", text[i : i + 7]):
                match = re.compile(r"^=end(?:[ \t].*)?$", re.M).search(text, i)
                if match is None:
                    raise self.fail("=begin is never closed by =end", i)
                i = self.emit(Kind.COMMENT, i, match.end())
            elif line_start and re.match(r"__END__\r?(?:\n|$)", text[i : i + 9]):
                i = self.emit(Kind.COMMENT, i, n)
            elif char == "#":
                end = text.find("\n", i)
                i = self.emit(Kind.COMMENT, i, n if end == -1 else end)
            elif char == "'":
                i = self.scan_quoted(i, i + 1, "'", interpolate=False)
            elif char in '"`':
                i = self.scan_quoted(i, i + 1, char, interpolate=True)
            elif char == "}" and nested and len(self.braces) == base:
                return i + 1
            elif char == "}" and self.braces and self.braces[-1] is not None:
                close = self.braces.pop()
                assert close is not None
                i = self.scan_quoted(i, i + 1, close, interpolate=True)
            elif char == "{":
                self.braces.append(None)
                i = self.emit(Kind.PUNCT, i, i + 1)
            elif char == "}":
                if self.braces:
                    self.braces.pop()
                i = self.emit(Kind.PUNCT, i, i + 1)
            elif char == "<" and (match := _HEREDOC.match(text, i)) and self.heredoc_allowed(i, match):
                ident = match.group(3) or match.group(4)
                self.heredocs.append((ident, bool(match.group(1)), i))
                i = self.emit(Kind.STRING, i, match.end())
            elif char == "%" and (percent_end := self.scan_percent(i)) is not None:
                i = self.emit(Kind.STRING, i, percent_end)
            elif char == "/" and self.literal_allowed(i):
                end = self.skip_opaque(i, i + 1, "/", "")
                while end < n and text[end].isalpha():
                    end += 1
                i = self.emit(Kind.REGEX, i, end)
            elif char == ":" and i + 1 < n and text[i + 1] != ":" and self.symbol_at(i):
                i = self.scan_symbol(i)
            elif char == "?" and (char_end := self.char_literal_end(i)) is not None:
                i = self.emit(Kind.STRING, i, char_end)
            elif char == "$" and (match := _GLOBAL.match(text, i)):
                i = self.emit(Kind.NAME, i, match.end())
            elif char == "@" or _is_ident_start(char):
                i = self.scan_name(i)
            elif char.isdigit():
                match = _NUMBER.match(text, i)
                assert match is not None  # a digit always matches
                i = self.emit(Kind.NUMBER, i, match.end())
            elif (match := _PUNCT.match(text, i)) is not None:
                i = self.emit(Kind.PUNCT, i, match.end())
            else:
                raise self.fail(f"unexpected character {char!r}", i)
        return None

    def heredoc_allowed(self, i: int, match: re.Match[str]) -> bool:
        prev = self.previous()
        if prev is not None and prev.kind is Kind.NAME and prev.text == "class":
            return False  # `class<<obj`: a singleton class
        return self.literal_allowed(i)

    def symbol_at(self, i: int) -> bool:
        nxt = self.text[i + 1]
        if not (_is_ident_start(nxt) or nxt in "\"'@$" or _OPERATOR_SYMBOL.match(self.text, i)):
            return False
        prev = self.previous()
        # `a ? b :c` is rare; `cond ? x : y` has a space. `{a: 1}` is a label, handled by scan_name.
        return not (prev is not None and ends_value(prev) and self.text[i - 1] not in " \t(,[{|\n")

    def scan_symbol(self, i: int) -> int:
        text = self.text
        operator = _OPERATOR_SYMBOL.match(text, i)
        if operator is not None:
            return self.emit(Kind.SYMBOL, i, operator.end())
        if text[i + 1] in "\"'":
            end = self.skip_opaque(i, i + 2, text[i + 1], "", interpolate=text[i + 1] == '"')
            return self.emit(Kind.SYMBOL, i, end)
        j = i + 1
        while j < len(text) and (text[j] in "@$" or _is_ident_part(text[j])):
            j += 1
        if j < len(text) and text[j] in "?!=" and not text.startswith("==", j) and not text.startswith("=>", j):
            j += 1
        return self.emit(Kind.SYMBOL, i, j)

    def char_literal_end(self, i: int) -> int | None:
        """The end of a character literal (``?a``, ``?\\n``, ``?\\M-a``) at ``i``, or None for the operator."""
        if ends_value(self.previous()):
            return None
        match = _CHAR_LITERAL.match(self.text, i)
        if match is None:
            return None
        end = match.end()
        if end - i == 2 and end < len(self.text) and _is_ident_part(self.text[end]):
            return None  # `?ab` is not a character literal
        return end

    def scan_name(self, i: int) -> int:
        text, n = self.text, len(self.text)
        j = i
        while j < n and text[j] == "@":
            j += 1
        while j < n and _is_ident_part(text[j]):
            j += 1
        if j == i + 1 and text[i] == "@":
            return self.emit(Kind.PUNCT, i, j)  # `def +@`: part of an operator's name
        prev = self.previous()
        after_dot = prev is not None and prev.kind is Kind.PUNCT and prev.text in (".", "&.")
        if j < n and text[j] in "?!" and not text.startswith("=", j + 1) and not text.startswith("?:", j):
            j += 1
        # `key: value` is a label (a hash key or keyword argument); `a ? b : c` and `A::B` are not
        if j < n and text[j] == ":" and not text.startswith("::", j) and not after_dot and text[j - 1] not in "?!":
            prev_char_ok = prev is None or not (prev.kind is Kind.PUNCT and prev.text == "?")
            if prev_char_ok:
                return self.emit(Kind.SYMBOL, i, j + 1)
        return self.emit(Kind.NAME, i, j)


def tokenize_ruby(text: str) -> list[Token]:
    """Tokenize Ruby; raises :class:`TokenizeError` on an unterminated literal, heredoc or ``=begin``.

    Line ends are NEWLINE tokens (they end statements, which the block
    analysis needs); a label ``key:`` and a symbol ``:key`` are SYMBOL tokens.
    """
    return _Scanner(text).run()
