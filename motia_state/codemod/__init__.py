"""Upgrade step code to the current state API, and point at code that should use an atomic operation.

The library behind ``motia-state codemod [--check] PATHS...``. For .py,
.js, .mjs, .cjs, .ts and .rb files it renames method calls of the deprecated
``atomicUpdate`` / ``atomic_update`` to ``update`` (never a definition, a
string, a comment, a template literal's text, a regex or a heredoc: each
language is read by a real tokenizer), and reports read-modify-write
patterns (a ``get`` then a ``set`` of the same key) with the atomic
operation to use instead::

    from motia_state.codemod import run

    summary = run(["steps/"], check=True)
    for finding in summary.findings:
        print(finding)
    raise SystemExit(summary.exit_code)
"""

from ._model import FileError, FileResult, Finding, Rewrite, Summary
from ._tokens import Kind, SourceError, Token, TokenizeError
from .api import plan_file, plan_text, run
from .languages import JAVASCRIPT, LANGUAGES, PYTHON, RUBY, Language, language_for

__all__ = [
    "JAVASCRIPT",
    "LANGUAGES",
    "PYTHON",
    "RUBY",
    "FileError",
    "FileResult",
    "Finding",
    "Kind",
    "Language",
    "Rewrite",
    "SourceError",
    "Summary",
    "Token",
    "TokenizeError",
    "language_for",
    "plan_file",
    "plan_text",
    "run",
]
