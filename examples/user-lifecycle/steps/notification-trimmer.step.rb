# Keeps only the newest MAX notifications. The condition is this file's own
# condition function ("native": true in the trigger), run in its worker;
# the trimmed list it writes no longer matches, so it does not loop.
MAX = 2

CONFIG = {
  name: "NotificationTrimmer",
  description: "Trims user.notifications to the newest #{MAX}",
  flows: ["user-lifecycle"],
  triggers: [{ type: "state", key: "user.notifications", condition: { native: true } }]
}.freeze

def condition(value, _ctx)
  value.is_a?(Array) && value.length > MAX
end

def handler(change, ctx)
  # An optimistic update: a notification pushed meanwhile is kept.
  ctx.state.update(change["group"], "user.notifications") { |list| (list || []).last(MAX) }
end
