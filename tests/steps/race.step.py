"""Races on shared state: data = {n, kind, tag}; returns what each call got back."""


async def handler(data, ctx):
    got = []
    for i in range(data["n"]):
        if data["kind"] == "increment":
            got.append(await ctx.state.increment("race", "n"))
        elif data["kind"] == "push":
            got.append(len(await ctx.state.push("race", "list", f"{data['tag']}-{i}")))
        else:
            ops = [{"type": "increment", "key": "n"}, {"type": "push", "key": "list", "value": f"{data['tag']}-{i}"}]
            result = await ctx.state.transaction("race", ops)
            assert len(result["results"][1]) == result["results"][0], result
            got.append(result["results"][0])
    return got
