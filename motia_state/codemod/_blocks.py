"""Which block each token sits in: the scopes the read-modify-write analysis compares.

A block path is the tuple of the ids of the blocks open at a token,
outermost first. A ``set`` pairs with an earlier ``get`` only when the get's
path is a prefix of the set's (the set runs inside the block that did the
get), so a get in one branch of an ``if`` never pairs with a set in another.
This is a heuristic over tokens, not a parser: an unbalanced block ends the
analysis of that nesting level quietly, and never fails a file.
"""

from __future__ import annotations

from collections.abc import Callable

from ._tokens import Kind, Token
from .ruby import ends_value

__all__ = ["BlockPaths", "python_blocks", "js_blocks", "ruby_blocks"]

BlockPaths = list[tuple[int, ...]]


class _Stack:
    def __init__(self) -> None:
        self.open: list[int] = []
        self.next_id = 1

    def push(self) -> None:
        self.open.append(self.next_id)
        self.next_id += 1

    def pop(self) -> None:
        if self.open:
            self.open.pop()

    def path(self) -> tuple[int, ...]:
        return tuple(self.open)


def python_blocks(tokens: list[Token]) -> BlockPaths:
    """Python: an indented suite (INDENT to DEDENT) is a block."""
    stack, paths = _Stack(), []
    for token in tokens:
        if token.kind is Kind.BLOCK_START:
            stack.push()
        elif token.kind is Kind.BLOCK_END:
            stack.pop()
        paths.append(stack.path())
    return paths


def js_blocks(tokens: list[Token]) -> BlockPaths:
    """JavaScript and TypeScript: every ``{...}`` is a block (object literals too: harmless)."""
    return _brace_blocks(tokens, lambda _index: False, lambda _index: False)


_RUBY_ALWAYS_OPENS = frozenset(("class", "module", "begin", "case", "def", "do"))
_RUBY_STATEMENT_OPENS = frozenset(("if", "unless", "while", "until", "for"))
_RUBY_LOOPS = frozenset(("while", "until", "for"))
_RUBY_BRANCHES = frozenset(("else", "elsif", "when", "in", "rescue", "ensure"))


def ruby_blocks(tokens: list[Token]) -> BlockPaths:
    """Ruby: ``{...}`` and every construct closed by ``end``.

    A branch (``else``, ``elsif``, ``when``, ``rescue``, ...) closes the block
    before it and opens its own. ``if``/``unless``/``while``/``until`` open a block only at the start of
    an expression (``x = 1 if y`` is a modifier); the ``do`` of ``while x
    do`` belongs to its loop; an endless ``def name(args) = expr`` opens none.
    """
    opens: set[int] = set()
    closes: set[int] = set()
    loop_awaits_do = False
    previous: Token | None = None
    for index, token in enumerate(tokens):
        if token.kind is Kind.NEWLINE or (token.kind is Kind.PUNCT and token.text == ";"):
            loop_awaits_do = False
        if token.kind is Kind.NAME and not _after_dot(previous):
            word = token.text
            if word == "end":
                closes.add(index)
            elif word in _RUBY_BRANCHES and not _ends_statement_part(previous):  # `x rescue nil` is a modifier
                closes.add(index)  # a branch ends the one before it and begins its own
                opens.add(index)
            elif word == "do" and loop_awaits_do:
                loop_awaits_do = False
            elif word == "def" and _endless_def(tokens, index):
                pass
            elif word in _RUBY_ALWAYS_OPENS or (word in _RUBY_STATEMENT_OPENS and not _ends_statement_part(previous)):
                opens.add(index)
                loop_awaits_do = word in _RUBY_LOOPS
        if token.kind not in (Kind.COMMENT,):
            previous = token
    return _brace_blocks(tokens, opens.__contains__, closes.__contains__)


def _ends_statement_part(token: Token | None) -> bool:
    """Whether a following ``if``/``rescue``/... is a modifier: after a value, or ``return`` (``return if x``)."""
    return ends_value(token) or (token is not None and token.text in ("return", "break", "next", "redo", "retry"))


def _after_dot(token: Token | None) -> bool:
    return token is not None and token.kind is Kind.PUNCT and token.text in (".", "&.", "::")


def _endless_def(tokens: list[Token], index: int) -> bool:
    """``def name(args) = expr`` (Ruby 3): a method with no ``end``."""
    k = index + 1
    while k < len(tokens) and (tokens[k].kind is Kind.NAME or tokens[k].text in (".", "::")):
        k += 1
        if k < len(tokens) and tokens[k - 1].kind is Kind.NAME and tokens[k].text not in (".", "::"):
            break
    if k < len(tokens) and tokens[k].text == "(":
        depth = 0
        while k < len(tokens):
            if tokens[k].text == "(":
                depth += 1
            elif tokens[k].text == ")":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            k += 1
    return k < len(tokens) and tokens[k].kind is Kind.PUNCT and tokens[k].text == "="


def _brace_blocks(tokens: list[Token], opens: Callable[[int], bool], closes: Callable[[int], bool]) -> BlockPaths:
    stack, paths = _Stack(), []
    for index, token in enumerate(tokens):
        if (token.kind is Kind.PUNCT and token.text == "}") or closes(index):
            stack.pop()
        paths.append(stack.path())
        if (token.kind is Kind.PUNCT and token.text == "{") or opens(index):
            stack.push()
    return paths
