"""A plain-def step: blocking state calls and a guarded, all-or-nothing transaction.

The stock starts at 3. Each run sells one book: the check refuses the sale
once the stock is gone, so a fourth run returns a failed result (code
CONFLICT at index 0) and stores nothing, instead of taking the stock to -1.

Run me: motia-state run examples/checkout.step.py --data '{"sku": "book"}'
"""


def handler(data, ctx):
    state, sku = ctx.state, (data or {}).get("sku", "book")
    state.compare_and_swap("stock", sku, None, 3)  # seed the stock once
    return state.transaction(
        "stock",
        [
            {"type": "check", "key": sku, "op": "gte", "value": 1},
            {"type": "decrement", "key": sku},
            {"type": "push", "key": "orders", "items": [sku]},
        ],
    )
