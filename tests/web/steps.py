"""Step files of a small app for the workbench's tests (Python only, so no other tool is needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

STEPS = {
    "steps/greet.step.py": """
        config = {"name": "Greeter", "description": "Says hello and counts greetings",
                  "triggers": [{"type": "event", "topic": "greet"}], "flows": ["hello"]}

        async def handler(data, ctx):
            n = await ctx.state.increment("greetings", "count")
            ctx.logger.info("greeting number %d" % n)
            return {"hello": (data or {}).get("name", "world"), "n": n}
    """,
    "steps/charge.step.py": """
        config = {"name": "Charger", "triggers": [{"type": "event", "topic": "charge"}]}

        async def handler(data, ctx):
            # Fails until the card is valid: a dead letter that a retry clears once it is.
            if not await ctx.state.get("billing", "card-valid"):
                raise RuntimeError("card declined")
            await ctx.state.push("billing", "charged", data)
    """,
    "steps/order.step.py": """
        config = {"name": "Order", "triggers": [{"type": "api", "method": "POST", "path": "/orders"}],
                  "emits": ["charge"]}

        async def handler(req, ctx):
            await ctx.emit({"topic": "charge", "data": req["body"]})
            return {"status": 202, "body": {"queued": True}}
    """,
}


# A state-triggered step that fails while billing/hold is set: its change
# becomes a dead letter of the trigger, which a retry clears once the hold is lifted.
TRIGGER_STEPS = {
    "steps/watch.step.py": """
        config = {"name": "Watcher", "triggers": [{"type": "state", "key": "order"}]}

        async def handler(change, ctx):
            if await ctx.state.get("billing", "hold"):
                raise RuntimeError("billing on hold")
            await ctx.state.push("billing", "seen", change["value"])
    """,
}


def write_trigger_app(root: Path) -> Path:
    """The state-triggered step under ``root``; returns ``root``."""
    return write_app(root, TRIGGER_STEPS)


def write_app(root: Path, steps: dict[str, str] | None = None) -> Path:
    """The steps under ``root``; returns ``root``."""
    for name, source in (STEPS if steps is None else steps).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root
