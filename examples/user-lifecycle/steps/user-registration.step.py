"""POST /lifecycle/users {"userId", "name", "initialScore"?}: creates a user's entries in its own group.

One transaction, guarded by a check that the user does not exist yet, so
registering twice is refused (409) instead of resetting the user. The
writes start the chains of state triggers: user.tier (UserGroupManager),
user.score (ScoreAchievementMonitor, AutoTierPromoter). A user is "new"
until its first score change (ScoreUpdater) makes it "active".
"""

config = {
    "name": "UserRegistration",
    "description": "Registers a user: profile, status, score, tier and a welcome notification",
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
            {"type": "check", "key": "user.profile", "op": "missing"},
            {"type": "set", "key": "user.profile", "value": {"name": name}},
            {"type": "set", "key": "user.status", "value": "new"},
            {"type": "set", "key": "user.tier", "value": "bronze"},
            {"type": "set", "key": "user.notifications", "value": [{"type": "welcome", "name": name}]},
            {"type": "set", "key": "user.score", "value": score},
        ],
    )
    if not result["success"]:
        return {"status": 409, "body": {"error": f"user {user_id} is already registered", "code": result["code"]}}
    ctx.logger.info("user registered", userId=user_id, score=score)
    return {"status": 201, "body": {"userId": user_id, "status": "new", "tier": "bronze", "score": score}}
