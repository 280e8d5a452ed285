"""JavaScript and TypeScript source to tokens, by a small hand-written scanner.

It knows what can hide code-looking text: '' and "" strings, template
literals (their text is opaque, their ``${...}`` expressions are code, nested
to any depth), regex literals, line and block comments and a leading ``#!``
line. Whether ``/`` starts a regex or divides is decided by the previous
significant token, as the language's grammar does in practice: after a
value (a name, number, string, ``)`` or ``]``) it divides; after an operator
or a keyword such as ``return`` it starts a regex. After ``}`` a regex is
tried first and, when it does not close on its line, ``/`` divides.
"""

from __future__ import annotations

import re

from ._tokens import Kind, LineIndex, Token, TokenizeError

__all__ = ["tokenize_js"]

# Keywords after which an expression (so a regex literal) begins.
_REGEX_AFTER_KEYWORDS = frozenset(
    [
        "return",
        "typeof",
        "instanceof",
        "in",
        "of",
        "new",
        "delete",
        "void",
        "throw",
        "case",
        "do",
        "else",
        "yield",
        "await",
        "extends",
    ]
)
_PUNCTUATORS = sorted(
    [
        ">>>=",
        "...",
        "===",
        "!==",
        "**=",
        "<<=",
        ">>=",
        ">>>",
        "&&=",
        "||=",
        "??=",
        "=>",
        "==",
        "!=",
        "<=",
        ">=",
        "&&",
        "||",
        "??",
        "?.",
        "++",
        "--",
        "+=",
        "-=",
        "*=",
        "/=",
        "%=",
        "&=",
        "|=",
        "^=",
        "**",
        "<<",
        ">>",
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
        "@",
        "#",
    ],
    key=len,
    reverse=True,
)
_PUNCT = re.compile("|".join(re.escape(punct) for punct in _PUNCTUATORS))  # longest first
_NUMBER = re.compile(r"0[xXoObB][0-9a-fA-F_]+n?|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?n?")
_SPACE = frozenset(" \t\r\n\f\v\u00a0\u2028\u2029\ufeff")


def _is_ident_start(char: str) -> bool:
    return char.isalpha() or char in "_$\\" or (char > "\x7f" and char.isidentifier())


def _is_ident_part(char: str) -> bool:
    return char.isalnum() or char in "_$\\\u200c\u200d" or (char > "\x7f" and ("a" + char).isidentifier())


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = LineIndex(text)
        self.tokens: list[Token] = []
        # One entry per open '{': True when it is a template's '${' (its '}' resumes the template).
        self.braces: list[bool] = []

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

    def regex_allowed(self) -> bool:
        prev = self.previous()
        if prev is None:
            return True
        if prev.kind is Kind.NAME:
            return prev.text in _REGEX_AFTER_KEYWORDS
        if prev.kind is Kind.PUNCT:
            return prev.text not in (")", "]", "++", "--")
        if prev.kind is Kind.STRING:
            return prev.text.endswith("${")  # the start of a template's expression
        return False  # a number, string, template or regex: a value, so '/' divides

    def scan_string(self, start: int) -> int:
        text, quote, i = self.text, self.text[start], start + 1
        while i < len(text):
            char = text[i]
            if char == "\\":
                i += 3 if text.startswith("\r\n", i + 1) else 2
            elif char == quote:
                return i + 1
            elif char == "\n":
                break
            else:
                i += 1
        raise self.fail("unterminated string", start)

    def scan_template(self, start: int, i: int) -> int:
        """Emit template text from ``start`` (a backquote or a closing '}') to its end or its next '${'."""
        text = self.text
        while i < len(text):
            char = text[i]
            if char == "\\":
                i += 2
            elif char == "`":
                return self.emit(Kind.STRING, start, i + 1)
            elif char == "$" and text.startswith("${", i):
                self.braces.append(True)
                return self.emit(Kind.STRING, start, i + 2)
            else:
                i += 1
        raise self.fail("unterminated template literal", start)

    def scan_regex(self, start: int) -> int | None:
        """The end of a regex literal at ``start``, or None when none closes on this line."""
        text, i, in_class = self.text, start + 1, False
        while i < len(text):
            char = text[i]
            if char in "\n\r\u2028\u2029":
                return None
            if char == "\\":
                i += 2
                continue
            if char == "[":
                in_class = True
            elif char == "]":
                in_class = False
            elif char == "/" and not in_class:
                i += 1
                while i < len(text) and _is_ident_part(text[i]):
                    i += 1
                return i
            i += 1
        return None

    def run(self) -> list[Token]:
        text, n = self.text, len(self.text)
        i = 0
        if text.startswith("#!"):
            end = text.find("\n")
            i = self.emit(Kind.COMMENT, 0, n if end == -1 else end)
        while i < n:
            char = text[i]
            if char in _SPACE:
                i += 1
            elif text.startswith("//", i):
                end = text.find("\n", i)
                i = self.emit(Kind.COMMENT, i, n if end == -1 else end)
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                if end == -1:
                    raise self.fail("unterminated block comment", i)
                i = self.emit(Kind.COMMENT, i, end + 2)
            elif char in "'\"":
                i = self.emit(Kind.STRING, i, self.scan_string(i))
            elif char == "`":
                i = self.scan_template(i, i + 1)
            elif char == "/" and self.regex_allowed() and (regex_end := self.scan_regex(i)) is not None:
                i = self.emit(Kind.REGEX, i, regex_end)
            elif _is_ident_start(char):
                j = i + 1
                while j < n and _is_ident_part(text[j]):
                    j += 1
                i = self.emit(Kind.NAME, i, j)
            elif char.isdigit() or (char == "." and i + 1 < n and text[i + 1].isdigit()):
                match = _NUMBER.match(text, i)
                assert match is not None  # a digit always matches
                i = self.emit(Kind.NUMBER, i, match.end())
            elif char == "{":
                self.braces.append(False)
                i = self.emit(Kind.PUNCT, i, i + 1)
            elif char == "}":
                if self.braces and self.braces.pop():
                    i = self.scan_template(i, i + 1)
                else:
                    i = self.emit(Kind.PUNCT, i, i + 1)
            elif (match := _PUNCT.match(text, i)) is not None:
                end = match.end()
                if match.group() == "?." and end < n and text[end].isdigit():
                    end -= 1  # `a?.5:b` is a conditional, not optional chaining
                i = self.emit(Kind.PUNCT, i, end)
            else:
                raise self.fail(f"unexpected character {char!r}", i)
        return self.tokens


def tokenize_js(text: str) -> list[Token]:
    """Tokenize JavaScript or TypeScript; raises :class:`TokenizeError` on an unterminated literal or comment.

    Each template literal becomes STRING tokens for its text parts (the part
    before a ``${`` ends with ``${``, the part after it starts with ``}``)
    and ordinary tokens for the expressions between them. Line ends are not
    tokens in JavaScript's stream; blocks are its braces.
    """
    return _Scanner(text).run()
