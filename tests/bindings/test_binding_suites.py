"""Each binding's own unit suite (scripted streams, no parent), run from pytest.

So that the README's one test command runs all three languages: Node's
``node --test`` and Ruby's minitest. On CI a missing ``node`` or ``ruby`` is
a failure (tests/helpers.require_tool).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..helpers import require_tool

BINDINGS = Path(__file__).resolve().parents[2] / "bindings"


def run_suite(command: list[str], cwd: Path) -> str:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def test_node_binding_suite() -> None:
    node = require_tool("node")
    output = run_suite([node, "--test", "test/"], BINDINGS / "node")
    assert "# fail 0" in output and "# pass 0" not in output, output[-2000:]


def test_ruby_binding_suite() -> None:
    ruby = require_tool("ruby")
    output = run_suite(
        [ruby, "-Ilib", "-e", 'Dir["test/test_*.rb"].sort.each { |f| require File.expand_path(f) }'],
        BINDINGS / "ruby",
    )
    assert " 0 failures, 0 errors" in output and "\n0 runs" not in output, output[-2000:]
