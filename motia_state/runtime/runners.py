"""Where the language runners live, and which interpreter runs a step file."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "bindings_dir",
    "command_for",
    "is_own_runner",
    "language_of",
    "module_paths",
    "runner_exists",
    "runner_path",
    "with_module_paths",
]

_LANGUAGES = {".py": "python", ".js": "node", ".cjs": "node", ".mjs": "node", ".rb": "ruby"}
_RUNNERS = {
    "python": ("python", "run_step.py"),
    "node": ("node", "run_step.js"),
    "ruby": ("ruby", "run_step.rb"),
}


def bindings_dir() -> Path:
    """The bindings: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_bindings", here.parent / "bindings"):
        if (candidate / "python" / "run_step.py").is_file():
            return candidate
    raise FileNotFoundError(
        f"motia-state bindings not found (looked in {here / '_bindings'} and {here.parent / 'bindings'})"
    )


def module_paths() -> dict[str, Path]:
    """Per language, the folder that makes the binding importable by name.

    Node: a folder holding ``motia-state`` (for ``NODE_PATH``); Ruby: the
    folder holding ``motia_state.rb`` (for ``RUBYLIB``); Python: the folder
    holding ``motia_step``.
    """
    root = bindings_dir()
    return {"node": root / "node_path", "ruby": root / "ruby" / "lib", "python": root / "python"}


def with_module_paths(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the bindings appended to ``NODE_PATH`` and ``RUBYLIB``.

    Appended, not prepended: a copy the app installed itself (in its
    node_modules, or as a gem) still wins.
    """
    try:
        paths = module_paths()
    except FileNotFoundError:
        return env
    for name, language in (("NODE_PATH", "node"), ("RUBYLIB", "ruby")):
        current = env.get(name)
        env[name] = f"{current}{os.pathsep}{paths[language]}" if current else str(paths[language])
    return env


def language_of(path: str | os.PathLike[str]) -> str | None:
    """ "python", "node" or "ruby" by the file's extension (None if unknown)."""
    return _LANGUAGES.get(Path(path).suffix.lower())


def runner_path(language: str) -> Path:
    """The runner script of a language."""
    folder, script = _RUNNERS[language]
    return bindings_dir() / folder / script


def runner_exists(language: str) -> bool:
    """Whether this installation ships a runner for ``language``."""
    try:
        return runner_path(language).is_file()
    except FileNotFoundError:
        return False


def command_for(path: str | os.PathLike[str], interpreters: Mapping[str, str] | None = None) -> list[str] | None:
    """argv that runs ``path`` (None when the extension is unknown).

    The interpreter may be overridden per language; Python defaults to the
    running interpreter so steps see the same environment as the parent.
    """
    language = language_of(path)
    if language is None:
        return None
    chosen = (interpreters or {}).get(language)
    if chosen is None:
        chosen = sys.executable if language == "python" else (shutil.which(language) or language)
    return [chosen, str(runner_path(language)), str(path)]


def is_own_runner(argv: Sequence[str]) -> bool:
    """Whether ``argv`` runs one of this installation's runners (``<interpreter> <runner> <step>``).

    Our runners take the protocol on private descriptors named in
    ``MOTIA_STEP_PROTOCOL_FDS``; any other worker (one written for Motia's
    stdio mode) speaks it on its stdin and stdout.
    """
    if len(argv) < 2:
        return False
    try:
        ours = {str(runner_path(language)) for language in _RUNNERS}
    except FileNotFoundError:
        return False
    return str(argv[1]) in ours
