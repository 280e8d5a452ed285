"""Property-based: random operation sequences agree with a tiny reference model."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
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
