"""`switchboard eval`: every combination of prompt, model and router on the same calls, side by side.

Exit codes: 0 all gates passed; 1 a gate failed (--min-accuracy, --baseline); 2 bad usage, settings,
catalogue, prompt or dataset.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import report
from .cli import user_errors
from .engine import Clients, Engine, build_engine
from .eval_cache import AnswerCache, CachingRouter
from .evaluation import PRICES, DatasetError, evaluate, iter_cases, result_rows, score
from .llm_router import LLMRouter
from .routing import load_routing
from .settings import Settings

DEFAULT_CACHE = Path(".switchboard-cache/answers.sqlite")


class GateFailed(Exception):
    pass


@click.command("eval")
@click.argument("datasets", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-p", "--prompt", "prompts", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Prompt file; repeat to compare (default: SWITCHBOARD_PROMPT).")
@click.option("-m", "--model", "models", multiple=True, help="Model; repeat to compare (default: SWITCHBOARD_MODEL).")
@click.option("-r", "--router", "routers", multiple=True, type=click.Choice(["llm", "offline"]),
              help="Router; repeat to compare (default: as the service would choose).")
@click.option("-c", "--concurrency", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Calls decided at once.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 20),
              help="Decide each call N times and report consistency.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write results.json, report.md and report.html here.")
@click.option("--no-cache", is_flag=True, help="Ask the model again even for answers already cached.")
@click.option("--cache", "cache_path", default=DEFAULT_CACHE, show_default=True, type=click.Path(path_type=Path),
              help="Where model answers are cached.")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), help="Fail (exit 1) if any combination is below this.")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A results.json to compare with: fail (exit 1) if accuracy or any destination's recall drops "
                   "by more than --tolerance.")
@click.option("--tolerance", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="Allowed drop against --baseline.")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"model": [input_usd_per_1M, output_usd_per_1M]} to override the built-in price table.')
def eval_command(datasets: tuple[Path, ...], prompts: tuple[Path, ...], models: tuple[str, ...],
                 routers: tuple[str, ...], concurrency: int, repeat: int, out: Path | None, no_cache: bool,
                 cache_path: Path, min_accuracy: float | None, baseline: Path | None, tolerance: float,
                 prices: Path | None) -> None:
    """Measure prompts, models and routers against labelled recorded calls.

    \b
    Examples:
      switchboard eval datasets/sample.jsonl --router offline
      switchboard eval datasets/sample.jsonl -p prompts/route.md -p prompts/route-with-reason.md -o eval-out
      switchboard eval datasets/sample.jsonl --min-accuracy 0.9 --baseline eval-out/results.json
    """
    try:
        settings = Settings.from_env()
        price_table = {**PRICES, **{k: tuple(v) for k, v in json.loads(prices.read_text()).items()}} if prices \
            else PRICES
        doc = asyncio.run(_run(settings, list(datasets), prompts, models, routers, concurrency, repeat,
                               None if no_cache else cache_path, price_table))
    except (*user_errors(), DatasetError, ValueError) as exc:  # type: ignore[misc]
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(2)
    click.echo(report.terminal(doc["combinations"]))
    if out:
        for path in report.write(doc, out):
            click.echo(f"wrote {path}")
    try:
        gate(doc, min_accuracy, baseline, tolerance)
    except GateFailed as exc:
        click.secho(f"GATE FAILED: {exc}", fg="red", err=True)
        sys.exit(1)


async def _run(settings: Settings, datasets: list[Path], prompts: tuple[Path, ...], models: tuple[str, ...],
               routers: tuple[str, ...], concurrency: int, repeat: int, cache_path: Path | None,
               prices: dict[str, Any]) -> dict[str, Any]:
    total = sum(1 for _, case in iter_cases(datasets) if case.expected)
    if total == 0:
        raise DatasetError("no labelled calls in the dataset(s): label them first (switchboard label FILE)")
    combos: list[dict[str, Any]] = []
    cache = AnswerCache(cache_path) if cache_path else None
    clients: Clients | None = None
    try:
        for router in routers or (settings.router_choice()[0],):
            for prompt in (prompts or (settings.prompt,)) if router == "llm" else (settings.prompt,):
                for model in (models or (settings.model,)) if router == "llm" else (settings.model,):
                    combo_settings = settings.model_copy(update={"prompt": prompt, "model": model})
                    routing = load_routing(combo_settings)
                    if router == "llm" and clients is None:
                        clients = Clients.from_settings(settings)
                    engines = [build_engine(combo_settings, routing, clients, router_name=router)
                               for _ in range(repeat)]
                    if cache is not None:
                        for i, engine in enumerate(engines):
                            _with_cache(engine, cache, i)
                    name = "offline" if router == "offline" else f"{model} / {routing.prompt.name}"
                    started = time.monotonic()
                    results = await evaluate(engines, datasets, concurrency=concurrency,
                                             progress=_progress(name, total))
                    elapsed = time.monotonic() - started
                    labels = list(routing.catalogue.ids)
                    metrics = score(results, labels, model if router == "llm" else None, prices)
                    metrics["seconds"] = round(elapsed, 2)
                    combos.append({"name": name, "router": router, "model": model if router == "llm" else None,
                                   "prompt": routing.prompt.name if router == "llm" else None,
                                   "prompt_hash": routing.prompt.hash if router == "llm" else None,
                                   "metrics": metrics, "calls": result_rows(results)})
    finally:
        if clients is not None:
            await clients.close()
        if cache is not None:
            cache.close()
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "datasets": [str(d) for d in datasets], "combinations": combos,
            "best": combos[report.best_index(combos)]["name"]}


def _with_cache(engine: Engine, cache: AnswerCache, repeat_index: int) -> None:
    if isinstance(engine.router, LLMRouter):
        engine.decider.router = CachingRouter(engine.router, cache, repeat_index)


def _progress(name: str, total: int) -> Any:
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(done: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > (0.1 if tty else 5.0):
            last[0] = now
            bar = "#" * int(30 * done / total)
            end = "\n" if done == total else ("\r" if tty else "\n")
            sys.stderr.write(f"{name}: [{bar:<30}] {done}/{total}{end}")
            sys.stderr.flush()
    return show


def gate(doc: dict[str, Any], min_accuracy: float | None, baseline: Path | None, tolerance: float) -> None:
    problems = []
    for combo in doc["combinations"]:
        acc = combo["metrics"]["accuracy"]
        if min_accuracy is not None and acc < min_accuracy:
            problems.append(f"{combo['name']}: accuracy {acc:.3f} < --min-accuracy {min_accuracy}")
    if baseline is not None:
        base = json.loads(baseline.read_text())
        base_by_name = {c["name"]: c for c in base["combinations"]}
        best = next((c for c in base["combinations"] if c["name"] == base.get("best")), base["combinations"][0])
        for combo in doc["combinations"]:
            ref = base_by_name.get(combo["name"], best)
            m, r = combo["metrics"], ref["metrics"]
            if m["accuracy"] < r["accuracy"] - tolerance:
                problems.append(f"{combo['name']}: accuracy {m['accuracy']:.3f} dropped from {r['accuracy']:.3f}")
            for dest, v in m["per_destination"].items():
                old = r["per_destination"].get(dest)
                if old and old["support"] and v["support"] and v["recall"] < old["recall"] - tolerance:
                    problems.append(f"{combo['name']}: recall of {dest} {v['recall']:.3f} dropped from "
                                    f"{old['recall']:.3f}")
    if problems:
        raise GateFailed("; ".join(problems))
