# Keeps a user's newest MAX notifications: one batch of shifts removes the
# oldest ones past the cap, in one round trip.
#
# The condition is a predicate: "element MAX exists" (a JSON Pointer into
# the list) is "more than MAX". The handler counts the excess on the stored
# list, not on the change, which may be stale: this step is the only one
# that removes notifications, and the runtime hands it one change of an
# entry at a time, so the list can only have grown between the read and the
# batch, and the batch never removes more than the excess. A notification
# added meanwhile is kept; its own change runs this step again.
MAX = 3

CONFIG = {
  name: "NotificationCleaner",
  description: "Trims user.notifications to the newest #{MAX}",
  flows: ["user-lifecycle"],
  triggers: [{ type: "state", key: "user.notifications", condition: { op: "exists", path: "/#{MAX}" } }]
}.freeze

def handler(change, ctx)
  user_id = change["group"]
  excess = (ctx.state.get(user_id, "user.notifications") || []).length - MAX
  return if excess <= 0

  ops = Array.new(excess) { |i| { "id" => i, "type" => "shift", "key" => "user.notifications" } }
  removed = ctx.state.batch(user_id, ops)["results"].map { |r| r.fetch("value") { raise "shift #{r['id']}: #{r['error']}" } }
  ctx.logger.info("notifications trimmed", { "userId" => user_id, "removed" => removed.map { |n| n["type"] } })
end
