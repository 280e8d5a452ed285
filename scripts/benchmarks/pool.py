"""Suite ``pool``: invocations of a one-increment step, a new process each time vs a warm worker."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

import motia_state as ms
from motia_state.runtime import WorkerPool, call_step_file

from .harness import Options, best_of, report

DEFAULT_N = 50

TRIVIAL_STEPS = {
    "python": ("py", "async def handler(data, ctx):\n    return await ctx.state.increment(ctx.trace_id, 'n')\n"),
    "node": ("js", "exports.handler = async (data, ctx) => ctx.state.increment(ctx.traceId, 'n')\n"),
    "ruby": ("rb", "def handler(data, ctx)\n  ctx.state.increment(ctx.trace_id, 'n')\nend\n"),
}


def run(options: Options) -> None:
    """Per installed language: ``n`` cold calls (call_step_file) and ``20 n`` warm ones (WorkerPool.call)."""
    n, rounds = options.n, options.rounds
    present = {lang: spec for lang, spec in TRIVIAL_STEPS.items() if lang == "python" or shutil.which(lang)}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for lang, (ext, source) in present.items():
            paths[lang] = Path(tmp) / f"trivial.step.{ext}"
            paths[lang].write_text(source)

        def cold(path: Path) -> Callable[[], float]:
            async def run() -> float:
                state = ms.StateManager()
                start = time.perf_counter()
                for _ in range(n):
                    await call_step_file(path, trace_id="t", state=state)
                return n / (time.perf_counter() - start)

            return lambda: anyio.run(run)

        def warm(path: Path) -> Callable[[], float]:
            async def run() -> float:
                async with WorkerPool(ms.StateManager()) as pool:
                    await pool.call(path, trace_id="t")  # the one start it pays
                    start = time.perf_counter()
                    for _ in range(n * 20):
                        await pool.call(path, trace_id="t")
                    return n * 20 / (time.perf_counter() - start)

            return lambda: anyio.run(run)

        contenders: dict[str, Callable[[], float]] = {}
        for lang, path in paths.items():
            contenders[f"{lang}: call_step_file (new process)"] = cold(path)
            contenders[f"{lang}: WorkerPool.call (warm worker)"] = warm(path)
        results = best_of(rounds, contenders)
    report(
        f"pool: sequential invocations of a one-increment step ({n} cold, {n * 20} warm per round); best of {rounds}",
        results,
        [
            (f"{lang}: warm / cold", f"{lang}: WorkerPool.call (warm worker)", f"{lang}: call_step_file (new process)")
            for lang in paths
        ],
    )
