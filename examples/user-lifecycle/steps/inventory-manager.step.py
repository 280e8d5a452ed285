"""Rewards go into each user's inventory, the group "inventory:<userId>": coins, badges and boosts.

Two state triggers, one handler (the change's key says which fired):

- user.achievements: each achievement that the change added (its new value
  against its old one) pays its coins and its badge, both in one
  transaction on the inventory, so a badge never comes without its coins.
- user.tier: a tier comes with an allowance of boosts; a change of tier,
  up or down, adds or takes the difference with increment or decrement.

Every write adds to what is stored (no get + set), so rewards that land
at the same time all count. Triggers deliver a change at least once (a
runtime killed after the handler wrote but before its position was saved
delivers it again), so each transaction is guarded by a check that makes a
second delivery a no-op: an achievement pays only while its badge is not
in the list, and boosts move only while "boostTier" still names the tier
the change started from. Declarative conditions suffice here: the
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
            not_paid = {"any": [{"op": "missing"}, {"op": "notContains", "value": achievement}]}
            result = await ctx.state.transaction(
                inventory,
                [
                    {"type": "check", "key": "badges", **not_paid},
                    {"type": "increment", "key": "coins", "delta": REWARDS[achievement]},
                    {"type": "push", "key": "badges", "items": [achievement]},
                ],
            )
            if result["success"]:
                ctx.logger.info(
                    "achievement rewarded", userId=user_id, achievement=achievement, coins=result["results"][1]
                )
            elif (result["code"], result["failedIndex"]) != ("CONFLICT", 0):
                raise RuntimeError(result["error"])
        return
    old, new = change["oldValue"], change["value"]
    gained = BOOSTS.get(new, 0) - BOOSTS.get(old, 0)
    # "boostTier" is missing until the first move: the registration's bronze.
    started_here = {"op": "eq", "value": old}
    if old == "bronze":
        started_here = {"any": [{"op": "missing"}, started_here]}
    result = await ctx.state.transaction(
        inventory,
        [
            {"type": "check", "key": "boostTier", **started_here},
            {"type": "set", "key": "boostTier", "value": new},
            {"type": "increment", "key": "boosts", "delta": gained},
        ],
    )
    if not result["success"] and (result["code"], result["failedIndex"]) != ("CONFLICT", 0):
        raise RuntimeError(result["error"])
