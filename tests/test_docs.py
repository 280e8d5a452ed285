"""Every code block in README.md and docs/*.md runs as written, or says why it cannot.

A block is run by its language tag:

- ``python``: executed in a fresh interpreter (top-level ``await`` allowed);
- ``bash`` / ``sh``: run with bash when every command calls ``motia-state``
  or ``python`` (safe in a temporary folder);
- ``js`` / ``ruby``: run through node / ruby;
- ``json``: parsed;
- ``text``, ``console``, ``ndjson``: not code (output, formats, diagrams): never run.

Any other block, or one that cannot run as written (a fragment of a step
file, a server that runs until stopped, a command that installs
something), carries a marker on the line before its opening fence:
``<!-- not-run: the reason -->``. A block without a language tag is an
error: the reader cannot tell what it is.

Each block runs in a fresh folder holding ``steps/score.step.py``,
``.js`` and ``.rb`` (the examples the docs use).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import require_tool

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*not-run:\s*(\S.*?)\s*-->\s*$")
NOT_CODE = {"text", "console", "ndjson"}
RUNNABLE = {"python", "bash", "sh", "js", "ruby", "json"}
#: Commands a shell block may run in its temporary folder (each part of a pipeline checked).
SAFE_COMMANDS = {"motia-state", "python", "python3", "cd", "export", "echo", "cat"}
TIMEOUT = 120

# Top-level await: compile with the flag; a block that awaits becomes a coroutine, run on asyncio.
PYTHON_RUNNER = """
import ast, asyncio, sys, types
source = sys.stdin.read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
result = eval(code, namespace)
if isinstance(result, types.CoroutineType):
    asyncio.run(result)
"""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, and why it is not run (if marked)."""

    path: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(```+)(.*)$", lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{fence}\s*$", lines[i]):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        marker = MARKER.match(lines[start - 1].strip()) if start > 0 else None
        lang = info.strip().split(" ")[0] if info.strip() else ""
        found.append(Block(path, start + 1, lang, "\n".join(body) + "\n", marker.group(1) if marker else None))
    return found


ALL = [b for path in DOCS for b in blocks(path)]
#: The blocks that run: a runnable language and no not-run marker.
RUN = [b for b in ALL if b.not_run is None and b.lang in RUNNABLE]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MOTIA_STATE", "MOTIA_TOKEN")}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NODE_PATH"] = str(ROOT / "bindings" / "node_path")
    env["RUBYLIB"] = str(ROOT / "bindings" / "ruby" / "lib")
    return env


def _run(argv: list[str], block: Block, cwd: Path, stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd, env=_env(), timeout=TIMEOUT)
    assert proc.returncode == 0, (
        f"{block.id} ({block.lang}) failed with exit {proc.returncode}:\n{block.code}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )


def _commands(script: str) -> list[str]:
    """Each command of a shell block: heredoc bodies and comments left out, pipelines split."""
    commands: list[str] = []
    heredoc: str | None = None
    for raw in script.splitlines():
        line = raw.strip()
        if heredoc is not None:
            if line == heredoc:
                heredoc = None
            continue
        if not line or line.startswith("#"):
            continue
        opened = re.search(r"<<-?\s*'?\"?(\w+)", line)
        if opened:
            heredoc = opened.group(1)
        commands += [part.strip() for part in re.split(r"\|\|?|&&|;", line.split(" #")[0]) if part.strip()]
    return commands


def test_the_docs_have_blocks() -> None:
    assert len(ALL) > 20 and len(RUN) > 20


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_a_block_has_a_language_and_a_known_way_to_run(block: Block) -> None:
    assert block.lang, f"{block.id}: a block needs a language tag (text for output or formats)"
    if block.not_run is None:
        assert block.lang in RUNNABLE | NOT_CODE, (
            f"{block.id}: {block.lang} blocks are not run: mark it <!-- not-run: reason --> on the line before"
        )


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_a_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    for ext in ("py", "js", "rb"):
        shutil.copy(ROOT / "examples" / f"score.step.{ext}", tmp_path / "steps" / f"score.step.{ext}")
    if block.lang == "json":
        json.loads(block.code)
    elif block.lang == "python":
        _run([sys.executable, "-c", PYTHON_RUNNER, block.id], block, tmp_path, stdin=block.code)
    elif block.lang in ("bash", "sh"):
        unsafe = [c for c in _commands(block.code) if c.split()[0] not in SAFE_COMMANDS]
        assert not unsafe, f"{block.id}: runs {unsafe[0]!r}: mark it <!-- not-run: reason --> if it cannot run here"
        _run(["bash", "-e", "-c", block.code], block, tmp_path)
    elif block.lang == "js":
        require_tool("node")
        (tmp_path / "block.js").write_text(block.code)
        _run(["node", "block.js"], block, tmp_path)
    elif block.lang == "ruby":
        require_tool("ruby")
        (tmp_path / "block.rb").write_text(block.code)
        _run(["ruby", "block.rb"], block, tmp_path)
