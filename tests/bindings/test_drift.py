"""Twins held together: what the core declares once, each binding declares once, the same.

Cheap text checks (no Node or Ruby needed): each binding's error-code map,
its retry count for the optimistic ``update`` loop, and its version are
read from its source or metadata and compared with the core's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import motia_state
from motia_state import errors as core_errors
from motia_state.adapters import base

ROOT = Path(__file__).resolve().parents[2]
BINDINGS = ROOT / "bindings"

sys.path.insert(0, str(BINDINGS / "python"))
from motia_step import errors as shim_errors  # noqa: E402

#: The classes INTERFACES names for the newest codes, the same in every language.
NEW_CLASSES = {
    "UPDATE_FAILED": "UpdateFailedError",
    "CURSOR_EXPIRED": "CursorExpiredError",
    "CORRUPT": "CorruptStoreError",
}


def read(relative: str) -> str:
    return (BINDINGS / relative).read_text(encoding="utf-8")


def block(text: str, start: str, end: str) -> str:
    """The text between the first ``start`` and the next ``end`` after it."""
    i = text.index(start)
    return text[i : text.index(end, i + len(start))]


def node_error_classes() -> dict[str, str]:
    body = block(read("node/lib/errors.js"), "const ERROR_CLASSES = {", "}")
    return dict(re.findall(r"^\s*([A-Z_]+): '(\w+)',?$", body, re.M))


def ruby_error_classes() -> dict[str, str]:
    body = block(read("ruby/lib/motia_state/errors.rb"), "ERROR_CLASSES = {", "}")
    return dict(re.findall(r'^\s*"([A-Z_]+)" => "(\w+)",?$', body, re.M))


def typescript_codes() -> list[str]:
    body = block(read("node/index.d.ts"), "export type ErrorCode =", "\n\n")
    return re.findall(r"\|\s*'([A-Z_]+)'", body)


def declared_once(text: str, pattern: str, where: str) -> int:
    found = re.findall(pattern, text, re.M)
    assert len(found) == 1, f"{where}: expected one declaration matching {pattern!r}, found {found}"
    return int(found[0])


# -- error codes -------------------------------------------------------------


def test_every_binding_has_exactly_the_core_error_codes() -> None:
    core = set(core_errors.CODES)
    assert set(shim_errors.CODES) == core, "bindings/python/motia_step/errors.py"
    assert set(node_error_classes()) == core, "bindings/node/lib/errors.js ERROR_CLASSES"
    assert set(typescript_codes()) == core, "bindings/node/index.d.ts ErrorCode"
    assert set(ruby_error_classes()) == core, "bindings/ruby/lib/motia_state/errors.rb ERROR_CLASSES"
    assert len(typescript_codes()) == len(core)


def test_the_newest_codes_have_the_same_class_name_everywhere() -> None:
    python = {code: cls.__name__ for code, cls in shim_errors.ERRORS.items()}
    core = {code: type(core_errors.error_for_code(code, "m")).__name__ for code in core_errors.CODES}
    for name, classes in [
        ("core", core),
        ("python", python),
        ("node", node_error_classes()),
        ("ruby", ruby_error_classes()),
    ]:
        assert {code: classes.get(code) for code in NEW_CLASSES} == NEW_CLASSES, name


def test_every_node_error_class_is_typed() -> None:
    dts = read("node/index.d.ts")
    for name in node_error_classes().values():
        assert re.search(rf"^export class {name} extends StateError\b", dts, re.M), f"index.d.ts lacks {name}"


# -- the optimistic update loop's retry count ----------------------------------


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("python/motia_step/state.py", r"^UPDATE_RETRIES = (\d+)$"),
        ("node/lib/state.js", r"^const UPDATE_RETRIES = (\d+)$"),
        ("ruby/lib/motia_state/state.rb", r"^\s+UPDATE_RETRIES = (\d+)$"),
    ],
)
def test_every_binding_retries_update_as_often_as_the_core(path: str, pattern: str) -> None:
    assert declared_once(read(path), pattern, path) == base.UPDATE_RETRIES == 64


# -- one version ---------------------------------------------------------------


def test_every_binding_carries_the_python_package_version() -> None:
    version = motia_state.__version__  # motia_state/_version.py, the source of truth
    assert json.loads(read("node/package.json"))["version"] == version, "bindings/node/package.json"
    ruby = re.findall(r'^\s*VERSION = "([^"]+)"$', read("ruby/lib/motia_state/version.rb"), re.M)
    assert ruby == [version], "bindings/ruby/lib/motia_state/version.rb"


def test_no_binding_spells_the_version_anywhere_else() -> None:
    assert "spec.version = MotiaState::VERSION" in read("ruby/motia_state.gemspec")
    quoted = re.compile("[\"']" + re.escape(motia_state.__version__) + "[\"']")
    allowed = {BINDINGS / "node" / "package.json", BINDINGS / "ruby" / "lib" / "motia_state" / "version.rb"}
    suffixes = {".py", ".js", ".rb", ".ts", ".json", ".gemspec"}
    for path in BINDINGS.rglob("*"):
        if path.is_file() and path not in allowed and path.suffix in suffixes and "node_modules" not in path.parts:
            assert not quoted.search(path.read_text(encoding="utf-8")), f"{path} spells the version itself"
