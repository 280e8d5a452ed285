"""Finding read-modify-write: a ``get`` of (group, key), then a ``set`` of the same (group, key).

Between the two another writer can change the entry, and the set then
overwrites that change. One atomic operation does the same work without the
window. This is a heuristic over tokens (strings and comments are never
looked at): a ``.get(group, key)`` call, later in the same block or a block
inside it, a ``.set(group, key, value)`` call whose first two arguments have
the same text (whitespace aside; ``'k'`` and ``"k"`` are the same). What to
suggest is read from the set's value and from what the code did to the
variable that held the get's result:

- ``n + 1``, ``(n || 0) + d``, ``n += 1``, ``n++`` -> increment (``-``: decrement)
- ``[...list, x]``, ``[*list, x]``, ``list + [x]``, ``list.concat(x)``, ``list.push(x)``
  (``append``, ``<<``) -> push; the item first -> unshift
- ``{...obj, f: v}``, ``{**obj, "f": v}``, ``obj.merge(...)``, ``obj | {...}``,
  ``obj[f] = v``, ``obj.f = v`` -> setField
- anything else -> update
"""

from __future__ import annotations

from dataclasses import dataclass

from ._blocks import BlockPaths
from ._model import Finding
from ._tokens import Kind, LineIndex, Token
from .languages import JAVASCRIPT, PYTHON, Language

__all__ = ["find_read_modify_writes"]

_MEMBER = frozenset((".", "?.", "&."))
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = frozenset(_OPEN.values())
_INSIGNIFICANT = (Kind.COMMENT, Kind.NEWLINE, Kind.BLOCK_START, Kind.BLOCK_END)


@dataclass(frozen=True)
class _Call:
    method: str
    index: int  # of the method name in the significant tokens
    end: int  # index of the closing parenthesis
    args: list[list[Token]]
    path: tuple[int, ...]


def find_read_modify_writes(path: str, tokens: list[Token], language: Language, lines: LineIndex) -> list[Finding]:
    """The read-modify-write patterns in one file's tokens, one finding per ``set``, at the set."""
    all_paths = language.blocks(tokens)
    code: list[Token] = []
    paths: BlockPaths = []
    for token, block in zip(tokens, all_paths):
        if token.kind not in _INSIGNIFICANT:
            code.append(token)
            paths.append(block)
    calls = _state_calls(code, paths, language)
    findings: list[Finding] = []
    gets: list[_Call] = []
    for call in calls:
        if call.method == "get" and len(call.args) == 2:
            gets.append(call)
        elif call.method == "set" and len(call.args) == 3:
            target = (_normalise(call.args[0]), _normalise(call.args[1]))
            for get in reversed(gets):
                if (_normalise(get.args[0]), _normalise(get.args[1])) != target:
                    continue
                if call.path[: len(get.path)] != get.path:
                    continue
                variable = _assigned_variable(code, get.index, language)
                operation = _suggest(variable, call.args[2], code[get.end + 1 : call.index], language, lines)
                spelled = language.spell(operation)
                line, column = lines.position(code[call.index].start)
                get_line = lines.position(code[get.index].start)[0]
                findings.append(
                    Finding(
                        path,
                        line,
                        column,
                        f"read-modify-write of ({target[0]}, {target[1]}): get at line {get_line}, set here; "
                        f"another writer can change it in between: use `{spelled}` (one atomic operation)",
                        spelled,
                    )
                )
                break
    return findings


def _state_calls(code: list[Token], paths: BlockPaths, language: Language) -> list[_Call]:
    calls: list[_Call] = []
    for index, token in enumerate(code):
        if token.kind is not Kind.NAME or token.text not in ("get", "set") or index == 0:
            continue
        if code[index - 1].text not in _MEMBER:
            continue
        k = index + 1
        if language is JAVASCRIPT and k < len(code) and code[k].text == "<":
            k = _skip_angles(code, k)
        if k >= len(code) or code[k].text != "(":
            continue
        parsed = _arguments(code, k)
        if parsed is None:
            continue
        args, end = parsed
        calls.append(_Call(token.text, index, end, args, paths[index]))
    return calls


def _skip_angles(code: list[Token], k: int) -> int:
    depth = 0
    for j in range(k, min(len(code), k + 100)):
        text = code[j].text
        if code[j].kind is Kind.PUNCT and set(text) <= {"<", ">"}:
            depth += text.count("<") - text.count(">")
            if depth <= 0:
                return j + 1
    return k


def _arguments(code: list[Token], open_index: int) -> tuple[list[list[Token]], int] | None:
    """The top-level arguments of the call whose ``(`` is at ``open_index``, and the ``)``'s index."""
    args: list[list[Token]] = [[]]
    depth = 0
    for j in range(open_index, len(code)):
        token = code[j]
        if token.kind is Kind.PUNCT and token.text in _OPEN:
            depth += 1
            if depth == 1:
                continue
        elif token.kind is Kind.PUNCT and token.text in _CLOSE:
            depth -= 1
            if depth == 0:
                return ([a for a in args if a] if any(args) else []), j
        elif depth == 1 and token.kind is Kind.PUNCT and token.text == ",":
            args.append([])
            continue
        args[-1].append(token)
    return None


def _normalise(tokens: list[Token]) -> str:
    """An argument's text without whitespace; a plain quoted string by its content, so 'k' equals "k"."""
    parts = []
    for token in tokens:
        text = token.text
        if (
            token.kind is Kind.STRING
            and len(text) >= 2
            and text[0] in "'\""
            and text[-1] == text[0]
            and "\\" not in text
            and "#{" not in text
        ):
            text = '"' + text[1:-1] + '"'
        parts.append(text)
    return "".join(parts)


def _assigned_variable(code: list[Token], get_index: int, language: Language) -> str | None:
    """The variable the get's result is assigned to: ``n = await ctx.state.get(...)`` gives ``n``."""
    k = get_index - 2  # the receiver's last token
    while k >= 0 and code[k].kind is Kind.NAME:
        if k >= 1 and code[k - 1].text in _MEMBER:
            k -= 2
        else:
            k -= 1
            break
    while k >= 0 and code[k].text in ("await", "("):
        k -= 1
    if k < 1 or code[k].kind is not Kind.PUNCT or code[k].text not in ("=", ":="):
        return None
    name = code[k - 1]
    if name.kind is Kind.NAME and k >= 3 and code[k - 2].text == ":" and code[k - 3].kind is Kind.NAME:
        return code[k - 3].text  # an annotated declaration: `n: int = ...`, `const n: number = ...`
    return name.text if name.kind is Kind.NAME else None


def _suggest(
    variable: str | None, value: list[Token], between: list[Token], language: Language, lines: LineIndex
) -> str:
    """The atomic operation for a set of ``value``, given what happened to ``variable`` in ``between``."""
    if variable is not None and len(value) == 1 and value[0].kind is Kind.NAME and value[0].text == variable:
        return _mutation(variable, between, language, lines)
    return _expression(variable, value, language)


def _mutation(variable: str, between: list[Token], language: Language, lines: LineIndex) -> str:
    """What the code did to ``variable`` before setting it back unchanged in name."""
    for j, token in enumerate(between):
        if token.kind is not Kind.NAME or token.text != variable:
            continue
        if j > 0 and between[j - 1].text in _MEMBER:
            continue  # `other.n` is another thing
        rest = between[j + 1 : j + 4]
        texts = [t.text for t in rest]
        if texts[:1] in (["++"], ["+="]) or (j > 0 and between[j - 1].text == "++"):
            return "increment"
        if texts[:1] in (["--"], ["-="]) or (j > 0 and between[j - 1].text == "--"):
            return "decrement"
        if texts[:1] == ["<<"]:
            return "push"
        if len(texts) >= 2 and texts[0] == "." and texts[1] in ("push", "append", "extend", "concat"):
            return "push"
        if len(texts) >= 2 and texts[0] == "." and texts[1] in ("unshift", "prepend"):
            return "unshift"
        if len(texts) >= 2 and texts[0] == "." and texts[1] in ("update", "merge!", "store"):
            return "setField"
        if len(texts) >= 3 and texts[0] == "." and texts[2] == "=":
            return "setField"  # obj.field = v
        if texts[:1] == ["["]:
            close = _matching(between, j + 1)
            if close is not None and close + 1 < len(between) and between[close + 1].text == "=":
                index_tokens = between[j + 2 : close]
                if len(index_tokens) == 1 and index_tokens[0].kind is Kind.NUMBER:
                    return "update"  # an array element
                return "setField"
        if texts[:1] == ["="]:
            line = lines.position(between[j].start)[0]
            end = j + 2
            while end < len(between) and between[end].text != ";" and lines.position(between[end].start)[0] == line:
                end += 1
            operation = _expression(variable, between[j + 2 : end], language)
            if operation != "update":  # `n = 0` before `n = n + 1` says nothing yet
                return operation
    return "update"


def _matching(tokens: list[Token], open_index: int) -> int | None:
    depth = 0
    for j in range(open_index, len(tokens)):
        if tokens[j].text in _OPEN:
            depth += 1
        elif tokens[j].text in _CLOSE:
            depth -= 1
            if depth == 0:
                return j
    return None


def _mentions(tokens: list[Token], variable: str | None) -> bool:
    return variable is not None and any(t.kind is Kind.NAME and t.text == variable for t in tokens)


def _expression(variable: str | None, value: list[Token], language: Language) -> str:
    """The operation a new value built from ``variable`` amounts to."""
    if not value or not _mentions(value, variable):
        return "update"
    texts = [t.text for t in value]
    first = texts[0]
    spread = ("...", "*") if language is not PYTHON else ("*",)
    if first == "[" and texts[-1] == "]":
        elements = _split_top_level(value[1:-1], ",")
        for position, element in enumerate(elements):
            if len(element) == 2 and element[0].text in spread and element[1].text == variable:
                if position == 0 and len(elements) > 1:
                    return "push"
                if position == len(elements) - 1 and len(elements) > 1:
                    return "unshift"
        return "update"
    if first == "{" and texts[-1] == "}":
        for j in range(1, len(texts) - 1):
            if texts[j] in ("...", "**") and texts[j + 1] == variable:
                return "setField"
        return "update"
    if texts[:3] in ([variable, ".", "concat"],):
        return "push"
    if texts[:3] in ([variable, ".", "merge"],) or texts[:3] == ["Object", ".", "assign"]:
        return "setField"
    # a sum or difference with the variable on one side
    for operator in ("+", "-", "|"):
        parts = _split_top_level(value, operator)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            continue
        left, right = parts
        left_has, right_has = _mentions(left, variable), _mentions(right, variable)
        if left_has == right_has:
            continue
        other = right if left_has else left
        if operator == "|":
            return "setField" if other[0].text == "{" else "update"
        if other[0].text == "[":
            return "push" if left_has and operator == "+" else ("unshift" if operator == "+" else "update")
        if _has_top_level_string(other):
            return "update"  # string concatenation
        if operator == "+":
            return "increment"
        return "decrement" if left_has else "update"
    return "update"


def _has_top_level_string(tokens: list[Token]) -> bool:
    depth = 0
    for token in tokens:
        if token.kind is Kind.PUNCT and token.text in _OPEN:
            depth += 1
        elif token.kind is Kind.PUNCT and token.text in _CLOSE:
            depth -= 1
        elif depth == 0 and token.kind is Kind.STRING:
            return True
    return False


def _split_top_level(tokens: list[Token], separator: str) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for index, token in enumerate(tokens):
        if token.kind is Kind.PUNCT and token.text in _OPEN:
            depth += 1
        elif token.kind is Kind.PUNCT and token.text in _CLOSE:
            depth -= 1
        elif (
            depth == 0
            and token.kind is Kind.PUNCT
            and token.text == separator
            # a unary sign (`-1`, `a * -b`) is not a binary operator
            and index > 0
            and not (tokens[index - 1].kind is Kind.PUNCT and tokens[index - 1].text not in _CLOSE)
        ):
            parts.append([])
            continue
        parts[-1].append(token)
    return parts
