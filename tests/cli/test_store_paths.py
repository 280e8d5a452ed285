"""A ``file:`` path that can never be a store is bad input (exit 2); a real store that fails stays exit 3.

Every command that opens a store runs as a user runs it (a subprocess),
given a regular file, a path inside a regular file, and a folder where no
store can be created (``/proc``). Each answers with one message that says
what the path is and what a store path must be, changes nothing, and
exits 2. A store that is there but whose files cannot be opened is the
store being unavailable (exit 3), as the contract says.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ._cli import cli

STEP = "def handler(data, ctx):\n    return 1\n"
APP_STEP = """
config = {"name": "Hello", "triggers": [{"type": "api", "method": "GET", "path": "/hello"}]}

async def handler(req, ctx):
    return {"status": 200, "body": "hello"}
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A step, an app, a store and its export: what the commands need besides the store under test."""
    root = tmp_path_factory.mktemp("shared")
    (root / "hello.step.py").write_text(STEP)
    (root / "app" / "steps").mkdir(parents=True)
    (root / "app" / "steps" / "hello.step.py").write_text(APP_STEP)
    good = root / "good"
    assert cli("state", "set", "g", "k", "1", "--state", f"file:{good}").returncode == 0
    export = root / "export.ndjson"
    assert cli("export", "--state", f"file:{good}", "-o", str(export)).returncode == 0
    return {"step": root / "hello.step.py", "app": root / "app", "good": good, "export": export}


def _files(tmp_path: Path, shared: dict[str, Path]) -> dict[str, Path]:
    return {**shared, "copy": tmp_path / "copy"}


#: Each command that opens a store, as the arguments for a store URL (``--state`` or ``--from``/``--to``).
COMMANDS: dict[str, Callable[[str, dict[str, Path]], list[str]]] = {
    "state ls": lambda url, f: ["state", "ls", "--state", url],
    "state get": lambda url, f: ["state", "get", "g", "k", "--state", url],
    "state set": lambda url, f: ["state", "set", "g", "k", "1", "--state", url],
    "state rm": lambda url, f: ["state", "rm", "g", "k", "--state", url],
    "state op": lambda url, f: ["state", "op", "g", "n", "increment", "--state", url],
    "state history": lambda url, f: ["state", "history", "g", "k", "--state", url],
    "state watch": lambda url, f: ["state", "watch", "--state", url],
    "export": lambda url, f: ["export", "--state", url],
    "import": lambda url, f: ["import", str(f["export"]), "--state", url],
    "migrate --from": lambda url, f: ["migrate", "--from", url, "--to", f"file:{f['copy']}"],
    "migrate --to": lambda url, f: ["migrate", "--from", f"file:{f['good']}", "--to", url],
    "validate": lambda url, f: ["validate", "--state", url],
    "triggers ls": lambda url, f: ["triggers", "ls", "--state", url],
    "run": lambda url, f: ["run", str(f["step"]), "--state", url],
    "dev": lambda url, f: ["dev", str(f["app"]), "--port", "0", "--state", url],
    "workbench": lambda url, f: ["workbench", "--port", "0", "--state", url],
}


def _regular_file(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "notes.txt"
    path.write_text("not a store\n")
    return str(path), "is a regular file"


def _inside_a_file(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "notes.txt"
    path.write_text("not a store\n")
    return str(path / "store"), "lies inside"


def _proc(tmp_path: Path) -> tuple[str, str]:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc (Linux): a folder where no store can be created")
    return "/proc", "/proc"


PATHS = {"a regular file": _regular_file, "a path inside a file": _inside_a_file, "/proc": _proc}


@pytest.mark.parametrize("kind", list(PATHS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_path_that_can_never_be_a_store_is_bad_input(
    tmp_path: Path, shared: dict[str, Path], command: str, kind: str
) -> None:
    files = _files(tmp_path, shared)
    path, says = PATHS[kind](tmp_path)
    proc = cli(*COMMANDS[command](f"file:{path}", files), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "UNAVAILABLE" not in proc.stderr, proc.stderr
    assert "INVALID_ARGUMENT" in proc.stderr and path in proc.stderr and says in proc.stderr, proc.stderr
    if kind != "/proc":
        assert (tmp_path / "notes.txt").read_text() == "not a store\n"
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("command", ["state get", "state set", "export"])
def test_a_device_is_not_a_store(tmp_path: Path, shared: dict[str, Path], command: str) -> None:
    proc = cli(*COMMANDS[command]("file:/dev/null", _files(tmp_path, shared)), cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "/dev/null is a character device, not a directory" in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", ["state ls", "export", "validate", "state history"])
def test_a_read_of_a_folder_that_holds_no_store_creates_none(
    tmp_path: Path, shared: dict[str, Path], command: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli(*COMMANDS[command](f"file:{empty}", _files(tmp_path, shared)), cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "no store there: the folder holds none" in proc.stderr, proc.stderr
    assert os.listdir(empty) == []


@pytest.mark.parametrize("command", ["state get", "state set", "export", "dev", "workbench"])
def test_a_store_whose_files_cannot_be_opened_is_unavailable(
    tmp_path: Path, shared: dict[str, Path], command: str
) -> None:
    store = tmp_path / "store"
    assert cli("state", "set", "g", "k", "1", "--state", f"file:{store}").returncode == 0
    (store / "lock").unlink()
    (store / "lock").mkdir()  # the store is there; opening its lock file fails
    proc = cli(*COMMANDS[command](f"file:{store}", _files(tmp_path, shared)), cwd=tmp_path, timeout=60)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "UNAVAILABLE" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
