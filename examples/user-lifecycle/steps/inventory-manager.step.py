"""Rewards go into each user's inventory, the group "inventory:<userId>": coins, badges and boosts.

Two state triggers, one handler (the change's key says which fired):

- user.achievements: each achievement that the change added (its new value
  against its old one) pays its coins and its badge, both in one
  transaction on the inventory, so a badge never comes without its coins.
- user.tier: a tier comes with an allowance of boosts; a change of tier,
  up or down, adds or takes the difference with increment or decrement.

Every write adds to what is stored (no get + set), so rewards that land
at the same time all count. Declarative conditions suffice here: the
achievements must be an object, and a tier change is an update (the
registration's bronze has no boosts).
"""

REWARDS = {"rookie": 10, "century": 50, "high-roller": 200, "legend": 500}  # coins per achievement
BOOSTS = {"bronze": 0, "silver": 1, "gold": 3, "platinum": 5}  # the boosts a tier comes with

config = {
    "name": "InventoryManager",
    "description": "Pays achievement rewards and tier boosts into inventory:<userId>",
    "flows": ["user-lifecycle"],
    "triggers": [
        {"type": "state", "key": "user.achievements", "condition": {"op": "type", "value": "object"}},
        {"type": "state", "key": "user.tier", "events": ["updated"]},
    ],
}


async def handler(change, ctx):
    user_id = change["group"]
    inventory = f"inventory:{user_id}"
    if change["key"] == "user.achievements":
        before = change["oldValue"] or {}
        for achievement in [a for a in REWARDS if a in change["value"] and a not in before]:
            result = await ctx.state.transaction(
                inventory,
                [
                    {"type": "increment", "key": "coins", "delta": REWARDS[achievement]},
                    {"type": "push", "key": "badges", "items": [achievement]},
                ],
            )
            if not result["success"]:
                raise RuntimeError(result["error"])
            ctx.logger.info("achievement rewarded", userId=user_id, achievement=achievement, coins=result["results"][0])
        return
    gained = BOOSTS.get(change["value"], 0) - BOOSTS.get(change["oldValue"], 0)
    if gained > 0:
        await ctx.state.increment(inventory, "boosts", gained)
    elif gained < 0:
        await ctx.state.decrement(inventory, "boosts", -gained)
