# POST /set-user-status {"userId": "u1", "status": "active"}: stores the
# status under the user's own group, where UserStatusMonitor watches it.
CONFIG = {
  name: "SetUserStatus",
  description: "Sets a user's status; state triggers watch it",
  flows: ["user-management"],
  triggers: [{ type: "api", method: "POST", path: "/set-user-status" }]
}.freeze

STATUSES = %w[inactive active suspended].freeze

def handler(req, ctx)
  body = req["body"] || {}
  user_id = body["userId"]
  status = body["status"]
  unless user_id.is_a?(String) && !user_id.empty? && STATUSES.include?(status)
    return { "status" => 400, "body" => { "error" => "give a userId and a status (#{STATUSES.join(', ')})" } }
  end

  ctx.state.set(user_id, "user.status", status)
  ctx.logger.info("user status set", { "userId" => user_id, "status" => status })
  { "status" => 200, "body" => { "message" => "User status updated", "userId" => user_id, "status" => status } }
end
