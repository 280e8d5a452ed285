"""A batch: several independent writes in one round trip, each with its own result.

Each run records a visit to ``page`` by ``user`` in group ``visits``: the
total, the page's own counter, whether the user is new (a compareAndSwap
from null: true on the first visit, false after, not an error) and who came
last. The items do not depend on each other, so one that fails does not stop
the others: if ``page:<page>`` holds something that is not a number, that
item alone fails with TYPE_MISMATCH and the other three are still stored.
The step returns each item's id with its value or its error code.

Run me: motia-state run examples/visit.step.py --data '{"page": "home", "user": "ada"}'
"""


async def handler(data, ctx):
    page, user = (data or {}).get("page", "home"), (data or {}).get("user", "anonymous")
    batch = await ctx.state.batch(
        "visits",
        [
            {"id": "total", "type": "increment", "key": "total"},
            {"id": "page", "type": "increment", "key": f"page:{page}"},
            {"id": "new", "type": "compareAndSwap", "key": f"seen:{user}", "expected": None, "value": True},
            {"id": "last", "type": "set", "key": "last", "value": user},
        ],
    )
    return {r["id"]: {"code": r["code"]} if r.get("code") else {"value": r["value"]} for r in batch["results"]}
