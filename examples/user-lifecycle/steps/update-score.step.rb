# POST /lifecycle/users/:id/score {"delta": 120}: one atomic increment of
# user.score, the key AutoTierPromoter watches.
CONFIG = {
  name: "UpdateScore",
  description: "Adds to a registered user's score",
  flows: ["user-lifecycle"],
  triggers: [{ type: "api", method: "POST", path: "/lifecycle/users/:id/score" }]
}.freeze

def handler(req, ctx)
  user_id = req["pathParams"]["id"]
  delta = (req["body"] || {})["delta"]
  return { "status" => 400, "body" => { "error" => "delta: expected an integer" } } unless delta.is_a?(Integer)
  return { "status" => 404, "body" => { "error" => "no user #{user_id}" } } unless ctx.state.exists(user_id, "user.profile")

  score = ctx.state.increment(user_id, "user.score", delta)
  { "status" => 200, "body" => { "userId" => user_id, "score" => score } }
end
