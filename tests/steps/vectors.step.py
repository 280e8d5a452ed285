"""Runs conformance cases inside a Python worker, through ctx.state.

For each case: ask the parent for fresh state (``test.reset``, an
orchestrator method), run the steps, record each result or error code, then
read back the whole state. The parent compares everything.
"""

SNAKE = {
    "compareAndSwap": "compare_and_swap",
    "setField": "set_field",
    "deleteField": "delete_field",
    "getGroup": "get_group",
}


async def call(state, op, a):
    t, k = a.get("traceId"), a.get("key")
    fn = getattr(state, SNAKE.get(op, op))
    if op in ("get", "delete", "exists", "pop", "shift"):
        return await fn(t, k)
    if op == "set":
        return await fn(t, k, a["value"])
    if op in ("increment", "decrement"):
        return await (fn(t, k, a["delta"]) if "delta" in a else fn(t, k))
    if op == "compareAndSwap":
        return await fn(t, k, a["expected"], a["newValue"])
    if op in ("push", "unshift"):
        return await fn(t, k, *a["items"])
    if op == "setField":
        return await fn(t, k, a["field"], a["value"])
    if op == "deleteField":
        return await fn(t, k, a["field"])
    if op == "getGroup":
        return await fn(a["groupId"])
    if op in ("keys", "clear"):
        return await fn(t)
    if op == "groups":
        return await fn()
    return await fn(t, a["operations"])


async def handler(data, ctx):
    out = []
    for case in data["cases"]:
        await ctx.call("test.reset", {"limits": case.get("limits", {})})
        steps = []
        for step in case["steps"]:
            try:
                steps.append({"result": await call(ctx.state, step["op"], step["args"])})
            except Exception as e:
                steps.append({"error": getattr(e, "code", type(e).__name__), "message": str(e)})
        groups = await ctx.state.groups()
        final = {}
        for g in groups:
            keys = await ctx.state.keys(g)
            final[g] = {"keys": keys, "values": [await ctx.state.get(g, k) for k in keys]}
        out.append({"steps": steps, "groups": groups, "final": final})
    return out
