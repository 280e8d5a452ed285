"""``motia-state``: run a step, or run the demo workflow. Thin: parses, calls the runtime."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from . import __version__
from .adapters.factory import create_state_adapter
from .errors import InvalidArgumentError, StateError
from .manager import StateManager
from .runtime import StepError, call_step_file, runner_exists

__all__ = ["main"]


#: Exit codes: the work failed; bad usage or input; stopped by a signal.
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _not_json(constant: str) -> Any:
    raise ValueError(f"--data: {constant} is not JSON")


def _parse_data(text: str | None) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    return json.loads(text, parse_constant=_not_json)


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


class _Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the command's work was cancelled and cleaned up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


async def _until_signalled(command: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """Run ``command``; SIGINT or SIGTERM cancels it, so its workers are killed and its store closed.

    The signals stay caught until that cleanup is over: a second Ctrl-C
    cannot cut it short.
    """
    received: int | None = None
    code = EXIT_INTERRUPTED
    failure: Exception | None = None  # raised after the task group, not as a group
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            work = anyio.CancelScope()

            async def watch() -> None:
                nonlocal received
                async for signum in signals:
                    if received is None:
                        received = signum
                    work.cancel()

            tg.start_soon(watch)
            with work:
                try:
                    code = await command(args)
                except Exception as e:
                    failure = e
            tg.cancel_scope.cancel()
    if received is not None:
        raise _Interrupted(received)
    if failure is not None:
        raise failure
    return code


async def _run(args: argparse.Namespace) -> int:
    manager = StateManager(create_state_adapter(args.state))
    async with manager:
        result = await call_step_file(
            args.step,
            data=_parse_data(args.data),
            trace_id=args.trace_id,
            state=manager,
            timeout=args.timeout,
        )
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _demo_languages() -> list[tuple[str, str]]:
    """(language, interpreter) for each language this machine can run."""
    found = [("python", sys.executable)]
    for language in ("node", "ruby"):
        exe = shutil.which(language)
        if exe and runner_exists(language):
            found.append((language, exe))
    return found


async def _demo(args: argparse.Namespace) -> int:
    racers = Path(__file__).parent / "_demo"
    step_for = {"python": racers / "racer.step.py", "node": racers / "racer.step.js", "ruby": racers / "racer.step.rb"}
    manager = StateManager(create_state_adapter(args.state), metrics=True)
    group = "demo"
    languages = _demo_languages()
    workers = [(lang, f"{lang}-{i}") for lang, _ in languages for i in range(args.workers)]
    total = len(workers) * args.rounds
    out = sys.stderr
    out.write(
        f"motia-state demo: {len(workers)} workers ({', '.join(lang for lang, _ in languages)}) x {args.rounds} rounds "
        f"on the {args.state or 'memory:'} adapter\n"
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
        tty = out.isatty()
        while not done.is_set():
            n = await manager.get(group, "counter") or 0
            bar = "#" * int(30 * n / total)
            line = f"  [{bar:<30}] {n}/{total} increments"
            out.write(f"\r{line}" if tty else f"{line}\n")
            out.flush()
            with anyio.move_on_after(0.2 if tty else 1.0):
                await done.wait()
        if tty:
            out.write("\n")

    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress, done)
        async with anyio.create_task_group() as racing:
            for language, name in workers:
                racing.start_soon(worker, language, name)
        done.set()
    elapsed = time.perf_counter() - start

    seen = sorted(n for r in results for n in r["seen"])
    counter = await manager.get(group, "counter")
    queue = await manager.get(group, "queue") or []
    credit = await manager.get(group, "credit")
    debit = await manager.get(group, "debit")
    cas = await manager.get(group, "cas")
    checks = {
        "counter": (counter, total),
        "increments returned 1..N once each": (seen == list(range(1, total + 1)), True),
        "queue items (each exactly once)": (len(set(queue)) if len(set(queue)) == len(queue) else -1, total),
        "transaction credit": (credit, 5 * total),
        "transaction debit": (debit, -5 * total),
        "update() via compare-and-swap": (cas, total),
    }
    ok = all(got == want for got, want in checks.values())
    assert manager.metrics is not None
    ops = sum(s["count"] for s in manager.metrics.snapshot().values())
    print(
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
    )
    out.write("nothing lost, nothing counted twice\n" if ok else "MISMATCH: see checks above\n")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="motia-state", description=__doc__)
    parser.add_argument("--version", action="version", version=f"motia-state {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log step output and state operations")
    sub = parser.add_subparsers(dest="command")
    from .app.dev import add_arguments as add_dev_arguments  # light: the server loads only when it runs

    add_dev_arguments(sub.add_parser("dev", help="serve a folder of steps on their triggers (HTTP, events, cron)"))
    from .web.serve import add_arguments as add_workbench_arguments  # light: the server loads when it runs

    add_workbench_arguments(sub.add_parser("workbench", help="browse, edit and replay a store in the browser"))

    run = sub.add_parser("run", help="run one step file and print its result as JSON")
    run.add_argument("step", help="a .py, .js, .cjs, .mjs or .rb step file")
    run.add_argument("--data", help="input JSON, or @file to read it from a file")
    run.add_argument("--trace-id", default="cli", help="the state group (trace id) of this run")
    run.add_argument("--state", default="memory:", help="memory: | file:PATH | redis://...")
    run.add_argument("--timeout", type=_seconds, default=None, help="seconds before the step is killed")

    demo = sub.add_parser("demo", help="race workers in every installed language on shared state")
    demo.add_argument("--workers", type=_positive, default=3, help="workers per language (default 3)")
    demo.add_argument("--rounds", type=_positive, default=300, help="rounds per worker (default 300)")
    demo.add_argument("--state", default="memory:", help="memory: | file:PATH | redis://...")
    demo.add_argument("--timeout", type=_seconds, default=120.0, help="seconds before a racer is killed")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``motia-state`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "dev":
        from .app.dev import run_dev

        return run_dev(args)
    if args.command == "workbench":
        from .web.serve import run_workbench

        return run_workbench(args)
    try:
        return anyio.run(_until_signalled, _run if args.command == "run" else _demo, args)
    except (_Interrupted, KeyboardInterrupt) as e:
        name = e.args[0] if isinstance(e, _Interrupted) else "SIGINT"
        print(f"motia-state: interrupted by {name}; the step's processes were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (StepError, StateError) as e:
        detail: dict[str, Any] = {"code": e.code, "message": e.message}
        if isinstance(e, StepError) and e.stack:
            detail["stack"] = e.stack
        print(json.dumps({"error": detail}, ensure_ascii=False), file=sys.stderr)
        # INVALID_ARGUMENT from the runtime is the input, refused before the step ran.
        return EXIT_USAGE if isinstance(e, InvalidArgumentError) else EXIT_FAILED
    except (OSError, ValueError) as e:
        print(json.dumps({"error": {"code": "INVALID_ARGUMENT", "message": str(e)}}), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
