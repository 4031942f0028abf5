"""`switchboard eval`: every combination of prompt, model and router on the same calls, side by side.

Exit codes: 0 all gates passed; 1 a gate failed (--min-accuracy, --baseline); 2 bad usage, settings,
catalogue, prompt, dataset, baseline or prices file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, ConfigDict, ValidationError

from app.cli import fail, settings_from, user_errors

DEFAULT_CACHE = Path(".switchboard-cache/answers.sqlite")
THRESHOLD_SETTINGS = {"offline": "SWITCHBOARD_OFFLINE_THRESHOLD", "llm": "SWITCHBOARD_MIN_CONFIDENCE"}


class GateFailed(Exception):
    pass


class _BaselineCombination(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    metrics: dict[str, Any]
    calls: list[dict[str, Any]] = []


class _Baseline(BaseModel):
    model_config = ConfigDict(extra="allow")
    combinations: list[_BaselineCombination]
    best: str | None = None


def read_baseline(path: Path) -> dict[str, Any]:
    """A results.json from an earlier `eval -o DIR`; anything else is exit 2 with what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        doc = _Baseline.model_validate(data)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--baseline {path}: cannot read it ({exc})")
    except json.JSONDecodeError as exc:
        fail(f"--baseline {path}: not JSON ({exc.msg}, line {exc.lineno}); give the results.json an earlier "
             "`switchboard eval -o DIR` wrote")
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"--baseline {path}: {'.'.join(map(str, err['loc'])) or 'the file'}: {err['msg']}; give the "
             "results.json an earlier `switchboard eval -o DIR` wrote")
    for combo in doc.combinations:
        if not isinstance(combo.metrics.get("accuracy"), int | float):
            fail(f"--baseline {path}: combination {combo.name!r} has no metrics.accuracy; give the results.json an "
                 "earlier `switchboard eval -o DIR` wrote")
    if not doc.combinations:
        fail(f"--baseline {path}: no combinations in it")
    return doc.model_dump()


def read_prices(path: Path) -> dict[str, tuple[float, ...]]:
    """{"model": [input, output] or [input, output, cached input]} in USD per million tokens."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--prices {path}: cannot read it ({exc})")
    except json.JSONDecodeError as exc:
        fail(f"--prices {path}: not JSON ({exc.msg}, line {exc.lineno})")
    shape = 'like {"gpt-4.1-mini": [0.40, 1.60, 0.10]} (USD per million input, output and cached input tokens)'
    if not isinstance(data, dict):
        fail(f"--prices {path}: must be a JSON object {shape}")
    out: dict[str, tuple[float, ...]] = {}
    for model, price in data.items():
        ok = isinstance(price, list) and len(price) in (2, 3) and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in price)
        if not ok:
            fail(f"--prices {path}: {model!r}: {price!r} is not 2 or 3 non-negative numbers; write it {shape}")
        out[model] = tuple(float(x) for x in price)
    return out


@click.command("eval")
@click.argument("datasets", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-p", "--prompt", "prompts", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Prompt file for the LLM router; repeat to compare.  [default: SWITCHBOARD_PROMPT]")
@click.option("-m", "--model", "models", multiple=True,
              help="Model for the LLM router; repeat to compare.  [default: SWITCHBOARD_MODEL]")
@click.option("-r", "--router", "routers", multiple=True, type=click.Choice(["llm", "offline"], case_sensitive=False),
              help="Router; repeat to compare.  [default: as the service would choose]")
@click.option("-c", "--concurrency", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Calls decided at once.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 20),
              help="Decide each call N times and report consistency.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write results.json, report.md and report.html here.")
@click.option("--no-cache", is_flag=True, help="Ask the model again even for answers already cached.")
@click.option("--cache", "cache_path", default=DEFAULT_CACHE, show_default=True, type=click.Path(path_type=Path),
              help="Where model answers are cached.")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), help="Gate: exit 1 if a combination is below this.")
@click.option("--lower-bound", is_flag=True, help="Apply --min-accuracy to the lower end of accuracy's 95% "
              "interval, not to the figure itself (the gate then means: surely at least this good).")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A results.json to compare with, call by call (fixed, broken, McNemar p); gate: exit 1 if "
                   "accuracy or any destination's recall drops by more than --tolerance.")
@click.option("--tolerance", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="Allowed drop against --baseline.")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"model": [input, output, cached input]} in USD per million tokens, over the built-in '
                   "table.")
@click.option("--fit-threshold", is_flag=True, help="Recommend the threshold (SWITCHBOARD_OFFLINE_THRESHOLD or "
              "SWITCHBOARD_MIN_CONFIDENCE) that maximises accuracy, or see --target-precision.")
@click.option("--target-precision", type=click.FloatRange(0, 1),
              help="With --fit-threshold: the threshold reaching this precision on answered calls that answers "
                   "the most calls.")
def eval_command(datasets: tuple[Path, ...], prompts: tuple[Path, ...], models: tuple[str, ...],
                 routers: tuple[str, ...], concurrency: int, repeat: int, out: Path | None, no_cache: bool,
                 cache_path: Path, min_accuracy: float | None, lower_bound: bool, baseline: Path | None,
                 tolerance: float, prices: Path | None, fit_threshold: bool, target_precision: float | None) -> None:
    """Measure prompts, models and routers against labelled recorded calls (JSONL, or a folder of .json).

    \b
    Examples:
      switchboard eval datasets/sample.jsonl -r offline
      switchboard eval datasets/sample.jsonl datasets/holdout.jsonl -r offline -o eval-out
      switchboard eval datasets/holdout.jsonl -r offline --baseline eval-out/results.json --min-accuracy 0.7
      switchboard eval datasets/sample.jsonl -r offline --fit-threshold
      OPENAI_API_KEY=sk-... switchboard eval datasets/sample.jsonl -r llm -r offline -p prompts/route.md \\
          -p prompts/route-with-reason.md -o eval-out
    """
    from rich.console import Console

    from app.evaluation import report
    from app.evaluation.run import PRICES, DatasetError

    settings = settings_from()
    chosen = tuple(r.lower() for r in routers) or (settings.router_choice()[0],)
    if "llm" not in chosen and (prompts or models):
        why = "only -r offline was asked for" if routers else \
            f"no LLM runs by default here ({settings.llm_configured_text()})"
        fail(f"-p/--prompt and -m/--model choose what the LLM router uses, but {why}; add -r llm (with "
             "OPENAI_API_KEY or OPENAI_BASE_URL set), or leave them out")
    if target_precision is not None and not fit_threshold:
        fail("--target-precision goes with --fit-threshold")
    price_table: dict[str, tuple[float, ...]] = {**PRICES, **(read_prices(prices) if prices else {})}
    base = read_baseline(baseline) if baseline else None
    console = Console(stderr=True)
    refusals: tuple[type[Exception], ...] = (*user_errors(), DatasetError)
    try:
        doc = asyncio.run(_run(settings, list(datasets), prompts, models, chosen, concurrency, repeat,
                               None if no_cache else cache_path, price_table, console))
    except refusals as exc:
        fail(str(exc))
    _compare(doc, base, str(baseline) if baseline else None)
    if fit_threshold:
        _fit(doc, target_precision)
    report.print_summary(doc, Console())
    if out:
        for path in report.write(doc, out):
            click.echo(f"wrote {path}")
    try:
        gate(doc, min_accuracy, lower_bound, base, tolerance)
    except GateFailed as exc:
        click.secho(f"GATE FAILED: {exc}", fg="red", err=True)
        raise SystemExit(1) from None


async def _run(settings: Any, datasets: list[Path], prompts: tuple[Path, ...], models: tuple[str, ...],
               routers: tuple[str, ...], concurrency: int, repeat: int, cache_path: Path | None,
               prices: dict[str, tuple[float, ...]], console: Any) -> dict[str, Any]:
    from app.engine import Clients, Engine, build_engine
    from app.evaluation import report
    from app.evaluation.cache import AnswerCache
    from app.evaluation.run import check_dataset, evaluate, result_rows, score
    from app.loading import load_routing

    first = load_routing(settings.model_copy(update={"prompt": prompts[0]}) if prompts else settings)
    total = check_dataset(datasets, first.catalogue.ids,
                          lambda text: click.secho(f"Warning: {text}", fg="yellow", err=True))
    combos: list[dict[str, Any]] = []
    cache = AnswerCache(cache_path) if cache_path else None
    clients: Clients | None = None
    try:
        for router in routers:
            for prompt in (prompts or (settings.prompt,)) if router == "llm" else (settings.prompt,):
                for model in (models or (settings.model,)) if router == "llm" else (settings.model,):
                    combo_settings = settings.model_copy(update={"prompt": prompt, "model": model})
                    routing = load_routing(combo_settings)
                    if router == "llm" and clients is None:
                        clients = Clients.from_settings(settings)
                    engines: list[Engine] = [build_engine(combo_settings, routing, clients, router_name=router)
                                             for _ in range(repeat)]
                    if cache is not None:
                        for i, engine in enumerate(engines):
                            _with_cache(engine, cache, i)
                    name = _unique("offline" if router == "offline" else f"{model} / {routing.prompt.name}",
                                   routing.prompt.hash, {c["name"] for c in combos})
                    started = time.monotonic()
                    with _progress(console, name, total) as tick:
                        results = await evaluate(engines, datasets, concurrency=concurrency, progress=tick)
                    threshold = settings.offline_threshold if router == "offline" else settings.min_confidence
                    metrics = score(results, list(routing.catalogue.ids), model if router == "llm" else None, prices,
                                    threshold_setting=THRESHOLD_SETTINGS[router], threshold=threshold)
                    metrics["seconds"] = round(time.monotonic() - started, 2)
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


def _unique(name: str, prompt_hash: str, taken: set[str]) -> str:
    """Combinations are compared by name: two prompt files with the same `name` header (an edited copy) get
    their content hash added, and anything still repeated a number."""
    if name not in taken:
        return name
    candidate = f"{name} ({prompt_hash[:6]})"
    n = 2
    while candidate in taken:
        candidate, n = f"{name} #{n}", n + 1
    return candidate


def _with_cache(engine: Any, cache: Any, repeat_index: int) -> None:
    from app.evaluation.cache import CachingRouter
    from app.routers.llm import LLMRouter

    if isinstance(engine.router, LLMRouter):
        engine.decider.router = CachingRouter(engine.router, cache, repeat_index)


class _progress:
    """A rich progress bar (calls done, rate, time left) on a terminal; one line per combination otherwise."""

    def __init__(self, console: Any, name: str, total: int) -> None:
        self.console, self.name, self.total = console, name, total
        self.started = time.monotonic()

    def __enter__(self) -> Callable[[int], None]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        if not self.console.is_terminal:
            self.bar = None
            return lambda done: None
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self.console,
                            transient=True)
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.total, rate="")

        def tick(done: int) -> None:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            assert self.bar is not None
            self.bar.update(task, completed=done, rate=f"{done / elapsed:.1f} calls/s")
        return tick

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        seconds = time.monotonic() - self.started
        self.console.print(f"{self.name}: {self.total} calls in {seconds:.1f} s", highlight=False)


def _compare(doc: dict[str, Any], baseline: dict[str, Any] | None, baseline_path: str | None) -> None:
    """Each combination against the baseline (the same name, else the baseline's best), and each against this
    run's best: calls fixed and broken, paired by call id, with the exact McNemar p-value."""
    from app.evaluation.run import compare

    combos = doc["combinations"]
    best = next(c for c in combos if c["name"] == doc["best"])
    for combo in combos:
        if combo is not best:
            combo["vs_best"] = compare(combo["calls"], best["calls"], best["name"])
        if baseline is not None:
            by_name = {c["name"]: c for c in baseline["combinations"]}
            ref = by_name.get(combo["name"]) or by_name.get(baseline.get("best") or "") or baseline["combinations"][0]
            if ref.get("calls"):
                combo["vs_baseline"] = compare(combo["calls"], ref["calls"], f"{baseline_path} ({ref['name']})")
            else:
                combo["vs_baseline"] = {"against": f"{baseline_path} ({ref['name']})", "fixed": None, "broken": None,
                                        "p_value": None, "verdict": "the baseline has no per-call results to pair"}


def _fit(doc: dict[str, Any], target_precision: float | None) -> None:
    from app.evaluation import statistics as stats
    from app.evaluation.run import CallResult, scored_calls

    for combo in doc["combinations"]:
        if not combo["metrics"].get("scores"):
            combo["fit"] = {"recommendation": None, "reason": "this router gave no scores (an LLM server without "
                            "log-probabilities)", "warning": None}
            continue
        results = [CallResult(**{k: v for k, v in c.items() if k in CallResult.__slots__}) for c in combo["calls"]]
        fit = stats.fit_threshold(scored_calls(results), target_precision)
        current = combo["metrics"]["scores"].get("current")
        if target_precision is None and fit.threshold is not None and current is not None:
            # A tie with the setting in use: keep it (ties otherwise go to the lowest threshold).
            now = stats.threshold_sweep(scored_calls(results), [current]).rows
            if now and fit.accuracy is not None and now[0].accuracy >= fit.accuracy - 1e-12:
                fit = dataclasses.replace(fit, threshold=current, answered=now[0].answered,
                                          accuracy_answered=now[0].accuracy_answered,
                                          reason=f"the current setting ({current:g}) is already among the most "
                                                 "accurate thresholds")
        setting = THRESHOLD_SETTINGS[combo["router"]]
        combo["fit"] = {**fit.__dict__, "setting": setting,
                        "recommendation": f"{setting}={fit.threshold:g}" if fit.threshold is not None else None}


def gate(doc: dict[str, Any], min_accuracy: float | None, lower_bound: bool, baseline: dict[str, Any] | None,
         tolerance: float) -> None:
    problems = []
    for combo in doc["combinations"]:
        m = combo["metrics"]
        acc = m["accuracy_ci"][0] if lower_bound else m["accuracy"]
        what = "accuracy's 95% lower bound" if lower_bound else "accuracy"
        if min_accuracy is not None and acc < min_accuracy:
            problems.append(f"{combo['name']}: {what} {acc:.3f} < --min-accuracy {min_accuracy}")
    if baseline is not None:
        base_by_name = {c["name"]: c for c in baseline["combinations"]}
        best = base_by_name.get(baseline.get("best") or "") or baseline["combinations"][0]
        for combo in doc["combinations"]:
            ref = base_by_name.get(combo["name"], best)
            m, r = combo["metrics"], ref["metrics"]
            if m["accuracy"] < r["accuracy"] - tolerance:
                problems.append(f"{combo['name']}: accuracy {m['accuracy']:.3f} dropped from {r['accuracy']:.3f}")
            for dest, v in m["per_destination"].items():
                old = (r.get("per_destination") or {}).get(dest)
                if old and old.get("support") and v["support"] and old.get("recall") is not None and \
                        v["recall"] is not None and v["recall"] < old["recall"] - tolerance:
                    problems.append(f"{combo['name']}: recall of {dest} {v['recall']:.3f} dropped from "
                                    f"{old['recall']:.3f}")
    if problems:
        raise GateFailed("; ".join(problems))
