"""One part of a run: n * 2. Its result and the run's count of finished parts change together."""

config = {
    "name": "PartDouble",
    "flows": ["parallel-merge"],
    "triggers": [{"type": "event", "topic": "pm.part"}],
    "emits": ["pm.join"],
}


async def handler(data, ctx):
    group = "merge:" + data["run"]
    result = await ctx.state.transaction(
        group,
        [
            {"type": "set", "key": "part:double", "value": {"part": "double", "value": data["n"] * 2}},
            {"type": "increment", "key": "done"},
        ],
    )
    # Exactly one part sees the count reach 3: that one starts the join.
    if result["success"] and result["results"][1] == 3:
        await ctx.emit({"topic": "pm.join", "data": {"run": data["run"]}})
