"""Python source to tokens, through the standard library's own tokenizer.

Python's ``tokenize`` knows every string form (prefixes, triple quotes,
f-strings), comments and line continuations. On Python 3.12 and later an
f-string comes as FSTRING_START/MIDDLE/END tokens with its ``{...}``
expressions tokenized as code, so a call inside them is rewritten; on 3.10
and 3.11 an f-string is one STRING token and stays as it is.
"""

from __future__ import annotations

import io
import tokenize

from ._tokens import Kind, LineIndex, Token, TokenizeError

__all__ = ["tokenize_python"]

_KINDS: dict[int, Kind] = {
    tokenize.NAME: Kind.NAME,
    tokenize.OP: Kind.PUNCT,
    tokenize.NUMBER: Kind.NUMBER,
    tokenize.STRING: Kind.STRING,
    tokenize.COMMENT: Kind.COMMENT,
    tokenize.NEWLINE: Kind.NEWLINE,
    tokenize.NL: Kind.NEWLINE,
    tokenize.INDENT: Kind.BLOCK_START,
    tokenize.DEDENT: Kind.BLOCK_END,
}
for _name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END"):
    if hasattr(tokenize, _name):
        _KINDS[getattr(tokenize, _name)] = Kind.STRING


def tokenize_python(text: str) -> list[Token]:
    """Tokenize Python source; raises :class:`TokenizeError` on what Python itself cannot tokenize.

    Offsets are character offsets into ``text``. INDENT and DEDENT become
    zero-width BLOCK_START and BLOCK_END tokens (they mark the blocks the
    read-modify-write analysis needs); their text is empty.
    """
    # a byte order mark left in the text (decoded as plain UTF-8) is not Python's to see
    skip = 1 if text.startswith("\ufeff") else 0
    index = LineIndex(text[skip:])
    readline = io.StringIO(text[skip:], newline="\n").readline
    tokens: list[Token] = []
    try:
        for tok in tokenize.generate_tokens(readline):
            kind = _KINDS.get(tok.type)
            if kind is None:
                # Only an ASCII error token (an unterminated quote) can hide code; before 3.12 the pure-Python
                # tokenizer also reports valid non-ASCII identifier characters (combining marks) this way.
                if tok.type == tokenize.ERRORTOKEN and any(c.isascii() and not c.isspace() for c in tok.string):
                    raise TokenizeError(f"cannot tokenize {tok.string!r}", *tok.start)
                continue
            start = index.offset(*tok.start) + skip
            if kind in (Kind.BLOCK_START, Kind.BLOCK_END, Kind.NEWLINE):
                tokens.append(Token(kind, "", start))
            else:
                tokens.append(Token(kind, tok.string, start))
    except tokenize.TokenError as exc:
        line, column = exc.args[1] if len(exc.args) > 1 else (1, 0)
        raise TokenizeError(str(exc.args[0]), line, column) from None
    except (SyntaxError, IndentationError) as exc:
        raise TokenizeError(exc.msg, exc.lineno or 1, (exc.offset or 1) - 1) from None
    return tokens
