"""The codemod: tokenizers, the atomicUpdate rename, read-modify-write findings, files and the run.

Fixtures in tests/codemod/ are step files written the way Motia steps are
(``NAME.EXT.in``; ``NAME.EXT.out`` is the expected rewrite when there is
one). A line the codemod must report carries a trailing comment
``expect: OPERATION``; every finding must be on such a line, and every such
line must have its finding.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motia_state.codemod import (
    JAVASCRIPT,
    PYTHON,
    RUBY,
    Kind,
    SourceError,
    TokenizeError,
    plan_file,
    plan_text,
    run,
)
from motia_state.codemod.javascript import tokenize_js
from motia_state.codemod.python import tokenize_python
from motia_state.codemod.ruby import tokenize_ruby
from tests.helpers import require_tool

FIXTURES = Path(__file__).parent / "codemod"
EXPECT = re.compile(r"(?:#|//) expect: (\w+)")


def kinds(tokens: list[object]) -> list[tuple[str, str]]:
    return [(t.kind.name, t.text) for t in tokens if t.kind not in (Kind.NEWLINE,)]  # type: ignore[attr-defined]


def names(tokens: list[object]) -> list[str]:
    return [t.text for t in tokens if t.kind is Kind.NAME]  # type: ignore[attr-defined]


def fixture(tmp_path: Path, name: str) -> Path:
    """A copy of fixture ``name`` (without its .in) in tmp_path, so the codemod can rewrite it."""
    target = tmp_path / name
    shutil.copyfile(FIXTURES / f"{name}.in", target)
    return target


def expected_findings(text: str) -> set[tuple[int, str]]:
    return {
        (number, match.group(1))
        for number, line in enumerate(text.splitlines(), 1)
        if (match := EXPECT.search(line)) is not None
    }


# --- the JavaScript / TypeScript tokenizer ---------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a.atomicUpdate(1)", [("NAME", "a"), ("PUNCT", "."), ("NAME", "atomicUpdate"), ("PUNCT", "("),
                               ("NUMBER", "1"), ("PUNCT", ")")]),
        ("'it\\'s .atomicUpdate('", [("STRING", "'it\\'s .atomicUpdate('")]),
        ('"a \\" b" + c', [("STRING", '"a \\" b"'), ("PUNCT", "+"), ("NAME", "c")]),
        ("// x.atomicUpdate(\ny", [("COMMENT", "// x.atomicUpdate("), ("NAME", "y")]),
        ("/* a\n b */ c", [("COMMENT", "/* a\n b */"), ("NAME", "c")]),
        ("`a ${b} c`", [("STRING", "`a ${"), ("NAME", "b"), ("STRING", "} c`")]),
        ("`${`${x}`}`", [("STRING", "`${"), ("STRING", "`${"), ("NAME", "x"), ("STRING", "}`"), ("STRING", "}`")]),
        ("`${ {a: 1}.a }`", [("STRING", "`${"), ("PUNCT", "{"), ("NAME", "a"), ("PUNCT", ":"), ("NUMBER", "1"),
                             ("PUNCT", "}"), ("PUNCT", "."), ("NAME", "a"), ("STRING", "}`")]),
        ("`\\${x.atomicUpdate(}`", [("STRING", "`\\${x.atomicUpdate(}`")]),
        ("x = /a\\/b[/]c/gi", [("NAME", "x"), ("PUNCT", "="), ("REGEX", "/a\\/b[/]c/gi")]),
        ("a / b / c", [("NAME", "a"), ("PUNCT", "/"), ("NAME", "b"), ("PUNCT", "/"), ("NAME", "c")]),
        ("(a) / 2 / (b)", [("PUNCT", "("), ("NAME", "a"), ("PUNCT", ")"), ("PUNCT", "/"), ("NUMBER", "2"),
                           ("PUNCT", "/"), ("PUNCT", "("), ("NAME", "b"), ("PUNCT", ")")]),
        ("return /'/.test(s)", [("NAME", "return"), ("REGEX", "/'/"), ("PUNCT", "."), ("NAME", "test"),
                                ("PUNCT", "("), ("NAME", "s"), ("PUNCT", ")")]),
        ("i++ / 2", [("NAME", "i"), ("PUNCT", "++"), ("PUNCT", "/"), ("NUMBER", "2")]),
        ("}\n/x/.test(a)", [("PUNCT", "}"), ("REGEX", "/x/"), ("PUNCT", "."), ("NAME", "test"), ("PUNCT", "("),
                            ("NAME", "a"), ("PUNCT", ")")]),
        ("{} / 2\n", [("PUNCT", "{"), ("PUNCT", "}"), ("PUNCT", "/"), ("NUMBER", "2")]),
        ("#!/usr/bin/env node\nx", [("COMMENT", "#!/usr/bin/env node"), ("NAME", "x")]),
        ("a?.b ?? c", [("NAME", "a"), ("PUNCT", "?."), ("NAME", "b"), ("PUNCT", "??"), ("NAME", "c")]),
        ("a?.5:b", [("NAME", "a"), ("PUNCT", "?"), ("NUMBER", ".5"), ("PUNCT", ":"), ("NAME", "b")]),
        ("0x1F + 1_000n + 1.5e-3", [("NUMBER", "0x1F"), ("PUNCT", "+"), ("NUMBER", "1_000n"), ("PUNCT", "+"),
                                    ("NUMBER", "1.5e-3")]),
        ("get<number[]>(k)", [("NAME", "get"), ("PUNCT", "<"), ("NAME", "number"), ("PUNCT", "["), ("PUNCT", "]"),
                              ("PUNCT", ">"), ("PUNCT", "("), ("NAME", "k"), ("PUNCT", ")")]),
    ],
)
def test_js_tokenizer(source: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(tokenize_js(source)) == expected


@pytest.mark.parametrize("source", ["'open", '"a\nb"', "`open ${x}", "/* open", "`${`"])
def test_js_tokenizer_refuses_unterminated_literals(source: str) -> None:
    with pytest.raises(TokenizeError) as info:
        tokenize_js(source)
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.line >= 1


def test_js_token_offsets_point_at_their_text() -> None:
    source = (FIXTURES / "steps_atomic.js.in").read_text()
    for token in tokenize_js(source):
        assert source[token.start : token.end] == token.text


# --- the Ruby tokenizer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("s.atomic_update(1)", [("NAME", "s"), ("PUNCT", "."), ("NAME", "atomic_update"), ("PUNCT", "("),
                                ("NUMBER", "1"), ("PUNCT", ")")]),
        (":atomic_update", [("SYMBOL", ":atomic_update")]),
        (':"atomic update"', [("SYMBOL", ':"atomic update"')]),
        ("{ atomic_update: 1 }", [("PUNCT", "{"), ("SYMBOL", "atomic_update:"), ("NUMBER", "1"), ("PUNCT", "}")]),
        ("A::B", [("NAME", "A"), ("PUNCT", "::"), ("NAME", "B")]),
        ("a ? b : c", [("NAME", "a"), ("PUNCT", "?"), ("NAME", "b"), ("PUNCT", ":"), ("NAME", "c")]),
        ("'a #{b}'", [("STRING", "'a #{b}'")]),
        ('"a #{b.c} d"', [("STRING", '"a #{'), ("NAME", "b"), ("PUNCT", "."), ("NAME", "c"), ("STRING", '} d"')]),
        ('"#{ {a: "}"}[:a] }"', [("STRING", '"#{'), ("PUNCT", "{"), ("SYMBOL", "a:"), ("STRING", '"}"'),
                                 ("PUNCT", "}"), ("PUNCT", "["), ("SYMBOL", ":a"), ("PUNCT", "]"), ("STRING", '}"')]),
        ("# x.atomic_update(\ny", [("COMMENT", "# x.atomic_update("), ("NAME", "y")]),
        ("=begin\nx.atomic_update(\n=end\ny", [("COMMENT", "=begin\nx.atomic_update(\n=end"), ("NAME", "y")]),
        ("x\n__END__\ny.atomic_update(", [("NAME", "x"), ("COMMENT", "__END__\ny.atomic_update(")]),
        ("f(<<~A, <<-'B')\n  a.x(\n  A\n b.y(\n B\nz",
         [("NAME", "f"), ("PUNCT", "("), ("STRING", "<<~A"), ("PUNCT", ","), ("STRING", "<<-'B'"), ("PUNCT", ")"),
          ("STRING", "  a.x(\n  A\n"), ("STRING", " b.y(\n B\n"), ("NAME", "z")]),
        ("x = <<EOS\na.b(\nEOS\n", [("NAME", "x"), ("PUNCT", "="), ("STRING", "<<EOS"), ("STRING", "a.b(\nEOS\n")]),
        ("a << b", [("NAME", "a"), ("PUNCT", "<<"), ("NAME", "b")]),
        ("class << self", [("NAME", "class"), ("PUNCT", "<<"), ("NAME", "self")]),
        ("%w[a.b( c]", [("STRING", "%w[a.b( c]")]),
        ("%q(a (b) c)", [("STRING", "%q(a (b) c)")]),
        ("%Q|a #{b} c|", [("STRING", "%Q|a #{b} c|")]),
        ("%r{a/b}i", [("STRING", "%r{a/b}i")]),
        ("x % 2", [("NAME", "x"), ("PUNCT", "%"), ("NUMBER", "2")]),
        ("puts %w[a]", [("NAME", "puts"), ("STRING", "%w[a]")]),
        ("x = /a.b(/i", [("NAME", "x"), ("PUNCT", "="), ("REGEX", "/a.b(/i")]),
        ("a / b / c", [("NAME", "a"), ("PUNCT", "/"), ("NAME", "b"), ("PUNCT", "/"), ("NAME", "c")]),
        ("s.split /,/", [("NAME", "s"), ("PUNCT", "."), ("NAME", "split"), ("REGEX", "/,/")]),
        ("c == ?'", [("NAME", "c"), ("PUNCT", "=="), ("STRING", "?'")]),
        ("$' + $\"", [("NAME", "$'"), ("PUNCT", "+"), ("NAME", '$"')]),
        ("@a.empty? && b!", [("NAME", "@a"), ("PUNCT", "."), ("NAME", "empty?"), ("PUNCT", "&&"), ("NAME", "b!")]),
        ("a != b", [("NAME", "a"), ("PUNCT", "!="), ("NAME", "b")]),
        ("s&.x", [("NAME", "s"), ("PUNCT", "&."), ("NAME", "x")]),
        ("`ls #{d}`", [("STRING", "`ls #{"), ("NAME", "d"), ("STRING", "}`")]),
    ],
)
def test_ruby_tokenizer(source: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(tokenize_ruby(source)) == expected


@pytest.mark.parametrize("source", ["'open", '"open #{x}', "x = <<~EOS\nno end\n", "=begin\nopen\n", "%w[open"])
def test_ruby_tokenizer_refuses_unterminated_literals(source: str) -> None:
    with pytest.raises(TokenizeError):
        tokenize_ruby(source)


def ripper_identifiers(ruby: str, source: str) -> set[tuple[int, int]]:
    """(line, column) of every identifier Ruby's own lexer (Ripper) sees as code, symbols excepted."""
    program = (
        "require 'ripper'; require 'json'; prev = nil; out = []\n"
        "Ripper.lex(STDIN.read).each do |(pos, type, text, _)|\n"
        "  next if type == :on_sp || type == :on_ignored_nl || type == :on_nl\n"
        "  out << pos if [:on_ident, :on_const, :on_ivar, :on_gvar].include?(type) && prev != :on_symbeg\n"
        "  prev = type\n"
        "end\n"
        "puts JSON.generate(out)\n"
    )
    done = subprocess.run([ruby, "-e", program], input=source, capture_output=True, text=True, check=True)
    return {(line, column) for line, column in json.loads(done.stdout)}


@pytest.mark.parametrize("name", ["steps_atomic.rb", "steps_rmw.rb", "runtime.rb"])
def test_ruby_tokenizer_agrees_with_ripper(name: str) -> None:
    """Every name our tokenizer sees as code is an identifier to Ruby's own lexer, and the reverse."""
    ruby = require_tool("ruby")
    source = (FIXTURES / f"{name}.in").read_text()
    from motia_state.codemod._tokens import LineIndex

    lines = LineIndex(source)
    keywords = {"def", "end", "do", "if", "else", "class", "self", "nil", "true", "false", "yield", "unless"}
    ours = {
        lines.position(t.start)
        for t in tokenize_ruby(source)
        if t.kind is Kind.NAME and t.text not in keywords and not t.text.endswith(("?", "!"))
    }
    theirs = ripper_identifiers(ruby, source)
    theirs = {position for position in theirs if source.splitlines()[position[0] - 1][position[1] :][:1] != "?"}
    assert ours - theirs == set()
    # Ripper's identifiers ending in ?/! and keywords are filtered from ours; compare the plain ones
    plain = {p for p in theirs if re.match(r"[@$]*\w+(?![?!\w])", source.splitlines()[p[0] - 1][p[1] :])}
    assert plain - ours == set()


# --- the Python tokenizer --------------------------------------------------------------------


def test_python_tokens_keep_strings_and_comments_whole() -> None:
    source = 's.atomic_update(1)  # x.atomic_update(\nt = "a.atomic_update(" + """\nb.atomic_update(\n"""\n'
    tokens = tokenize_python(source)
    assert names(tokens) == ["s", "atomic_update", "t"]
    for token in tokens:
        assert source[token.start : token.end] == token.text


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 tokenizes f-string expressions")
def test_python_fstring_is_one_string_before_312() -> None:
    result = plan_text('x = f"{s.atomic_update(1)} .atomic_update("\n', PYTHON)
    assert result.rewrites == []


@pytest.mark.skipif(sys.version_info < (3, 12), reason="before 3.12 an f-string is one STRING token")
def test_python_fstring_expression_is_code_from_312() -> None:
    result = plan_text('x = f"{{s}} {s.atomic_update(1)!r:>{w}} .atomic_update("\n', PYTHON)
    assert result.new_text == 'x = f"{{s}} {s.update(1)!r:>{w}} .atomic_update("\n'


def test_python_tokenizer_refuses_an_unterminated_string() -> None:
    with pytest.raises(TokenizeError):
        tokenize_python('x = """open\n')


# --- the rename, on step files written the way Motia steps are --------------------------------


@pytest.mark.parametrize("name", ["steps_atomic.py", "steps_atomic.js", "steps.ts", "steps_atomic.rb"])
def test_rewrites_atomic_update_calls_and_nothing_else(tmp_path: Path, name: str) -> None:
    path = fixture(tmp_path, name)
    before = path.read_text()
    result = plan_file(str(path))
    assert result.new_text == (FIXTURES / f"{name}.out").read_text()
    assert path.read_text() == before  # planning writes nothing
    for rewrite in result.rewrites:
        assert before.splitlines()[rewrite.line - 1][rewrite.column :].startswith(rewrite.old)
        assert rewrite.new == "update"
    assert {(f.line, f.suggestion) for f in result.findings} == expected_findings(before)


@pytest.mark.parametrize("name", ["steps_rmw.py", "steps_rmw.js", "steps.ts", "steps_rmw.rb"])
def test_reports_read_modify_write_with_the_operation_to_use(tmp_path: Path, name: str) -> None:
    path = fixture(tmp_path, name)
    source = path.read_text()
    result = plan_file(str(path))
    assert {(f.line, f.suggestion) for f in result.findings} == expected_findings(source)
    for finding in result.findings:
        assert finding.path == str(path)
        assert source.splitlines()[finding.line - 1][finding.column :].startswith("set")
        assert f"use `{finding.suggestion}`" in finding.message
        assert str(finding).startswith(f"{path}:{finding.line}:")


def test_finding_names_the_get_line_and_the_key() -> None:
    result = plan_text("n = s.get(g, 'k')\n\ns.set(g , \"k\", n + 1)\n", PYTHON, "step.py")
    [finding] = result.findings
    assert (finding.path, finding.line, finding.suggestion) == ("step.py", 3, "increment")
    assert 'read-modify-write of (g, "k"): get at line 1' in finding.message


@pytest.mark.parametrize(
    ("language", "source"),
    [
        (PYTHON, "def atomic_update(self): pass\nclass A:\n    def atomic_update(self, x): pass\n"),
        (PYTHON, "atomic_update = 1\nx = {'atomic_update': atomic_update}\n"),
        (JAVASCRIPT, "function atomicUpdate() {}\nconst o = { atomicUpdate: 1, atomicUpdate() {} }\n"),
        (JAVASCRIPT, "class A { async atomicUpdate(g, k, fn) { return 1 } }\nexport { atomicUpdate }\n"),
        (JAVASCRIPT, "o.atomicUpdate = function () {}\nx = o['atomicUpdate']\n"),
        (RUBY, "def atomic_update(x); end\ndef self.atomic_update; end\nsend(:atomic_update)\n"),
        (RUBY, "h = { atomic_update: 1, 'atomic_update' => 2 }\n"),
    ],
)
def test_never_renames_definitions_keys_or_names_alone(language: object, source: str) -> None:
    result = plan_text(source, language)  # type: ignore[arg-type]
    assert result.rewrites == []
    assert result.new_text == source


def test_a_call_on_self_is_renamed_when_the_file_has_no_method_of_that_name() -> None:
    source = "class Step(StateBase):\n    async def run(self):\n        await self.atomic_update(1)\n"
    result = plan_text(source, PYTHON)
    assert result.new_text == source.replace("atomic_update", "update")
    assert result.findings == []


def test_typescript_type_arguments_and_optional_calls_are_calls() -> None:
    source = "await s.atomicUpdate<Record<string, number[]>>(g, k, f)\ns.atomicUpdate?.(g)\n"
    result = plan_text(source, JAVASCRIPT)
    assert result.new_text == "await s.update<Record<string, number[]>>(g, k, f)\ns.update?.(g)\n"


def test_js_snake_case_is_not_ours() -> None:
    source = "s.atomic_update(g, k, f)\n"
    assert plan_text(source, JAVASCRIPT).new_text == source


# --- behaviour: the rewritten programs run and call update, every text unchanged --------------


@pytest.mark.parametrize(("name", "tool"), [("runtime.js", "node"), ("runtime.rb", "ruby"), ("runtime.py", None)])
def test_rewritten_programs_behave_the_same_but_call_update(tmp_path: Path, name: str, tool: str | None) -> None:
    command = require_tool(tool) if tool else sys.executable
    path = fixture(tmp_path, name)

    def execute() -> dict[str, list[object]]:
        done = subprocess.run([command, str(path)], capture_output=True, text=True, check=True)
        output: dict[str, list[object]] = json.loads(done.stdout)
        return output

    before = execute()
    summary = run([str(path)])
    assert summary.exit_code == 0 and summary.changed == [str(path)]
    after = execute()
    assert after["texts"] == before["texts"]
    assert [key for _, key in after["calls"]] == [key for _, key in before["calls"]]
    assert {method for method, _ in before["calls"]} <= {"atomic_update", "atomicUpdate"}
    assert {method for method, _ in after["calls"]} == {"update"} or name == "runtime.py"
    if name == "runtime.py":
        # `getattr(state, "atomic_update")` is a string: it stays, and still calls the old method
        assert after["calls"][-1] == ["atomic_update", "by-name"]
        assert {method for method, _ in after["calls"][:-1]} == {"update"}
