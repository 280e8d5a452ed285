"""The rewrite: method calls of the deprecated ``atomicUpdate`` / ``atomic_update`` become ``update``.

Only a NAME token right after a member access (``.``, ``?.``, ``&.``) and
in call position is renamed, so a user's own definitions stay (``def
atomic_update``, ``function atomicUpdate``, a class method
``atomicUpdate(...) {``, ``atomicUpdate: ...``, ``def self.atomic_update``)
and strings, comments and symbols are never looked at (they are not NAME
tokens). A call on ``self``/``this`` in a file that defines its own method
of that name is the user's method: it is reported, not renamed. A
reference that is not a call (``fn = s.atomic_update``) is reported too, as
is the method named by a string or symbol (``s[:atomic_update]``,
``state['atomicUpdate'](...)``, ``send(:atomic_update)``,
``getattr(s, "atomic_update")``): text is never rewritten.
"""

from __future__ import annotations

from ._model import Finding, Rewrite
from ._tokens import Kind, LineIndex, Token, significant
from .languages import JAVASCRIPT, PYTHON, RUBY, Language

__all__ = ["NEW_NAME", "plan_renames"]

NEW_NAME = "update"
_MEMBER = frozenset((".", "?.", "&."))


def plan_renames(
    path: str, tokens: list[Token], language: Language, lines: LineIndex
) -> tuple[list[Rewrite], list[Finding]]:
    """The renames to make in one file's tokens, and what was deliberately left (as findings)."""
    code = significant(tokens)
    defines_own = _defines_own(code, language)
    rewrites: list[Rewrite] = []
    findings: list[Finding] = []
    for index, token in enumerate(code):
        if token.kind in (Kind.STRING, Kind.SYMBOL) and _names_method_by_text(code, index, language):
            line, column = lines.position(token.start)
            findings.append(
                Finding(
                    path,
                    line,
                    column,
                    f"{token.text} names the deprecated method by text, which is never rewritten: "
                    f"name `{NEW_NAME}` instead",
                    NEW_NAME,
                )
            )
            continue
        if token.kind is not Kind.NAME or token.text not in language.deprecated:
            continue
        prev = code[index - 1] if index > 0 else None
        if prev is None or prev.kind is not Kind.PUNCT or prev.text not in _MEMBER:
            continue  # a definition or a bare name: the user's own
        if language is RUBY and _is_ruby_singleton_def(code, index):
            continue
        line, column = lines.position(token.start)
        nxt = code[index + 1] if index + 1 < len(code) else None
        if nxt is not None and nxt.kind is Kind.PUNCT and nxt.text == "=":
            continue  # `obj.atomicUpdate = ...` assigns (defines) a method
        if not _in_call_position(code, index, language):
            findings.append(
                Finding(
                    path,
                    line,
                    column,
                    f"`{token.text}` is deprecated; this reference is not a call, so it was left: use `{NEW_NAME}`",
                    NEW_NAME,
                )
            )
            continue
        if defines_own and _on_self(code, index - 1, language):
            findings.append(
                Finding(
                    path,
                    line,
                    column,
                    f"`{token.text}` called on `{code[index - 2].text}` in a file that defines its own "
                    f"`{token.text}`: left as it is (it may be your method); if it is the state's, use `{NEW_NAME}`",
                    NEW_NAME,
                )
            )
            continue
        rewrites.append(Rewrite(line, column, token.text, NEW_NAME, token.start))
    return rewrites, findings


_BY_NAME_CALLS = frozenset(("send", "public_send", "__send__", "method", "getattr", "respond_to?", "hasattr"))


def _names_method_by_text(code: list[Token], index: int, language: Language) -> bool:
    """Whether a string or symbol at ``index`` names a deprecated method where code looks it up by name."""
    token = code[index]
    text = token.text
    if token.kind is Kind.SYMBOL:
        name = text[1:].strip("\"'") if text.startswith(":") else ""
    elif len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        name = text[1:-1]
    else:
        return False
    if name not in language.deprecated:
        return False
    prev = code[index - 1].text if index > 0 else ""
    nxt = code[index + 1].text if index + 1 < len(code) else ""
    subscript = prev == "[" and nxt == "]" and index >= 2 and code[index - 2].text not in ("(", ",", "=", "[", "{")
    if subscript and language is not PYTHON:
        return True  # a subscript of a value (`s[:atomic_update]`), not a list literal
    if prev == "(" and index >= 2 and code[index - 2].text in _BY_NAME_CALLS:
        return True
    if prev != ",":
        return False
    # getattr(obj.attr, "atomic_update"): the second argument of a by-name lookup
    depth, k = 0, index - 2
    while k >= 0:
        text = code[k].text
        if text in (")", "]", "}"):
            depth += 1
        elif text in ("(", "[", "{"):
            if depth == 0:
                return text == "(" and k >= 1 and code[k - 1].text in _BY_NAME_CALLS
            depth -= 1
        elif text == "," and depth == 0:
            return False
        k -= 1
    return False


def _defines_own(code: list[Token], language: Language) -> bool:
    """Whether the file has a deprecated name that is not a member access (a definition of its own)."""
    for index, token in enumerate(code):
        if token.kind is Kind.NAME and token.text in language.deprecated:
            prev = code[index - 1] if index > 0 else None
            if prev is None or prev.text not in _MEMBER:
                return True
            if language is RUBY and _is_ruby_singleton_def(code, index):
                return True
    return False


def _is_ruby_singleton_def(code: list[Token], index: int) -> bool:
    """``def self.atomic_update`` / ``def obj.atomic_update``: a definition, though after a dot."""
    return index >= 3 and code[index - 3].kind is Kind.NAME and code[index - 3].text == "def"


def _on_self(code: list[Token], dot: int, language: Language) -> bool:
    """Whether the member access at ``dot`` is on ``self``/``this``/``super`` (or ``super()``)."""
    receiver = code[dot - 1] if dot > 0 else None
    if receiver is None:
        return False
    if receiver.kind is Kind.NAME and receiver.text in language.self_names:
        return dot < 2 or code[dot - 2].text not in _MEMBER
    return (
        receiver.text == ")"
        and dot >= 3
        and code[dot - 2].text == "("
        and code[dot - 3].kind is Kind.NAME
        and code[dot - 3].text in language.self_names
    )


def _in_call_position(code: list[Token], index: int, language: Language) -> bool:
    """Whether the name at ``index`` is called: followed by ``(`` (JS/TS: after ``?.`` or ``<T>`` too).

    In Ruby a method name after a dot is always a call (arguments need no
    parentheses), except when a ``.method(...)`` object is being taken.
    """
    if language is RUBY:
        return True
    k = index + 1
    if k < len(code) and language is JAVASCRIPT:
        if code[k].text == "?.":
            k += 1
        elif code[k].text == "<":
            k = _skip_type_arguments(code, k)
    return k < len(code) and code[k].kind is Kind.PUNCT and code[k].text == "("


def _skip_type_arguments(code: list[Token], k: int) -> int:
    """The index just past ``<...>`` at ``k`` (TypeScript type arguments), or ``k`` when it is not one."""
    depth = 0
    for j in range(k, min(len(code), k + 200)):
        token = code[j]
        if token.kind is Kind.PUNCT and set(token.text) <= {"<", ">"}:
            depth += token.text.count("<") - token.text.count(">")
            if depth <= 0:
                return j + 1 if depth == 0 else k
        elif token.kind is Kind.PUNCT and token.text in (";", "=", "=>", "&&", "||", "("):
            return k
    return k
