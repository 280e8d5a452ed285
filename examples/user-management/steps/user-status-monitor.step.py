"""Sends the welcome email when a user becomes active (records that it was sent).

A state trigger with a declarative condition: it runs only for changes of
the key "user.status" (in any user's group) whose new value is "active".
The email goes out once per user: the record is claimed with a
compare-and-swap from null.
"""

config = {
    "name": "UserStatusMonitor",
    "flows": ["user-management"],
    "triggers": [{"type": "state", "key": "user.status", "condition": {"op": "eq", "value": "active"}}],
}


async def handler(change, ctx):
    user_id = change["group"]  # each user is a group
    sent = await ctx.state.compare_and_swap(user_id, "user.welcome.email.sent", None, {"status": change["value"]})
    if sent:
        ctx.logger.info("welcome email sent", userId=user_id)
