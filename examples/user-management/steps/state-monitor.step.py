"""Keeps a log of every user's status changes.

A state trigger with a declarative condition: only changes of a user
whose value has a status run it.
"""

config = {
    "name": "StateMonitor",
    "flows": ["user-management"],
    "triggers": [
        {
            "type": "state",
            "group": "users",
            "key": "*",
            "events": ["created", "updated"],
            "condition": {"op": "exists", "path": "/status"},
        }
    ],
}


async def handler(change, ctx):
    before = (change.get("oldValue") or {}).get("status")
    after = change["value"]["status"]
    if before != after:
        await ctx.state.push("status-log", change["key"], {"from": before, "to": after})
