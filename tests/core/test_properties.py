"""Property-based: random operation sequences agree with a tiny reference model."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import motia_state as ms

KEYS = st.sampled_from(["a", "b", "c"])
GROUPS = st.sampled_from(["g", "g:1", "h"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["", "x"]))
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(["f", "g"]), SCALARS, max_size=2)
)

OPS = st.one_of(
    st.tuples(st.just("set"), GROUPS, KEYS, VALUES),
    st.tuples(st.just("get"), GROUPS, KEYS),
    st.tuples(st.just("delete"), GROUPS, KEYS),
    st.tuples(st.just("exists"), GROUPS, KEYS),
    st.tuples(st.just("increment"), GROUPS, KEYS, st.integers(-3, 3)),
    st.tuples(st.just("push"), GROUPS, KEYS, st.lists(SCALARS, max_size=2)),
    st.tuples(st.just("unshift"), GROUPS, KEYS, st.lists(SCALARS, max_size=2)),
    st.tuples(st.just("pop"), GROUPS, KEYS),
    st.tuples(st.just("shift"), GROUPS, KEYS),
    st.tuples(st.just("compare_and_swap"), GROUPS, KEYS, VALUES, VALUES),
    st.tuples(st.just("set_field"), GROUPS, KEYS, st.sampled_from(["f", "g"]), SCALARS),
    st.tuples(st.just("delete_field"), GROUPS, KEYS, st.sampled_from(["f", "g"])),
    st.tuples(st.just("clear"), GROUPS),
    st.tuples(st.just("keys"), GROUPS),
)

MISSING = object()


def model_eq(a: Any, b: Any) -> bool:
    # Booleans are not numbers; everything generated here is otherwise plain.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(model_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(model_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def model_apply(state: dict[tuple[str, str], Any], op: tuple[Any, ...]) -> Any:
    """The reference: a flat dict of (group, key) and the rules written plainly."""
    name, group = op[0], op[1]
    if name == "clear":
        for k in [k for k in state if k[0] == group]:
            del state[k]
        return None
    if name == "keys":
        return sorted(k for g, k in state if g == group)
    ident = (group, op[2])
    cur = state.get(ident, MISSING)
    base = None if cur is MISSING else cur
    if name == "set":
        state[ident] = op[3]
        return op[3]
    if name == "get":
        return base
    if name == "exists":
        return cur is not MISSING
    if name == "delete":
        state.pop(ident, None)
        return base
    if name == "increment":
        if base is None:
            base = 0
        if isinstance(base, bool) or not isinstance(base, int):
            return "TYPE_MISMATCH"
        state[ident] = base + op[3]
        return base + op[3]
    if name in ("push", "unshift", "pop", "shift"):
        if base is None:
            base = []
        if not isinstance(base, list):
            return "TYPE_MISMATCH"
        if name in ("push", "unshift"):
            if op[3]:
                state[ident] = base + op[3] if name == "push" else op[3] + base
            return list(state[ident]) if op[3] else list(base)
        if not base:
            return None
        state[ident] = base[:-1] if name == "pop" else base[1:]
        return base[-1] if name == "pop" else base[0]
    if name == "compare_and_swap":
        if model_eq(base, op[3]):
            state[ident] = op[4]
            return True
        return False
    if base is None:
        base = {}
    if not isinstance(base, dict):
        return "TYPE_MISMATCH"
    if name == "set_field":
        state[ident] = {**base, op[3]: op[4]}
        return state[ident]
    if op[3] in base:
        state[ident] = {k: v for k, v in base.items() if k != op[3]}
        return state[ident]
    return dict(base)


async def real_apply(target: Any, op: tuple[Any, ...]) -> Any:
    name = op[0]
    try:
        if name in ("push", "unshift"):
            return await getattr(target, name)(op[1], op[2], *op[3])
        return await getattr(target, name)(*op[1:])
    except ms.TypeMismatchError:
        return "TYPE_MISMATCH"


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_random_sequences_match_the_reference_model(ops: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        manager = ms.StateManager()
        model: dict[tuple[str, str], Any] = {}
        for op in ops:
            expected = model_apply(model, op)
            actual = await real_apply(manager, op)
            assert model_eq(expected, actual), (op, expected, actual)
        groups = sorted({g for g, _ in model})
        assert await manager.groups() == groups
        for (g, k), v in model.items():
            assert model_eq(await manager.get(g, k), v)

    asyncio.run(run())


@settings(max_examples=100, deadline=None)
@given(st.lists(OPS.filter(lambda op: op[0] not in ("clear", "keys")), max_size=12))
def test_a_transaction_equals_its_operations_run_one_by_one(ops: list[tuple[Any, ...]]) -> None:
    # Within one group, a successful transaction gives the same results as the
    # same operations run singly; a failing one leaves the state untouched.
    ops = [(op[0], "g", *op[2:]) for op in ops]
    camel = {"compare_and_swap": "compareAndSwap", "set_field": "setField", "delete_field": "deleteField"}

    def record(op: tuple[Any, ...]) -> dict[str, Any]:
        name = op[0]
        rec: dict[str, Any] = {"type": camel.get(name, name), "key": op[2]}
        if name == "set":
            rec["value"] = op[3]
        elif name == "increment":
            rec["delta"] = op[3]
        elif name in ("push", "unshift"):
            rec["items"] = op[3]
        elif name == "compare_and_swap":
            rec["expected"], rec["value"] = op[3], op[4]
        elif name == "set_field":
            rec["field"], rec["value"] = op[3], op[4]
        elif name == "delete_field":
            rec["field"] = op[3]
        return rec

    async def run() -> None:
        single, tx = ms.MemoryStateAdapter(), ms.MemoryStateAdapter()
        results = []
        failed = False
        for op in ops:
            r = await real_apply(single, op)
            results.append(r)
            if r == "TYPE_MISMATCH" or (op[0] == "compare_and_swap" and r is False):
                failed = True
                break
        outcome = await tx.transaction("g", [record(op) for op in ops])
        if failed:
            assert not outcome.success and outcome.failed_index == len(results) - 1
            assert await tx.groups() == []
        else:
            assert outcome.success and model_eq(outcome.results, results)
            assert model_eq(await tx.get_group("g"), await single.get_group("g"))

    asyncio.run(run())


# -- predicates -----------------------------------------------------------------------

NESTED = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-3, 3, allow_nan=False), st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "a/b", "~"]), inner, max_size=3)
    ),
    max_leaves=8,
)
TOKENS = st.lists(st.sampled_from(["a", "b", "a~1b", "~0", "0", "1", "2", "01", "-", ""]), max_size=3)


def json_eq(a: Any, b: Any) -> bool:
    """JSON equality written plainly: numbers by value, booleans apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def reference_resolve(value: Any, tokens: list[str]) -> Any:
    """JSON Pointer resolution written the plain way, with MISSING for "nothing there"."""
    for token in tokens:
        if isinstance(value, dict):
            name = token.replace("~1", "/").replace("~0", "~")
            if name not in value:
                return MISSING
            value = value[name]
        elif isinstance(value, list) and token.isdigit() and (token == "0" or not token.startswith("0")):
            if int(token) >= len(value):
                return MISSING
            value = value[int(token)]
        else:
            return MISSING
    return value


@settings(max_examples=300, deadline=None)
@example(value=[1, 2], tokens=["01"], wanted=2, present=True)
@example(value={"a/b": {"~": [0]}}, tokens=["a~1b", "~0", "0"], wanted=0, present=True)
@example(value=[[1]], tokens=["-"], wanted=None, present=True)
@given(value=NESTED, tokens=TOKENS, wanted=NESTED, present=st.booleans())
def test_predicates_agree_with_their_definitions(value: Any, tokens: list[str], wanted: Any, present: bool) -> None:
    from motia_state.predicates import parse_predicate, predicate_holds

    path = "".join("/" + t for t in tokens)
    found = reference_resolve(value, tokens) if present else MISSING

    def holds(op: str, v: Any = None) -> bool:
        raw = (
            {"op": op, "path": path}
            if op in ("exists", "missing", "isNull", "isNotNull")
            else {"op": op, "value": v, "path": path}
        )
        return predicate_holds(parse_predicate(raw), value, present)

    assert holds("exists") is (found is not MISSING)
    assert holds("missing") is (found is MISSING)
    assert holds("isNull") is (found is MISSING or found is None)
    assert holds("isNotNull") is not holds("isNull")
    assert holds("neq", wanted) is not holds("eq", wanted)
    assert holds("notContains", wanted) is not holds("contains", wanted)
    assert holds("eq", wanted) is json_eq(None if found is MISSING else found, wanted)
    if found is MISSING:
        assert not any(holds(op, wanted) for op in ("gt", "gte", "lt", "lte", "contains"))
    for combined, expected in (
        ({"all": [{"op": "exists", "path": path}, {"not": {"op": "exists", "path": path}}]}, False),
        ({"any": [{"op": "exists", "path": path}, {"op": "missing", "path": path}]}, True),
    ):
        assert predicate_holds(parse_predicate(combined), value, present) is expected
