"""A plain-def step: blocking state calls and an all-or-nothing transaction.

Run me: motia-state run examples/checkout.step.py --data '{"sku": "book"}'
"""


def handler(data, ctx):
    state, order = ctx.state, (data or {}).get("sku", "book")
    state.compare_and_swap("stock", order, None, 3)  # seed the stock once
    result = state.transaction(
        "stock",
        [
            {"type": "decrement", "key": order},
            {"type": "push", "key": "orders", "items": [order]},
        ],
    )
    return result
