# Keeps one state group per tier whose keys are its members: "tier:gold"
# holds {"userId": "ann"} under the key "ann", so getGroup("tier:gold") lists
# the gold users. A member is a key, not an element of a shared list, so
# moving a user is two single-entry writes that never touch another user's
# membership, and doing them twice (a redelivered change) changes nothing.
#
# No condition: every tier a user gets, at registration (created) or later
# (updated), is a move.
CONFIG = {
  name: "UserGroupManager",
  description: "Moves a user between the tier groups (tier:bronze, tier:silver, ...)",
  flows: ["user-lifecycle"],
  triggers: [{ type: "state", key: "user.tier" }]
}.freeze

def handler(change, ctx)
  user_id = change["group"]
  tier = change["value"]
  old = change["oldValue"]
  # Join the new group first: a user is never missing from every group.
  ctx.state.set("tier:#{tier}", user_id, { "userId" => user_id })
  ctx.state.delete("tier:#{old}", user_id) if old.is_a?(String) && old != tier
  ctx.logger.info("tier group changed",
                  { "userId" => user_id, "from" => old, "to" => tier, "members" => ctx.state.get_group("tier:#{tier}").length })
end
