"""The languages the codemod knows: their file extensions, tokenizer, blocks and spellings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._blocks import BlockPaths, js_blocks, python_blocks, ruby_blocks
from ._tokens import Token
from .javascript import tokenize_js
from .python import tokenize_python
from .ruby import tokenize_ruby

__all__ = ["JAVASCRIPT", "LANGUAGES", "PYTHON", "RUBY", "Language", "language_for"]

_SNAKE = {"setField": "set_field", "compareAndSwap": "compare_and_swap"}


@dataclass(frozen=True)
class Language:
    """How the codemod reads one language.

    ``deprecated`` are the method names rewritten to ``update``;
    ``self_names`` are receivers that may mean a class of the user's own
    (``self.atomic_update(...)`` in a file that defines ``atomic_update``
    is the user's method, not ours); ``snake_case`` says how operations are
    spelled in suggestions.
    """

    name: str
    extensions: tuple[str, ...]
    tokenize: Callable[[str], list[Token]]
    blocks: Callable[[list[Token]], BlockPaths]
    deprecated: frozenset[str]
    self_names: frozenset[str]
    snake_case: bool

    def spell(self, operation: str) -> str:
        """``operation`` (camelCase, as in the protocol) spelled the way this language's binding names it."""
        return _SNAKE.get(operation, operation) if self.snake_case else operation


PYTHON = Language(
    "python",
    (".py",),
    tokenize_python,
    python_blocks,
    frozenset(("atomic_update", "atomicUpdate")),
    frozenset(("self", "cls", "super")),
    snake_case=True,
)
JAVASCRIPT = Language(
    "javascript",
    (".js", ".mjs", ".cjs", ".ts"),
    tokenize_js,
    js_blocks,
    frozenset(("atomicUpdate",)),
    frozenset(("this", "super")),
    snake_case=False,
)
RUBY = Language(
    "ruby",
    (".rb",),
    tokenize_ruby,
    ruby_blocks,
    frozenset(("atomic_update", "atomicUpdate")),
    frozenset(("self", "super")),
    snake_case=True,
)
LANGUAGES = (PYTHON, JAVASCRIPT, RUBY)


def language_for(path: str) -> Language | None:
    """The language of a file by its extension, or None when the codemod does not handle it."""
    lowered = path.lower()
    for language in LANGUAGES:
        if lowered.endswith(language.extensions):
            return language
    return None
