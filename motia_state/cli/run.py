"""``run``: one step on a store; ``demo``: workers in every installed language racing on shared state."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .._urls import redacted
from ._common import EXIT_FAILED, EXIT_OK, Output, fail, open_store, parse_data, positive_int, seconds

__all__ = ["add_demo", "add_run"]

STEP_SUFFIXES = (".py", ".js", ".cjs", ".mjs", ".rb")


def add_run(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``run`` command's parser."""
    run = sub.add_parser(
        "run",
        parents=parents,
        help="run one step file and print its result as JSON",
        description="Run one step file on a store and print its handler's result as JSON on stdout.",
    )
    run.add_argument("step", help="a .py, .js, .cjs, .mjs or .rb step file")
    run.add_argument("--data", metavar="JSON|@FILE|@-", help="the step's input: JSON, @FILE, or @- for stdin")
    run.add_argument("--trace-id", default="cli", help="the state group (trace id) of this run (default: cli)")
    run.add_argument("--timeout", type=seconds, default=None, help="seconds before the step is killed (default: none)")
    run.set_defaults(command_fn=run_step)


async def run_step(args: argparse.Namespace, out: Output) -> int:
    """Check the input, the step file and the store (in that order), then run the step."""
    from ..app.config import takes_context_first
    from ..errors import LimitExceededError, StateError
    from ..runtime import WorkerPool
    from ..values import check_name

    data = parse_data(args.data)
    try:
        check_name(args.trace_id, "traceId")
    except StateError as e:
        fail(f"--trace-id: {e.message}", code=e.code, hint="the trace id is the run's state group: a non-empty name")
    step = Path(args.step)
    if not step.is_file():
        fail(f"{args.step}: no such step file", hint="give the path of a .py, .js, .cjs, .mjs or .rb step file")
    if step.suffix not in STEP_SUFFIXES:
        fail(f"{args.step}: not a step file (expected {', '.join(STEP_SUFFIXES)})")
    async with open_store(args.state, args) as manager:
        failure: StateError | None = None
        async with WorkerPool(manager, max_workers=1) as pool:
            # One worker reads the config, then runs the handler: a step in Motia's older
            # cron shape is called as Motia calls it (and as `dev` does), handler(ctx).
            try:
                context_first = takes_context_first(await pool.config(step, timeout=args.timeout))
            except StateError:
                context_first = False  # a file that does not load fails the call below, with its message
            try:
                result = await pool.call(
                    step, data=data, trace_id=args.trace_id, timeout=args.timeout, context_first=context_first
                )
            except StateError as e:  # raised out of the pool's block, not wrapped in its task group's
                failure = e
        if isinstance(failure, LimitExceededError):  # raised before the step starts: the input is over the limit
            fail(f"--data: {failure.message}", code=failure.code, hint="give the step a smaller input")
        if failure is not None:
            raise failure
    out.stdout.write(json.dumps(result, ensure_ascii=False, indent=2 if not out.json else None) + "\n")
    return EXIT_OK


def add_demo(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``demo`` command's parser."""
    demo = sub.add_parser(
        "demo",
        parents=parents,
        help="race workers in every installed language on shared state",
        description="Race workers in every installed language on one shared state and check that nothing is lost.",
    )
    demo.add_argument("--workers", type=positive_int, default=3, help="workers per language (default 3)")
    demo.add_argument("--rounds", type=positive_int, default=300, help="rounds per worker (default 300)")
    demo.add_argument("--timeout", type=seconds, default=120.0, help="seconds before a racer is killed (default 120)")
    demo.set_defaults(command_fn=run_demo)


def _demo_languages() -> list[tuple[str, str]]:
    """(language, interpreter) for each language this machine can run."""
    from ..runtime import runner_exists

    found = [("python", sys.executable)]
    for language in ("node", "ruby"):
        exe = shutil.which(language)
        if exe and runner_exists(language):
            found.append((language, exe))
    return found


async def run_demo(args: argparse.Namespace, out: Output) -> int:
    """Race the workers, then check every total."""
    import anyio

    from ..runtime import call_step_file

    racers = Path(__file__).resolve().parent.parent / "_demo"
    step_for = {"python": racers / "racer.step.py", "node": racers / "racer.step.js", "ruby": racers / "racer.step.rb"}
    group = "demo"
    languages = _demo_languages()
    workers = [(lang, f"{lang}-{i}") for lang, _ in languages for i in range(args.workers)]
    total = len(workers) * args.rounds
    async with open_store(args.state, args, metrics=True) as manager:
        out.message(
            f"motia-state demo: {len(workers)} workers ({', '.join(lang for lang, _ in languages)}) "
            f"x {args.rounds} rounds on the {redacted(args.state)} store"
        )
        await manager.clear(group)
        results: list[dict[str, Any]] = []
        start = time.perf_counter()

        async def worker(language: str, name: str) -> None:
            results.append(
                await call_step_file(
                    step_for[language],
                    data={"group": group, "rounds": args.rounds, "worker": name},
                    trace_id=group,
                    state=manager,
                    timeout=args.timeout,
                )
            )

        async def progress(done: anyio.Event) -> None:
            with out.progress("increments", total) as advance:
                shown = 0
                while not done.is_set():
                    n = await manager.get(group, "counter") or 0
                    advance(n - shown)
                    shown = n
                    with anyio.move_on_after(0.2):
                        await done.wait()
                advance(total - shown)

        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress, done)
            async with anyio.create_task_group() as racing:
                for language, name in workers:
                    racing.start_soon(worker, language, name)
            done.set()
        elapsed = time.perf_counter() - start

        seen = sorted(n for r in results for n in r["seen"])
        queue = await manager.get(group, "queue") or []
        checks = {
            "counter": (await manager.get(group, "counter"), total),
            "increments returned 1..N once each": (seen == list(range(1, total + 1)), True),
            "queue items (each exactly once)": (len(set(queue)) if len(set(queue)) == len(queue) else -1, total),
            "transaction credit": (await manager.get(group, "credit"), 5 * total),
            "transaction debit": (await manager.get(group, "debit"), -5 * total),
            "update() via compare-and-swap": (await manager.get(group, "cas"), total),
        }
        assert manager.metrics is not None
        ops = sum(s["count"] for s in manager.metrics.snapshot().values())
    ok = all(got == want for got, want in checks.values())
    out.stdout.write(
        json.dumps(
            {
                "ok": ok,
                "workers": len(workers),
                "languages": [lang for lang, _ in languages],
                "checks": {name: {"got": got, "want": want} for name, (got, want) in checks.items()},
                "state_operations": ops,
                "seconds": round(elapsed, 3),
                "operations_per_second": round(ops / elapsed),
            },
            indent=2,
        )
        + "\n"
    )
    out.message("nothing lost, nothing counted twice" if ok else "MISMATCH: see checks above")
    return EXIT_OK if ok else EXIT_FAILED
