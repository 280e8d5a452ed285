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

FIXTURES = Path(__file__).resolve().parent
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
        (
            "a.atomicUpdate(1)",
            [("NAME", "a"), ("PUNCT", "."), ("NAME", "atomicUpdate"), ("PUNCT", "("), ("NUMBER", "1"), ("PUNCT", ")")],
        ),
        ("'it\\'s .atomicUpdate('", [("STRING", "'it\\'s .atomicUpdate('")]),
        ('"a \\" b" + c', [("STRING", '"a \\" b"'), ("PUNCT", "+"), ("NAME", "c")]),
        ("// x.atomicUpdate(\ny", [("COMMENT", "// x.atomicUpdate("), ("NAME", "y")]),
        ("/* a\n b */ c", [("COMMENT", "/* a\n b */"), ("NAME", "c")]),
        ("`a ${b} c`", [("STRING", "`a ${"), ("NAME", "b"), ("STRING", "} c`")]),
        ("`${`${x}`}`", [("STRING", "`${"), ("STRING", "`${"), ("NAME", "x"), ("STRING", "}`"), ("STRING", "}`")]),
        (
            "`${ {a: 1}.a }`",
            [
                ("STRING", "`${"),
                ("PUNCT", "{"),
                ("NAME", "a"),
                ("PUNCT", ":"),
                ("NUMBER", "1"),
                ("PUNCT", "}"),
                ("PUNCT", "."),
                ("NAME", "a"),
                ("STRING", "}`"),
            ],
        ),
        ("`\\${x.atomicUpdate(}`", [("STRING", "`\\${x.atomicUpdate(}`")]),
        ("x = /a\\/b[/]c/gi", [("NAME", "x"), ("PUNCT", "="), ("REGEX", "/a\\/b[/]c/gi")]),
        ("a / b / c", [("NAME", "a"), ("PUNCT", "/"), ("NAME", "b"), ("PUNCT", "/"), ("NAME", "c")]),
        (
            "(a) / 2 / (b)",
            [
                ("PUNCT", "("),
                ("NAME", "a"),
                ("PUNCT", ")"),
                ("PUNCT", "/"),
                ("NUMBER", "2"),
                ("PUNCT", "/"),
                ("PUNCT", "("),
                ("NAME", "b"),
                ("PUNCT", ")"),
            ],
        ),
        (
            "return /'/.test(s)",
            [
                ("NAME", "return"),
                ("REGEX", "/'/"),
                ("PUNCT", "."),
                ("NAME", "test"),
                ("PUNCT", "("),
                ("NAME", "s"),
                ("PUNCT", ")"),
            ],
        ),
        ("i++ / 2", [("NAME", "i"), ("PUNCT", "++"), ("PUNCT", "/"), ("NUMBER", "2")]),
        (
            "}\n/x/.test(a)",
            [
                ("PUNCT", "}"),
                ("REGEX", "/x/"),
                ("PUNCT", "."),
                ("NAME", "test"),
                ("PUNCT", "("),
                ("NAME", "a"),
                ("PUNCT", ")"),
            ],
        ),
        ("{} / 2\n", [("PUNCT", "{"), ("PUNCT", "}"), ("PUNCT", "/"), ("NUMBER", "2")]),
        ("#!/usr/bin/env node\nx", [("COMMENT", "#!/usr/bin/env node"), ("NAME", "x")]),
        ("a?.b ?? c", [("NAME", "a"), ("PUNCT", "?."), ("NAME", "b"), ("PUNCT", "??"), ("NAME", "c")]),
        ("a?.5:b", [("NAME", "a"), ("PUNCT", "?"), ("NUMBER", ".5"), ("PUNCT", ":"), ("NAME", "b")]),
        (
            "0x1F + 1_000n + 1.5e-3",
            [("NUMBER", "0x1F"), ("PUNCT", "+"), ("NUMBER", "1_000n"), ("PUNCT", "+"), ("NUMBER", "1.5e-3")],
        ),
        (
            "`${/}/.source}`",
            [("STRING", "`${"), ("REGEX", "/}/"), ("PUNCT", "."), ("NAME", "source"), ("STRING", "}`")],
        ),
        (
            "get<number[]>(k)",
            [
                ("NAME", "get"),
                ("PUNCT", "<"),
                ("NAME", "number"),
                ("PUNCT", "["),
                ("PUNCT", "]"),
                ("PUNCT", ">"),
                ("PUNCT", "("),
                ("NAME", "k"),
                ("PUNCT", ")"),
            ],
        ),
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


def blank_opaque_js(text: str) -> str:
    """``text`` with every comment, string, template text and regex body overwritten, as our tokenizer sees them."""
    out = list(text)
    for token in tokenize_js(text):
        start, end = token.start, token.end
        if token.kind is Kind.COMMENT and not token.text.startswith("#!"):
            span = range(start, end)
        elif token.kind is Kind.STRING:
            span = range(start + 1, end - (2 if token.text.endswith("${") else 1))
        elif token.kind is Kind.REGEX:
            span = range(start + 1, start + token.text.rindex("/"))
        else:
            continue
        for i in span:
            if out[i] not in "\n\r\u2028\u2029":
                out[i] = " " if token.kind is Kind.COMMENT else "#"  # "#" is a syntax error in code
    return "".join(out)


@pytest.mark.parametrize("name", ["steps_atomic.js", "steps_rmw.js", "runtime.js"])
def test_js_tokenizer_boundaries_agree_with_node(tmp_path: Path, name: str) -> None:
    """Overwriting what we call text keeps the file valid for Node: our boundaries are Node's."""
    node = require_tool("node")
    source = (FIXTURES / f"{name}.in").read_text()
    blanked = tmp_path / "blanked.js"
    blanked.write_text(blank_opaque_js(source))
    assert blanked.read_text() != source
    done = subprocess.run([node, "--check", str(blanked)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- the Ruby tokenizer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "s.atomic_update(1)",
            [("NAME", "s"), ("PUNCT", "."), ("NAME", "atomic_update"), ("PUNCT", "("), ("NUMBER", "1"), ("PUNCT", ")")],
        ),
        (":atomic_update", [("SYMBOL", ":atomic_update")]),
        (':"atomic update"', [("SYMBOL", ':"atomic update"')]),
        ("{ atomic_update: 1 }", [("PUNCT", "{"), ("SYMBOL", "atomic_update:"), ("NUMBER", "1"), ("PUNCT", "}")]),
        ("A::B", [("NAME", "A"), ("PUNCT", "::"), ("NAME", "B")]),
        ("a ? b : c", [("NAME", "a"), ("PUNCT", "?"), ("NAME", "b"), ("PUNCT", ":"), ("NAME", "c")]),
        ("'a #{b}'", [("STRING", "'a #{b}'")]),
        ('"a #{b.c} d"', [("STRING", '"a #{'), ("NAME", "b"), ("PUNCT", "."), ("NAME", "c"), ("STRING", '} d"')]),
        (
            '"#{ {a: "}"}[:a] }"',
            [
                ("STRING", '"#{'),
                ("PUNCT", "{"),
                ("SYMBOL", "a:"),
                ("STRING", '"}"'),
                ("PUNCT", "}"),
                ("PUNCT", "["),
                ("SYMBOL", ":a"),
                ("PUNCT", "]"),
                ("STRING", '}"'),
            ],
        ),
        ("# x.atomic_update(\ny", [("COMMENT", "# x.atomic_update("), ("NAME", "y")]),
        ("=begin\nx.atomic_update(\n=end\ny", [("COMMENT", "=begin\nx.atomic_update(\n=end"), ("NAME", "y")]),
        ("x\n__END__\ny.atomic_update(", [("NAME", "x"), ("COMMENT", "__END__\ny.atomic_update(")]),
        (
            "f(<<~A, <<-'B')\n  a.x(\n  A\n b.y(\n B\nz",
            [
                ("NAME", "f"),
                ("PUNCT", "("),
                ("STRING", "<<~A"),
                ("PUNCT", ","),
                ("STRING", "<<-'B'"),
                ("PUNCT", ")"),
                ("STRING", "  a.x(\n  A\n"),
                ("STRING", " b.y(\n B\n"),
                ("NAME", "z"),
            ],
        ),
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
        # cases Ruby's standard library showed, checked against Ripper
        (
            "class<<main;x;end",
            [
                ("NAME", "class"),
                ("PUNCT", "<<"),
                ("NAME", "main"),
                ("PUNCT", ";"),
                ("NAME", "x"),
                ("PUNCT", ";"),
                ("NAME", "end"),
            ],
        ),
        ("{ A: /a b/ }", [("PUNCT", "{"), ("SYMBOL", "A:"), ("REGEX", "/a b/"), ("PUNCT", "}")]),
        (
            '"#{/\\Ac/ =~ f}"',
            [("STRING", '"#{'), ("REGEX", "/\\Ac/"), ("PUNCT", "=~"), ("NAME", "f"), ("STRING", '}"')],
        ),
        ("return <<-T\nx.y(\nT\n", [("NAME", "return"), ("STRING", "<<-T"), ("STRING", "x.y(\nT\n")]),
        (
            "[:+, :/, :[]=, :$/]",
            [
                ("PUNCT", "["),
                ("SYMBOL", ":+"),
                ("PUNCT", ","),
                ("SYMBOL", ":/"),
                ("PUNCT", ","),
                ("SYMBOL", ":[]="),
                ("PUNCT", ","),
                ("SYMBOL", ":$/"),
                ("PUNCT", "]"),
            ],
        ),
        ("?\\M-A.ord", [("STRING", "?\\M-A"), ("PUNCT", "."), ("NAME", "ord")]),
        ('%Q^#@a="#{b.gsub(/"/, \'q\')}"^', [("STRING", '%Q^#@a="#{b.gsub(/"/, \'q\')}"^')]),
        ("%q(#{) + x", [("STRING", "%q(#{)"), ("PUNCT", "+"), ("NAME", "x")]),
        ("def +@; end", [("NAME", "def"), ("PUNCT", "+"), ("PUNCT", "@"), ("PUNCT", ";"), ("NAME", "end")]),
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


@pytest.mark.parametrize(
    "source", ["def f():\n    return s.atomic_update(1)", "x = s.atomic_update(1)  # end", "if x:\n    pass\r\n"]
)
def test_python_files_without_a_final_newline(source: str) -> None:
    result = plan_text(source, PYTHON)
    assert result.new_text == source.replace("atomic_update", "update")


@pytest.mark.parametrize(
    "source",
    [
        "\ufeffs.atomic_update(1)\n",  # a byte order mark left in the text
        "x\u05b4 = 1\ns.atomic_update(x\u05b4)\n",  # a combining mark inside an identifier
    ],
)
def test_python_valid_sources_that_old_tokenizers_stumble_on(source: str) -> None:
    result = plan_text(source, PYTHON)
    assert result.new_text == source.replace("atomic_update", "update")
    assert [r.line for r in result.rewrites] == [source[: source.index("atomic")].count("\n") + 1]


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


# --- run(): walking, check mode, exact bytes, atomic writes ------------------------------------

CALL_PY = "async def handler(i, ctx):\n    return await ctx.state.atomic_update(ctx.trace_id, 'n', f)\n"


def test_run_walks_folders_and_skips_dependencies_and_virtualenvs(tmp_path: Path) -> None:
    for relative in [
        "steps/a.step.py",
        "steps/deep/b.step.js",
        "steps/c.mjs",
        "steps/d.cjs",
        "steps/e.ts",
        "steps/f.rb",
        "node_modules/lib/index.js",
        ".git/hooks/x.py",
        ".venv/lib/site.py",
        "venv/lib/site.py",
        "env-any-name/lib/site.py",
        "steps/__pycache__/a.py",
        "steps/notes.txt",
    ]:
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("s.atomicUpdate(g, k, f)\n")
    (tmp_path / "env-any-name" / "pyvenv.cfg").write_text("home = /usr\n")
    summary = run([str(tmp_path)])
    changed = sorted(os.path.relpath(p, tmp_path) for p in summary.changed)
    assert changed == [
        "steps/a.step.py",
        "steps/c.mjs",
        "steps/d.cjs",
        "steps/deep/b.step.js",
        "steps/e.ts",
        "steps/f.rb",
    ]
    assert (tmp_path / "node_modules/lib/index.js").read_text() == "s.atomicUpdate(g, k, f)\n"
    assert (tmp_path / "env-any-name/lib/site.py").read_text() == "s.atomicUpdate(g, k, f)\n"
    assert (tmp_path / "steps/notes.txt").read_text() == "s.atomicUpdate(g, k, f)\n"
    assert (tmp_path / "steps/f.rb").read_text() == "s.update(g, k, f)\n"
    assert summary.exit_code == 0 and summary.rewrites == 6


def test_check_writes_nothing_and_exits_1_when_a_rewrite_would_happen(tmp_path: Path) -> None:
    path = tmp_path / "step.py"
    path.write_text(CALL_PY)
    summary = run([str(tmp_path)], check=True)
    assert summary.exit_code == 1 and summary.changed == [str(path)]
    assert path.read_text() == CALL_PY
    assert run([str(tmp_path)]).exit_code == 0  # the rewrite itself succeeds
    again = run([str(tmp_path)], check=True)
    assert again.exit_code == 0 and again.changed == []  # and leaves nothing to do


def test_findings_alone_never_fail(tmp_path: Path) -> None:
    path = tmp_path / "step.js"
    path.write_text("const n = await state.get(t, 'n')\nawait state.set(t, 'n', n + 1)\n")
    for check in (False, True):
        summary = run([str(path)], check=check)
        assert summary.exit_code == 0 and len(summary.findings) == 1 and summary.changed == []


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("crlf.py", CALL_PY.replace("\n", "\r\n").encode()),
        ("bom.py", b"\xef\xbb\xbf" + CALL_PY.encode()),
        ("latin1.py", b"# -*- coding: latin-1 -*-\nx = '\xe9'\ns.atomic_update(g, k, f)\n"),
        ("bom.js", b"\xef\xbb\xbfconst x = '\xc3\xa9'\r\ns.atomicUpdate(g, k, f)\r\n"),
        ("mixed.rb", b"x = '\xe2\x82\xac'\r\ns.atomic_update(g, k) { |v| v }\ny = 1\r\n"),
        ("no-final-newline.ts", b"s.atomicUpdate(g, k, f)"),
    ],
)
def test_rewrites_keep_every_other_byte(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert run([str(path)]).exit_code == 0
    old = b"atomicUpdate" if b"atomicUpdate" in data else b"atomic_update"
    assert path.read_bytes() == data.replace(old, b"update")


def test_writes_keep_the_mode_go_through_links_and_leave_no_temporary_file(tmp_path: Path) -> None:
    real = tmp_path / "real.py"
    real.write_text(CALL_PY)
    real.chmod(0o751)
    link = tmp_path / "link.py"
    link.symlink_to(real)
    summary = run([str(link), str(real)])
    assert summary.changed == [str(link)]  # one file, reached twice, processed once
    assert link.is_symlink()
    assert real.read_text() == CALL_PY.replace("atomic_update", "update")
    assert stat.S_IMODE(real.stat().st_mode) == 0o751
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.py", "real.py"]


def test_bad_input_is_reported_left_alone_and_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.js"
    broken.write_text("s.atomicUpdate(g, k, f)\nconst s = 'unterminated\n")
    undecodable = tmp_path / "bytes.rb"
    undecodable.write_bytes(b"s.atomic_update(g) \xff\n")
    good = tmp_path / "good.py"
    good.write_text(CALL_PY)
    missing = tmp_path / "missing"
    summary = run([str(tmp_path), str(missing)])
    assert summary.exit_code == 2
    errors = {e.path: e.message for e in summary.errors}
    assert set(errors) == {str(broken), str(undecodable), str(missing)}
    assert "unterminated string at line 2" in errors[str(broken)]
    assert "utf-8" in errors[str(undecodable)]
    assert broken.read_text().startswith("s.atomicUpdate(")
    assert good.read_text() == CALL_PY.replace("atomic_update", "update")  # the rest is still done


@pytest.mark.parametrize(
    ("name", "data", "offset", "line"),
    [
        # the first two lines of a Python file without a coding cookie must be UTF-8 to tell its encoding
        ("head.py", b"x = 1  # \xff\ns.atomic_update(g, k, f)\n", 9, 1),
        ("second-line.py", b"x = 1\ny = '\xc3('\ns.atomic_update(g, k, f)\n", 11, 2),
        ("later.py", b"x = 1\ny = 2\nz = '\xe9'\ns.atomic_update(g, k, f)\n", 17, 3),
        ("ascii-cookie.py", b"# coding: ascii\nx = '\xe9'\ns.atomic_update(g, k, f)\n", 21, 2),
        ("bom.js", b"\xef\xbb\xbfs.atomicUpdate(g, k, f) // \xe9\n", 30, 1),
        ("cut.rb", b"s.atomic_update(g, k) { 1 }\n# \xe2\x82", 30, 2),
    ],
)
def test_undecodable_bytes_are_bad_input_naming_the_byte_offset(
    tmp_path: Path, name: str, data: bytes, offset: int, line: int
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    good = tmp_path / "good.js"
    good.write_text("s.atomicUpdate(g, k, f)\n")
    summary = run([str(tmp_path)])
    assert [(e.path, e.code) for e in summary.errors] == [(str(path), "INVALID_ARGUMENT")]
    assert f"at byte offset {offset} (line {line})" in summary.errors[0].message
    assert summary.exit_code == 2
    assert path.read_bytes() == data  # left as it was
    assert good.read_text() == "s.update(g, k, f)\n"  # the other files are still done


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"# coding: no-such-codec\ns.atomic_update(g, k, f)\n", "unknown encoding"),
        (b"\xef\xbb\xbf# coding: latin-1\ns.atomic_update(g, k, f)\n", "byte order mark"),
    ],
)
def test_an_unusable_python_encoding_declaration_is_bad_input(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "step.py"
    path.write_bytes(data)
    summary = run([str(path)])
    assert [(e.code, problem in e.message) for e in summary.errors] == [("INVALID_ARGUMENT", True)]
    assert summary.exit_code == 2 and path.read_bytes() == data


def test_plan_file_refuses_other_file_types(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("s.atomicUpdate(g)\n")
    with pytest.raises(SourceError) as info:
        plan_file(str(path))
    assert info.value.code == "INVALID_ARGUMENT"


def test_a_file_changed_while_planning_is_not_overwritten(tmp_path: Path) -> None:
    from motia_state.codemod.files import write_atomically

    path = tmp_path / "step.py"
    path.write_text("edited meanwhile\n")
    with pytest.raises(SourceError):
        write_atomically(str(path), b"new", b"what was planned\n")
    assert path.read_text() == "edited meanwhile\n"
    assert [p.name for p in tmp_path.iterdir()] == ["step.py"]


# --- property: the Python rewrite changes only the renamed NAME tokens -------------------------

_FRAGMENTS = [
    "s.atomic_update(g, k, f)",
    "ctx.state.atomicUpdate(t, 'k', lambda v: v)",
    "await x.atomic_update (a)",
    "x.atomic_update",
    "atomic_update(1)",
    "def atomic_update(self): pass",
    "y = {'atomic_update': 1}",
    "s.update(a)",
    "n = s.get(g, k)",
    "s.set(g, k, n + 1)",
]


def _python_statement() -> st.SearchStrategy[str]:
    pieces = st.sampled_from([*"ab .()_'\"\\{}#\n\t", ".atomic_update(", "atomicUpdate", "s.atomic_update("])
    text = st.lists(pieces, max_size=12).map("".join)
    literal = text.map(repr)
    comment = text.map(lambda t: "# " + t.replace("\n", " ").replace("\r", " "))
    fstring = text.filter(lambda t: "\n" not in t and "\\" not in t).map(
        lambda t: 'f"' + t.replace('"', "").replace("{", "{{").replace("}", "}}") + ' {s.atomic_update(1)}"'
    )
    return st.one_of(st.sampled_from(_FRAGMENTS), literal, comment, fstring)


def _stream(source: str) -> list[tuple[int, str]]:
    return [
        (t.type, t.string)
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER)
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_python_statement(), min_size=1, max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_python_rewrite_changes_only_renamed_name_tokens(statements: list[str], newline: str) -> None:
    source = newline.join(statements) + newline
    before = _stream(source)
    result = plan_text(source, PYTHON)
    after = _stream(result.new_text)
    assert len(after) == len(before)
    renamed = 0
    for index, (old, new) in enumerate(zip(before, after)):
        if old == new:
            continue
        assert old[0] == tokenize.NAME and old[1] in ("atomic_update", "atomicUpdate")
        assert new == (tokenize.NAME, "update")
        assert before[index - 1][1] == "." and before[index + 1][1] == "("
        renamed += 1
    assert renamed == len(result.rewrites)


def test_the_migration_guide_codemod_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "migration.md").read_text()
    section = guide.split("## Upgrading step code with the codemod", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/migration.md", "exec"), {})
    assert "use `push`" in capsys.readouterr().out


# --- property: the hand-written tokenizers lose nothing and the rewrite stays in NAME tokens --

_JS_PIECES = [*"ab1 .()[]{}'\"`/\\*+-=<>!?:;,$#\n", "${", "//", "/*", "*/", ".atomicUpdate(", "return ", "=> "]
_RUBY_PIECES = [
    *"ab1 .()[]{}'\"`/\\*+-=<>!?:;,%@$#\n",
    "#{",
    "<<~E\n",
    "\nE\n",
    "=begin\n",
    "\n=end\n",
    ".atomic_update(",
]


def _tokens_cover_text(text: str, tokens: list[object]) -> None:
    cursor = 0
    for token in tokens:
        start, end = token.start, token.end  # type: ignore[attr-defined]
        assert start >= cursor, "tokens overlap or go backwards"
        assert text[cursor:start].strip(" \t\r\n\f\v\ufeff\\") == "", "text between tokens was skipped"
        assert text[start:end] == token.text  # type: ignore[attr-defined]
        cursor = max(cursor, end)
    assert text[cursor:].strip(" \t\r\n\f\v\ufeff\\") == ""


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_js_and_ruby_tokenizers_lose_nothing_and_rewrites_stay_in_names(data: st.DataObject) -> None:
    language = data.draw(st.sampled_from([JAVASCRIPT, RUBY]))
    pieces = _JS_PIECES if language is JAVASCRIPT else _RUBY_PIECES
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=40)))
    try:
        tokens = language.tokenize(text)
    except TokenizeError:
        return
    _tokens_cover_text(text, [t for t in tokens if t.text])
    result = plan_text(text, language)
    after = language.tokenize(result.new_text)
    renamed = {rewrite.offset for rewrite in result.rewrites}
    shift = 0
    assert len(after) == len(tokens)
    for old, new in zip(tokens, after):
        if old.start in renamed:
            assert (old.kind, new.kind, new.text) == (Kind.NAME, Kind.NAME, "update")
            shift += len("update") - len(old.text)
        else:
            assert (new.kind, new.text, new.start) == (old.kind, old.text, old.start + shift)


def test_a_bug_on_one_file_is_reported_as_internal_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from motia_state.codemod import api

    (tmp_path / "a.py").write_text(CALL_PY)
    (tmp_path / "b.js").write_text("s.atomicUpdate(g, k, f)\n")
    original = api.plan_text

    def failing(text: str, language: object, path: str = "<text>", encoding: str = "utf-8") -> object:
        if path.endswith(".py"):
            raise IndexError("a bug")
        return original(text, language, path, encoding)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "plan_text", failing)
    summary = run([str(tmp_path)])
    assert [(e.path, e.code) for e in summary.errors] == [(str(tmp_path / "a.py"), "INTERNAL")]
    assert summary.exit_code == 1
    assert (tmp_path / "a.py").read_text() == CALL_PY
    assert (tmp_path / "b.js").read_text() == "s.update(g, k, f)\n"


def test_the_package_exports_exactly_its_all() -> None:
    import types

    import motia_state.codemod as codemod

    public = {
        name
        for name, value in vars(codemod).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(codemod.__all__) == public
