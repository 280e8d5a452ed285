# PUT /orders/:id/complete: marks an order delivered. One transaction checks
# that the order exists and changes both fields, so nobody ever sees a
# completed order still "placed", and a missing order is never created.
CONFIG = {
  name: "CompleteOrder",
  flows: ["food-orders"],
  triggers: [{ type: "api", method: "PUT", path: "/orders/:id/complete" }]
}.freeze

def handler(req, ctx)
  id = req["pathParams"]["id"]
  result = ctx.state.transaction("orders", [
    { "type" => "check", "key" => id, "op" => "exists" },
    { "type" => "setField", "key" => id, "field" => "complete", "value" => true },
    { "type" => "setField", "key" => id, "field" => "status", "value" => "delivered" }
  ])
  return { "status" => 404, "body" => { "error" => "no order #{id}" } } unless result["success"]

  { "status" => 200, "body" => result["results"][2] }
end
