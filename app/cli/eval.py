"""`switchboard eval`: every combination of prompt, model and router on the same calls, side by side.

Exit codes: 0 all gates passed; 1 a gate failed (--min-accuracy, --baseline); 2 bad usage, settings,
catalogue, prompt, dataset, baseline or prices file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli import catalogue_option, fail, settings_from
from app.routers.registry import ROUTERS, spec_for

if TYPE_CHECKING:
    from app.evaluation.results import CombinationResult, RunResult

DEFAULT_CACHE = Path(".switchboard-cache/answers.sqlite")
PROMPT_FLAG = "-p/--prompt"  # names the flag in an error about a prompt file it gave


def _read_baseline(path: Path) -> RunResult:
    """A results.json from an earlier `eval -o DIR`; anything else is exit 2 with what is wrong."""
    from app.evaluation.errors import EvaluationError
    from app.evaluation.results import read_results

    try:
        return read_results(path)
    except EvaluationError as exc:
        fail(f"--baseline {exc}")


def _read_prices(path: Path) -> dict[str, tuple[float, ...]]:
    from app.evaluation.errors import EvaluationError
    from app.evaluation.score import read_prices

    try:
        return read_prices(path)
    except EvaluationError as exc:
        fail(f"--prices {exc}")


@click.command("eval")
@click.argument("datasets", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-p", "--prompt", "prompts", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Prompt file for the LLM router; repeat to compare.  [default: SWITCHBOARD_PROMPT]")
@catalogue_option
@click.option("-m", "--model", "models", multiple=True,
              help="Model for the LLM router; repeat to compare.  [default: SWITCHBOARD_MODEL]")
@click.option("-r", "--router", "routers", multiple=True, type=click.Choice(list(ROUTERS), case_sensitive=False),
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
@click.option("--min-accuracy", type=click.FloatRange(0, 1),
              help="Gate: exit 1 if a combination's answered accuracy (what callers got) is below this.")
@click.option("--lower-bound", is_flag=True, help="Apply --min-accuracy to the lower end of accuracy's 95% "
              "interval, not to the figure itself (the gate then means: surely at least this good).")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A results.json to compare with, call by call (fixed, broken, McNemar p); gate: exit 1 if "
                   "answered accuracy or any destination's recall drops by more than --tolerance.")
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
def eval_command(datasets: tuple[Path, ...], prompts: tuple[Path, ...], catalogue: Path | None, models: tuple[str, ...],
                 routers: tuple[str, ...], concurrency: int, repeat: int, out: Path | None, no_cache: bool,
                 cache_path: Path, min_accuracy: float | None, lower_bound: bool, baseline: Path | None,
                 tolerance: float, prices: Path | None, fit_threshold: bool, target_precision: float | None) -> None:
    """Measure prompts, models and routers against labelled recorded calls (JSONL, or a folder of .json).

    Each call is decided at its own timestamp and scored by what the caller got (after business hours, earlier
    failed transfers, the fallback and low confidence); the router's own pick is reported beside it.

    \b
    Examples:
      switchboard eval datasets/sample.jsonl -r offline
      switchboard eval datasets/sample.jsonl datasets/holdout.jsonl -r offline -o eval-out
      switchboard eval datasets/holdout.jsonl -r offline --baseline eval-out/results.json --min-accuracy 0.7
      switchboard eval datasets/sample.jsonl -r offline --fit-threshold
      switchboard eval datasets/sample.jsonl -r offline --catalogue destinations.json
      OPENAI_API_KEY=sk-... switchboard eval datasets/sample.jsonl -r llm -r offline -p prompts/route.md \\
          -p prompts/route-with-reason.md -o eval-out
    """
    from rich.console import Console

    from app.evaluation import report
    from app.evaluation.compare import GateFailed, compare_run, fit_thresholds, gate
    from app.evaluation.score import PRICES

    settings = settings_from(destinations=catalogue)
    chosen = tuple(r.lower() for r in routers) or (settings.router_choice()[0],)
    if not any(spec_for(r).capabilities.calls_model for r in chosen) and (prompts or models):
        why = "only -r offline was asked for" if routers else \
            f"no LLM runs by default here ({settings.llm_configured_text()})"
        fail(f"-p/--prompt and -m/--model choose what the LLM router uses, but {why}; add -r llm (with "
             "OPENAI_API_KEY or OPENAI_BASE_URL set), or leave them out")
    if target_precision is not None and not fit_threshold:
        fail("--target-precision goes with --fit-threshold")
    price_table: dict[str, tuple[float, ...]] = {**PRICES, **(_read_prices(prices) if prices else {})}
    base = _read_baseline(baseline) if baseline else None
    console = Console(stderr=True)
    run = asyncio.run(_run(settings, list(datasets), prompts, models, chosen, concurrency, repeat,
                           None if no_cache else cache_path, price_table, console))
    compare_run(run, base, str(baseline) if baseline else None)
    if fit_threshold:
        fit_thresholds(run, target_precision)
    report.print_summary(run, Console())
    if out:
        for path in report.write(run, out):
            click.echo(f"wrote {path}")
    try:
        gate(run, min_accuracy, lower_bound, base, tolerance)
    except GateFailed as exc:
        click.secho(f"GATE FAILED: {exc}", fg="red", err=True)
        raise SystemExit(1) from None


async def _run(settings: Any, datasets: list[Path], prompts: tuple[Path, ...], models: tuple[str, ...],
               routers: tuple[str, ...], concurrency: int, repeat: int, cache_path: Path | None,
               prices: dict[str, tuple[float, ...]], console: Any) -> RunResult:
    from app.engine import Clients, Engine, build_engine
    from app.evaluation.cache import AnswerCache, caching
    from app.evaluation.results import CombinationResult, RunResult, best_index
    from app.evaluation.run import check_dataset, evaluate
    from app.evaluation.score import score
    from app.loading import load_routing

    first = load_routing(settings.with_prompt(prompts[0], PROMPT_FLAG) if prompts else settings)
    total = check_dataset(datasets, first.catalogue.ids,
                          lambda text: click.secho(f"Warning: {text}", fg="yellow", err=True))
    combos: list[CombinationResult] = []
    cache = AnswerCache(cache_path) if cache_path else None
    clients: Clients | None = None
    try:
        for router in routers:
            spec = spec_for(router)
            calls_model = spec.capabilities.calls_model  # one run per prompt and model
            setting, threshold = spec.threshold(settings) if spec.threshold else (None, None)
            for prompt in prompts if calls_model and prompts else (None,):
                for model in (models or (settings.model,)) if calls_model else (settings.model,):
                    prompted = settings if prompt is None else settings.with_prompt(prompt, PROMPT_FLAG)
                    combo_settings = prompted.model_copy(update={"model": model})
                    routing = load_routing(combo_settings)
                    if calls_model and clients is None:
                        clients = Clients.from_settings(settings)
                    engines: list[Engine] = [build_engine(combo_settings, routing, clients, router_name=router,
                                                          wrap=caching(cache, i) if cache is not None else None)
                                             for i in range(repeat)]
                    name = _unique(f"{model} / {routing.prompt.name}" if calls_model else router,
                                   routing.prompt.hash, {c.name for c in combos})
                    started = time.monotonic()
                    with _progress(console, name, total) as tick:
                        results = await evaluate(engines, datasets, concurrency=concurrency, progress=tick)
                    metrics = score(results, list(routing.catalogue.ids), model if calls_model else None, prices,
                                    threshold_setting=setting, threshold=threshold)
                    metrics.seconds = round(time.monotonic() - started, 2)
                    combos.append(CombinationResult(name, router, model if calls_model else None,
                                                    routing.prompt.name if calls_model else None,
                                                    routing.prompt.hash if calls_model else None, metrics, results))
    finally:
        if clients is not None:
            await clients.close()
        if cache is not None:
            cache.close()
    return RunResult(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), [str(d) for d in datasets], combos,
                     combos[best_index(combos)].name)


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
