"""POST /lifecycle/users {"userId", "name", "initialScore"?}: creates a user's entries in its own group.

One transaction, guarded by a check that the user does not exist yet, so
registering twice is refused (409) instead of resetting the user. The
writes start the chain of state triggers: user.score (AutoTierPromoter),
user.tier (TierMonitor), user.notifications (NotificationTrimmer).
"""

config = {
    "name": "RegisterUser",
    "description": "Registers a user: profile, score, tier and a welcome notification",
    "flows": ["user-lifecycle"],
    "triggers": [{"type": "api", "method": "POST", "path": "/lifecycle/users"}],
}


async def handler(req, ctx):
    body = req.get("body") or {}
    user_id, name, score = body.get("userId"), body.get("name"), body.get("initialScore", 0)
    if not (isinstance(user_id, str) and user_id and isinstance(name, str) and name):
        return {"status": 400, "body": {"error": "give a userId and a name"}}
    if isinstance(score, bool) or not isinstance(score, int) or score < 0:
        return {"status": 400, "body": {"error": "initialScore: expected a non-negative integer"}}
    result = await ctx.state.transaction(
        user_id,
        [
            {"type": "check", "key": "user.profile", "not": {"op": "exists"}},
            {"type": "set", "key": "user.profile", "value": {"name": name}},
            {"type": "set", "key": "user.tier", "value": "bronze"},
            {"type": "set", "key": "user.notifications", "value": [{"type": "welcome", "name": name}]},
            {"type": "set", "key": "user.score", "value": score},
        ],
    )
    if not result["success"]:
        return {"status": 409, "body": {"error": f"user {user_id} is already registered"}}
    ctx.logger.info("user registered", userId=user_id, score=score)
    return {"status": 201, "body": {"userId": user_id, "tier": "bronze", "score": score}}
