# The score API of a registered user, every write an atomic operation:
#
#   POST   /lifecycle/users/:id/score {"delta": 120, "reason": "quiz"}
#     user.score          increment (points) or decrement (a penalty)
#     user.recentScores   push the change, shift the oldest past RECENT
#     user.stats          setField "lastChange"
#     user.status         compareAndSwap "new" -> "active": only a new user
#                         is activated, exactly once however many updates race
#   DELETE /lifecycle/users/:id/score/last   undoes the newest change
#     user.recentScores   pop it (two undos never take the same change)
#     user.score          decrement or increment it back
#     user.corrections    unshift it: the audit log reads newest first
#     user.stats          setField "lastUndone", deleteField "lastChange"
#
# No get + set anywhere: concurrent requests never lose each other's work.
# The score is what ScoreAchievementMonitor and AutoTierPromoter watch.
RECENT = 5

CONFIG = {
  name: "ScoreUpdater",
  description: "Adds to, takes from, or undoes the last change of a user's score",
  flows: ["user-lifecycle"],
  triggers: [
    { type: "api", method: "POST", path: "/lifecycle/users/:id/score" },
    { type: "api", method: "DELETE", path: "/lifecycle/users/:id/score/last" }
  ]
}.freeze

def handler(req, ctx)
  user_id = req["pathParams"]["id"]
  unless ctx.state.exists(user_id, "user.profile")
    return { "status" => 404, "body" => { "error" => "no user #{user_id}" } }
  end

  req["method"] == "DELETE" ? undo_last(user_id, ctx) : add_to_score(user_id, req["body"] || {}, ctx)
end

def add_to_score(user_id, body, ctx)
  delta = body["delta"]
  reason = body.fetch("reason", "manual")
  unless delta.is_a?(Integer) && delta != 0 && reason.is_a?(String)
    return { "status" => 400, "body" => { "error" => "delta: expected a non-zero integer (and reason a string)" } }
  end

  state = ctx.state
  total = delta.positive? ? state.increment(user_id, "user.score", delta) : state.decrement(user_id, "user.score", -delta)
  entry = { "delta" => delta, "reason" => reason }
  # One shift per push past the cap: concurrent pushes each drop one, so the list settles at RECENT.
  state.shift(user_id, "user.recentScores") if state.push(user_id, "user.recentScores", entry).length > RECENT
  state.set_field(user_id, "user.stats", "lastChange", entry.merge("score" => total))
  activated = state.compare_and_swap(user_id, "user.status", "new", "active")
  ctx.logger.info("user activated", { "userId" => user_id }) if activated
  { "status" => 200, "body" => { "userId" => user_id, "score" => total } }
end

def undo_last(user_id, ctx)
  state = ctx.state
  entry = state.pop(user_id, "user.recentScores")
  return { "status" => 404, "body" => { "error" => "no score change of #{user_id} to undo" } } if entry.nil?

  delta = entry["delta"]
  total = delta.positive? ? state.decrement(user_id, "user.score", delta) : state.increment(user_id, "user.score", -delta)
  state.unshift(user_id, "user.corrections", { "undone" => entry, "score" => total })
  state.set_field(user_id, "user.stats", "lastUndone", entry)
  state.delete_field(user_id, "user.stats", "lastChange")
  { "status" => 200, "body" => { "userId" => user_id, "score" => total, "undone" => entry } }
end
