# PUT /orders/:id/complete: marks an order delivered. Both fields change in
# one transaction, so nobody ever sees a completed order still "placed".
CONFIG = {
  name: "CompleteOrder",
  flows: ["food-orders"],
  triggers: [{ type: "api", method: "PUT", path: "/orders/:id/complete" }]
}.freeze

def handler(req, ctx)
  id = req["pathParams"]["id"]
  # Orders are never deleted, so one that exists now still exists below.
  return { "status" => 404, "body" => { "error" => "no order #{id}" } } unless ctx.state.exists("orders", id)

  result = ctx.state.transaction("orders", [
    { "type" => "setField", "key" => id, "field" => "complete", "value" => true },
    { "type" => "setField", "key" => id, "field" => "status", "value" => "delivered" }
  ])
  { "status" => 200, "body" => result["results"][1] }
end
