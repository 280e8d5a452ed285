"""``create NAME``: a new app folder from a template that runs as is under ``motia-state dev``."""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ._common import EXIT_OK, Output, fail

__all__ = ["TEMPLATES", "add_create"]

_README = """# {name}

A motia-state app. Run it:

```bash
motia-state dev . --state file:./state
```

Then, in another terminal:

```bash
curl -s -X PUT localhost:3000/stock/apple -H 'content-type: application/json' -d '{{"quantity": 10}}'
curl -s -X POST localhost:3000/orders -H 'content-type: application/json' -d '{{"item": "apple", "quantity": 7}}'
curl -s localhost:3000/orders/order-1
motia-state state get alerts low-stock --state file:./state
```

- `steps/restock` (API, PUT /stock/:item) adds to an item's stock with `increment`.
- `steps/create-order` (API, POST /orders) numbers the order with an atomic counter and emits `order-placed`.
- `steps/reserve-stock` (event `order-placed`) takes the stock in one transaction guarded by a check
  (the stock must hold at least the quantity), so two orders can never sell the same unit.
- `steps/low-stock` (state trigger on the `stock` group, when a value is below 5) records the item's stock in an alert.
- `steps/get-order` (API, GET /orders/:id) reads an order.
"""

PYTHON = {
    "steps/restock.step.py": """config = {
    "name": "Restock",
    "flows": ["orders"],
    "triggers": [{"type": "api", "method": "PUT", "path": "/stock/:item"}],
}


async def handler(req, ctx):
    quantity = (req["body"] or {}).get("quantity")
    if not isinstance(quantity, int) or quantity < 1:
        return {"status": 400, "body": {"error": "quantity must be an integer >= 1"}}
    stock = await ctx.state.increment("stock", req["pathParams"]["item"], quantity)
    return {"status": 200, "body": {"stock": stock}}
""",
    "steps/create-order.step.py": """config = {
    "name": "CreateOrder",
    "flows": ["orders"],
    "triggers": [{"type": "api", "method": "POST", "path": "/orders"}],
    "emits": ["order-placed"],
}


async def handler(req, ctx):
    body = req["body"] or {}
    if not isinstance(body.get("item"), str) or not isinstance(body.get("quantity"), int):
        return {"status": 400, "body": {"error": "item (string) and quantity (integer) are required"}}
    order_id = f"order-{await ctx.state.increment('counters', 'order')}"
    order = {"id": order_id, "item": body["item"], "quantity": body["quantity"], "status": "placed"}
    await ctx.state.set("orders", order_id, order)
    await ctx.emit({"topic": "order-placed", "data": {"id": order_id}})
    return {"status": 201, "body": order}
""",
    "steps/reserve-stock.step.py": """config = {
    "name": "ReserveStock",
    "flows": ["orders"],
    "triggers": [{"type": "event", "topic": "order-placed"}],
}


async def handler(data, ctx):
    order = await ctx.state.get("orders", data["id"])
    taken = await ctx.state.transaction(
        "stock",
        [
            {"type": "check", "key": order["item"], "op": "gte", "value": order["quantity"]},
            {"type": "decrement", "key": order["item"], "delta": order["quantity"]},
        ],
    )
    status = "reserved" if taken["success"] else "out-of-stock"
    await ctx.state.set_field("orders", data["id"], "status", status)
    ctx.logger.info(f"order {data['id']}: {status}")
""",
    "steps/low-stock.step.py": """config = {
    "name": "LowStock",
    "flows": ["orders"],
    "triggers": [{"type": "state", "group": "stock", "key": "*", "condition": {"op": "lt", "value": 5}}],
}


async def handler(change, ctx):
    await ctx.state.set_field("alerts", "low-stock", change["key"], change["value"])
""",
    "steps/get-order.step.py": """config = {
    "name": "GetOrder",
    "flows": ["orders"],
    "triggers": [{"type": "api", "method": "GET", "path": "/orders/:id"}],
}


async def handler(req, ctx):
    order = await ctx.state.get("orders", req["pathParams"]["id"])
    if order is None:
        return {"status": 404, "body": {"error": "no such order"}}
    return {"status": 200, "body": order}
""",
}

NODE = {
    "steps/restock.step.js": """exports.config = {
  name: "Restock",
  flows: ["orders"],
  triggers: [{ type: "api", method: "PUT", path: "/stock/:item" }],
};

exports.handler = async (req, ctx) => {
  const quantity = (req.body || {}).quantity;
  if (!Number.isInteger(quantity) || quantity < 1) {
    return { status: 400, body: { error: "quantity must be an integer >= 1" } };
  }
  const stock = await ctx.state.increment("stock", req.pathParams.item, quantity);
  return { status: 200, body: { stock } };
};
""",
    "steps/create-order.step.js": """exports.config = {
  name: "CreateOrder",
  flows: ["orders"],
  triggers: [{ type: "api", method: "POST", path: "/orders" }],
  emits: ["order-placed"],
};

exports.handler = async (req, ctx) => {
  const body = req.body || {};
  if (typeof body.item !== "string" || !Number.isInteger(body.quantity)) {
    return { status: 400, body: { error: "item (string) and quantity (integer) are required" } };
  }
  const id = `order-${await ctx.state.increment("counters", "order")}`;
  const order = { id, item: body.item, quantity: body.quantity, status: "placed" };
  await ctx.state.set("orders", id, order);
  await ctx.emit({ topic: "order-placed", data: { id } });
  return { status: 201, body: order };
};
""",
    "steps/reserve-stock.step.js": """exports.config = {
  name: "ReserveStock",
  flows: ["orders"],
  triggers: [{ type: "event", topic: "order-placed" }],
};

exports.handler = async (data, ctx) => {
  const order = await ctx.state.get("orders", data.id);
  const taken = await ctx.state.transaction("stock", [
    { type: "check", key: order.item, op: "gte", value: order.quantity },
    { type: "decrement", key: order.item, delta: order.quantity },
  ]);
  const status = taken.success ? "reserved" : "out-of-stock";
  await ctx.state.setField("orders", data.id, "status", status);
  ctx.logger.info(`order ${data.id}: ${status}`);
};
""",
    "steps/low-stock.step.js": """exports.config = {
  name: "LowStock",
  flows: ["orders"],
  triggers: [{ type: "state", group: "stock", key: "*", condition: { op: "lt", value: 5 } }],
};

exports.handler = async (change, ctx) => {
  await ctx.state.setField("alerts", "low-stock", change.key, change.value);
};
""",
    "steps/get-order.step.js": """exports.config = {
  name: "GetOrder",
  flows: ["orders"],
  triggers: [{ type: "api", method: "GET", path: "/orders/:id" }],
};

exports.handler = async (req, ctx) => {
  const order = await ctx.state.get("orders", req.pathParams.id);
  if (order === null) return { status: 404, body: { error: "no such order" } };
  return { status: 200, body: order };
};
""",
}

RUBY = {
    "steps/restock.step.rb": """CONFIG = {
  name: "Restock",
  flows: ["orders"],
  triggers: [{ type: "api", method: "PUT", path: "/stock/:item" }]
}.freeze

def handler(req, ctx)
  quantity = (req["body"] || {})["quantity"]
  unless quantity.is_a?(Integer) && quantity >= 1
    return { "status" => 400, "body" => { "error" => "quantity must be an integer >= 1" } }
  end

  stock = ctx.state.increment("stock", req["pathParams"]["item"], quantity)
  { "status" => 200, "body" => { "stock" => stock } }
end
""",
    "steps/create-order.step.rb": """CONFIG = {
  name: "CreateOrder",
  flows: ["orders"],
  triggers: [{ type: "api", method: "POST", path: "/orders" }],
  emits: ["order-placed"]
}.freeze

def handler(req, ctx)
  body = req["body"] || {}
  unless body["item"].is_a?(String) && body["quantity"].is_a?(Integer)
    return { "status" => 400, "body" => { "error" => "item (string) and quantity (integer) are required" } }
  end

  id = "order-#{ctx.state.increment('counters', 'order')}"
  order = { "id" => id, "item" => body["item"], "quantity" => body["quantity"], "status" => "placed" }
  ctx.state.set("orders", id, order)
  ctx.emit({ "topic" => "order-placed", "data" => { "id" => id } })
  { "status" => 201, "body" => order }
end
""",
    "steps/reserve-stock.step.rb": """CONFIG = {
  name: "ReserveStock",
  flows: ["orders"],
  triggers: [{ type: "event", topic: "order-placed" }]
}.freeze

def handler(data, ctx)
  order = ctx.state.get("orders", data["id"])
  taken = ctx.state.transaction("stock", [
    { "type" => "check", "key" => order["item"], "op" => "gte", "value" => order["quantity"] },
    { "type" => "decrement", "key" => order["item"], "delta" => order["quantity"] }
  ])
  status = taken["success"] ? "reserved" : "out-of-stock"
  ctx.state.set_field("orders", data["id"], "status", status)
  ctx.logger.info("order #{data['id']}: #{status}")
end
""",
    "steps/low-stock.step.rb": """CONFIG = {
  name: "LowStock",
  flows: ["orders"],
  triggers: [{ type: "state", group: "stock", key: "*", condition: { op: "lt", value: 5 } }]
}.freeze

def handler(change, ctx)
  ctx.state.set_field("alerts", "low-stock", change["key"], change["value"])
end
""",
    "steps/get-order.step.rb": """CONFIG = {
  name: "GetOrder",
  flows: ["orders"],
  triggers: [{ type: "api", method: "GET", path: "/orders/:id" }]
}.freeze

def handler(req, ctx)
  order = ctx.state.get("orders", req["pathParams"]["id"])
  return { "status" => 404, "body" => { "error" => "no such order" } } if order.nil?

  { "status" => 200, "body" => order }
end
""",
}

#: The template's files per language (paths relative to the new folder).
TEMPLATES: dict[str, dict[str, str]] = {"python": PYTHON, "node": NODE, "ruby": RUBY}


def add_create(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``create`` parser."""
    create = sub.add_parser(
        "create",
        parents=parents,
        help="a new app folder from a template (runs as is under dev)",
        description="Create a new app folder: an API step, an event step, a state trigger and a transaction "
        "guarded by a check, ready for `motia-state dev NAME`.",
    )
    create.add_argument("name", help="the new folder (must not exist)")
    create.add_argument(
        "--lang", choices=sorted(TEMPLATES), default="python", help="the steps' language (default python)"
    )
    create.set_defaults(command_fn=create_app)


def _why(error: BaseException) -> str:
    """An OS error's reason without its errno and repeated path."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


async def create_app(args: argparse.Namespace, out: Output) -> int:
    """Write the template into a new folder; an existing path is refused (nothing is overwritten)."""
    if not args.name.strip():
        fail("the new folder's name is empty", hint="give the name of a folder to create, e.g. `create my-app`")
    target = Path(args.name)
    if os.path.lexists(target):  # a dangling link too: writing through it would create files elsewhere
        fail(f"{args.name}: already exists", hint="give a new folder name; create never overwrites anything")
    if not re.fullmatch(r"[\w.-]+", target.name):
        fail(f"{args.name}: use letters, digits, '.', '-' and '_' for the folder's name")
    files = {"README.md": _README.format(name=target.name), **TEMPLATES[args.lang]}
    try:
        for relative, text in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as e:
        shutil.rmtree(target, ignore_errors=True)  # it did not exist: nobody else's files are in it
        fail(f"{args.name}: cannot create the app there: {_why(e)}", hint="give the path of a new folder")
    out.data(
        {"created": str(target), "lang": args.lang, "files": sorted(files)},
        lambda d: f"created {d['created']} ({d['lang']}); run it with: motia-state dev {d['created']}",
    )
    return EXIT_OK
