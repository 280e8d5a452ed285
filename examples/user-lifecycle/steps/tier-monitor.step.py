"""Grants a tier's benefits and notifies the user when the tier changes, up or down.

A native condition, a Python function in the trigger: it compares the old
tier with the new one (a predicate sees only the new value). It runs in
this step's own worker; the registration's initial "bronze" is a created
entry, not an update, so it notifies nobody. Only this step adds
notifications after the registration, one tier change at a time, so their
order is the order of the changes (NotificationCleaner trims them).
"""

BENEFITS = {
    "bronze": {"multiplier": 1.0, "dailyBonus": 10},
    "silver": {"multiplier": 1.2, "dailyBonus": 25},
    "gold": {"multiplier": 1.5, "dailyBonus": 50},
    "platinum": {"multiplier": 2.0, "dailyBonus": 100},
}


def changed_tier(value, ctx):
    return value in BENEFITS and ctx.change["oldValue"] != value


config = {
    "name": "TierMonitor",
    "description": "Sets user.benefits and adds a notification on every tier change",
    "flows": ["user-lifecycle"],
    "triggers": [{"type": "state", "key": "user.tier", "events": ["updated"], "condition": changed_tier}],
}


async def handler(change, ctx):
    user_id, tier = change["group"], change["value"]
    await ctx.state.set(user_id, "user.benefits", {"tier": tier, **BENEFITS[tier]})
    await ctx.state.push(user_id, "user.notifications", {"type": "tier_change", "from": change["oldValue"], "to": tier})
