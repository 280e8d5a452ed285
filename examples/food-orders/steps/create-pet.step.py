"""POST /basic-tutorial: registers a pet and, when the body has a foodOrder, orders food for it.

Ids come from an atomic counter, so two requests at once never share one.
"""

config = {
    "name": "CreatePet",
    "description": "Registers a pet; a food order goes on to ProcessFoodOrder",
    "flows": ["food-orders"],
    "triggers": [{"type": "api", "method": "POST", "path": "/basic-tutorial"}],
    "emits": ["process-food-order"],
}


async def handler(req, ctx):
    body = req["body"] or {}
    pet = body.get("pet") or {}
    if not isinstance(pet.get("name"), str):
        return {"status": 400, "body": {"error": "pet.name is required"}}
    pet_id = f"pet-{await ctx.state.increment('counters', 'pet')}"
    record = {"id": pet_id, "name": pet["name"], "photoUrl": pet.get("photoUrl", "")}
    await ctx.state.set("pets", pet_id, record)
    order = body.get("foodOrder")
    if order:
        await ctx.emit(
            {
                "topic": "process-food-order",
                "data": {"quantity": order.get("quantity", 1), "email": "test@test.com", "petId": pet_id},
            }
        )
    return {"status": 200, "body": dict(record, traceId=ctx.trace_id)}
