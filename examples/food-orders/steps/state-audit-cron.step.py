"""Every five minutes: warns once about each order that is not complete and whose ship date has passed.

The schedule can be changed with FOOD_ORDERS_AUDIT_CRON (e.g. "@every 10s").
"Once" holds even if two audits overlap: an order is claimed with a
compare-and-swap from null before its warning goes out.
"""

import os
from datetime import datetime

config = {
    "name": "StateAuditJob",
    "description": "Checks the state for orders that are not complete and have a ship date in the past",
    "flows": ["food-orders"],
    "triggers": [{"type": "cron", "expression": os.environ.get("FOOD_ORDERS_AUDIT_CRON", "*/5 * * * *")}],
    "emits": ["notification"],
}


def _when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def handler(data, ctx):
    now = _when(data["scheduledAt"])
    for order in await ctx.state.get_group("orders"):
        if order["complete"] or _when(order["shipDate"]) >= now:
            continue
        if not await ctx.state.compare_and_swap("order-audits", order["id"], None, data["scheduledAt"]):
            continue  # already warned about
        ctx.logger.warn("order is not complete and its ship date is past", orderId=order["id"])
        await ctx.emit(
            {
                "topic": "notification",
                "data": {
                    "email": order["email"],
                    "templateId": "order-audit-warning",
                    "templateData": {
                        "orderId": order["id"],
                        "status": order["status"],
                        "shipDate": order["shipDate"],
                        "message": "Order is not complete and ship date is past",
                    },
                },
            }
        )
