# Sends a notification (here: appends it to the recipient's list with an
# atomic push) and logs it with the address redacted.
CONFIG = {
  name: "Notification",
  description: "Sends notifications to users",
  flows: ["food-orders"],
  triggers: [{ type: "event", topic: "notification" }]
}.freeze

def handler(data, ctx)
  email = data["email"]
  redacted = email.gsub(/(?<=.{2})[^@](?=[^@]*@)/, "*")
  ctx.state.push("notifications", email, { "templateId" => data["templateId"], "templateData" => data["templateData"] })
  ctx.logger.info("notification sent", { "templateId" => data["templateId"], "email" => redacted })
end
