"""Suite ``app``: an App's HTTP round trip against a plain Starlette route, and events through a chain of three steps.

HTTP: an API step that increments a counter and answers it, served by
``App.asgi`` under uvicorn on a free loopback port (warm workers), against
the same handler written as a Starlette route in the serving process. One
httpx client sends ``n`` sequential requests per round (after a warm-up)
and the suite reports requests/s, p50 and p99 per round. Both servers run
in one background thread with its own event loop and the client runs in
the main thread, so the client's work shares the process with the server
in every contender alike.

Events: ``n`` emits published at once into a chain of three event steps
(A emits to B, B to C, C counts), one chain all Python and one Python ->
Node -> Ruby; reported as chains completed per second and deliveries per
second (three per chain).

Every round of every contender is printed, then each one's range: on a
shared machine the spread is part of the result.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

import motia_state as ms

from .harness import Options

if TYPE_CHECKING:
    import httpx
    import uvicorn
    from starlette.applications import Starlette

    from motia_state.app import App

# httpx, uvicorn, starlette and the app are imported where they are used, so
# that the other suites (which import this module too) measure a process
# without them.

DEFAULT_N = 500
WARMUP = 50
CHUNK = 25

API_STEPS = {
    "python": (
        "bump.step.py",
        """
        config = {"name": "BumpPy", "triggers": [{"type": "api", "method": "POST", "path": "/python"}]}


        async def handler(req, ctx):
            n = await ctx.state.increment("bench", "python", req["body"]["by"])
            return {"status": 200, "body": {"n": n}}
        """,
    ),
    "node": (
        "bump.step.js",
        """
        exports.config = { name: 'BumpJs', triggers: [{ type: 'api', method: 'POST', path: '/node' }] }
        exports.handler = async (req, ctx) => {
          const n = await ctx.state.increment('bench', 'node', req.body.by)
          return { status: 200, body: { n } }
        }
        """,
    ),
    "ruby": (
        "bump.step.rb",
        """
        CONFIG = { name: "BumpRb", triggers: [{ type: "api", method: "POST", path: "/ruby" }] }

        def handler(req, ctx)
          n = ctx.state.increment("bench", "ruby", req["body"]["by"])
          { "status" => 200, "body" => { "n" => n } }
        end
        """,
    ),
}


def _chain(prefix: str, exts: tuple[str, str, str]) -> dict[str, str]:
    """Three event steps ``{prefix}.a -> .b -> .c``, in the languages of ``exts``; the last counts in group ``bench``."""
    topics = [f"{prefix}.a", f"{prefix}.b", f"{prefix}.c"]
    files = {}
    for i, ext in enumerate(exts):
        name, topic = f"{prefix.capitalize()}{i}", topics[i]
        nxt = topics[i + 1] if i < 2 else None
        if ext == "py":
            act = (
                f'await ctx.emit({{"topic": "{nxt}", "data": data}})'
                if nxt
                else f'await ctx.state.increment("bench", "{prefix}")'
            )
            emits = f', "emits": ["{nxt}"]' if nxt else ""
            source = f"""
                config = {{"name": "{name}", "triggers": [{{"type": "event", "topic": "{topic}"}}]{emits}}}


                async def handler(data, ctx):
                    {act}
                """
        elif ext == "js":
            act = (
                f"await ctx.emit({{ topic: '{nxt}', data }})"
                if nxt
                else f"await ctx.state.increment('bench', '{prefix}')"
            )
            emits = f", emits: ['{nxt}']" if nxt else ""
            source = f"""
                exports.config = {{ name: '{name}', triggers: [{{ type: 'event', topic: '{topic}' }}]{emits} }}
                exports.handler = async (data, ctx) => {{
                  {act}
                }}
                """
        else:
            act = (
                f'ctx.emit({{ "topic" => "{nxt}", "data" => data }})'
                if nxt
                else f'ctx.state.increment("bench", "{prefix}")'
            )
            emits = f', emits: ["{nxt}"]' if nxt else ""
            source = f"""
                CONFIG = {{ name: "{name}", triggers: [{{ type: "event", topic: "{topic}" }}]{emits} }}

                def handler(data, ctx)
                  {act}
                end
                """
        files[f"{prefix}{i}.step.{ext}"] = textwrap.dedent(source)
    return files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _plain_starlette(state: ms.StateManager) -> Starlette:
    """The API step's handler as an in-process Starlette route: same JSON in, same increment, same answer."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def bump(request: Request) -> JSONResponse:
        body = await request.json()
        n = await state.increment("bench", "plain", body["by"])
        return JSONResponse({"n": n})

    return Starlette(routes=[Route("/plain", bump, methods=["POST"])])


@contextmanager
def _served(root: Path) -> Iterator[tuple[str, str, App]]:
    """The App over ``root`` and the plain Starlette app, each under uvicorn on its own port, in a background loop."""
    import uvicorn

    from motia_state.app import App

    app_port, plain_port = _free_port(), _free_port()
    ready, failed = threading.Event(), []
    servers: list[uvicorn.Server] = []
    holder: list[App] = []

    async def main() -> None:
        try:
            async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
                holder.append(app)
                for asgi, port in ((app.asgi, app_port), (_plain_starlette(ms.StateManager()), plain_port)):
                    config = uvicorn.Config(
                        asgi, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False
                    )
                    servers.append(uvicorn.Server(config))
                tasks = [asyncio.create_task(s.serve()) for s in servers]
                while not all(s.started for s in servers):
                    await asyncio.sleep(0.01)
                ready.set()
                await asyncio.gather(*tasks)
        except BaseException as e:
            failed.append(e)
            ready.set()
            raise

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait(120)
    if failed or not holder:
        raise RuntimeError(f"the servers did not start: {failed!r}")
    try:
        yield f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{plain_port}", holder[0]
    finally:
        for s in servers:
            s.should_exit = True
        thread.join(60)


def _requests(client: httpx.Client, path: str, n: int) -> list[float]:
    """``n`` sequential POSTs to ``path``, each answer checked: their latencies in seconds."""
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.post(path, json={"by": 1})
        latencies.append(time.perf_counter() - t0)
        if response.status_code != 200 or not isinstance(response.json().get("n"), int):
            raise RuntimeError(f"{path}: unexpected answer {response.status_code} {response.text[:200]}")
    return latencies


def _summary(latencies: list[float]) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of sequential requests that took ``latencies``."""
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / sum(latencies), cuts[49] * 1000, cuts[98] * 1000


def _range(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if low == high else f"{format(low, fmt)}-{format(high, fmt)}"


def http(options: Options, languages: list[str]) -> None:
    """The HTTP half: the App's API step per language against the plain Starlette route."""
    import httpx

    n, rounds = options.n, options.rounds
    with tempfile.TemporaryDirectory(prefix="motia-bench-app-") as tmp:
        root = Path(tmp)
        for lang in languages:
            name, source = API_STEPS[lang]
            (root / name).write_text(textwrap.dedent(source))
        with _served(root) as (app_url, plain_url, _), httpx.Client(timeout=60) as client:
            paths = {"plain Starlette route (in process)": f"{plain_url}/plain"}
            paths.update({f"App API step, {lang} (warm worker)": f"{app_url}/{lang}" for lang in languages})
            for path in paths.values():
                _requests(client, path, WARMUP)
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in paths}
            for _ in range(rounds):
                # The contenders take turns every CHUNK requests, so that a
                # burst of load from elsewhere on the machine lands on all of them.
                latencies: dict[str, list[float]] = {name: [] for name in paths}
                for _ in range(max(1, n // CHUNK)):
                    for name, path in paths.items():
                        latencies[name] += _requests(client, path, min(n, CHUNK))
                for name, values in latencies.items():
                    results[name].append(_summary(values))
    print(
        f"\napp http: {max(1, n // CHUNK) * min(n, CHUNK)} sequential POSTs per round and contender"
        f" (taking turns every {CHUNK}), {rounds} rounds"
    )
    width = max(len(name) for name in results)
    plain = results["plain Starlette route (in process)"]
    for name, runs in results.items():
        per_round = ", ".join(f"{r:,.0f}" for r, _, _ in runs)
        print(f"  {name:<{width}}  req/s {per_round}")
        print(
            f"  {'':<{width}}  range {_range([r for r, _, _ in runs], ',.0f')} req/s,"
            f" p50 {_range([p for _, p, _ in runs], '.2f')} ms, p99 {_range([p for _, _, p in runs], '.2f')} ms"
        )
    for name, runs in results.items():
        if runs is not plain:
            ratios = [p[0] / r[0] for p, r in zip(plain, runs, strict=True)]
            p50s = [r[1] / p[1] for p, r in zip(plain, runs, strict=True)]
            print(f"  plain / {name}: req/s {_range(ratios, '.1f')}x, p50 {_range(p50s, '.1f')}x (per round)")


def events(options: Options, languages: list[str]) -> None:
    """The event half: ``n`` emits at once through a three-step chain, all Python and (when installed) mixed."""
    from motia_state.app import App

    n, rounds = options.n, options.rounds
    chains = {"python -> python -> python": ("py3", ("py", "py", "py"))}
    if "node" in languages and "ruby" in languages:
        chains["python -> node -> ruby"] = ("mixed", ("py", "js", "rb"))
    with tempfile.TemporaryDirectory(prefix="motia-bench-events-") as tmp:
        root = Path(tmp)
        for prefix, exts in chains.values():
            for name, source in _chain(prefix, exts).items():
                (root / name).write_text(source)

        async def measure(app: App, prefix: str) -> float:
            assert app.state is not None
            before = await app.state.get("bench", prefix) or 0
            start = time.perf_counter()
            for i in range(n):
                app.emit(f"{prefix}.a", {"i": i})
            with anyio.fail_after(300):
                while (await app.state.get("bench", prefix) or 0) < before + n:
                    await anyio.sleep(0.002)
            return n / (time.perf_counter() - start)

        async def main() -> dict[str, list[float]]:
            results: dict[str, list[float]] = {name: [] for name in chains}
            async with App.from_directory(root, state=ms.MemoryStateAdapter()) as app:
                for prefix, _ in chains.values():
                    await measure(app, prefix)  # warm every step's workers
                for _ in range(rounds):
                    for name, (prefix, _) in chains.items():
                        results[name].append(await measure(app, prefix))
            return results

        results = anyio.run(main)
    print(
        f"\napp events: {n} emits at once through a chain of three event steps per round, {rounds} interleaved rounds"
    )
    width = max(len(name) for name in results)
    for name, runs in results.items():
        per_round = ", ".join(f"{r:,.0f}" for r in runs)
        print(f"  {name:<{width}}  chains/s {per_round}")
        print(
            f"  {'':<{width}}  range {_range(runs, ',.0f')} chains/s,"
            f" {_range([3 * r for r in runs], ',.0f')} deliveries/s"
        )


def run(options: Options) -> None:
    """Both halves, with every language whose interpreter is installed."""
    languages = ["python"] + [lang for lang in ("node", "ruby") if shutil.which(lang)]
    http(options, languages)
    events(options, languages)
