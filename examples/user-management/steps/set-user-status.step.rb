# POST /users/:id/status {"status": "active"}: sets one field of the user,
# atomically (a setField, not a read of the whole user and a write back).
CONFIG = {
  name: "SetUserStatus",
  flows: ["user-management"],
  triggers: [{ type: "api", method: "POST", path: "/users/:id/status" }]
}.freeze

STATUSES = %w[active inactive suspended].freeze

def handler(req, ctx)
  status = (req["body"] || {})["status"]
  return { "status" => 400, "body" => { "error" => "status must be one of #{STATUSES.join(', ')}" } } unless STATUSES.include?(status)

  user = ctx.state.set_field("users", req["pathParams"]["id"], "status", status)
  { "status" => 200, "body" => user }
end
