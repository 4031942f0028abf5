"""Evaluation: metrics against a hand-computed example, the cache, gates and their exit codes, reports."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.evaluation import CallResult, percentile, score
from tests.conftest import ROOT
from tests.fake_openai import allowed_ids, answer
from tests.vapi_payloads import transfer_request

SAMPLE = str(ROOT / "datasets/sample.jsonl")


def r(expected, predicted, ms=10.0, outcome="routed", failure=None):
    return CallResult("x", expected, predicted, outcome, ms, 100, 5, failure=failure)


def test_metrics_match_a_hand_computed_example():
    # a: 2 right, 1 -> b.  b: 1 right.  none: 1 right, 1 -> a.  one error (expected b).
    results = [r("a", "a", 10), r("a", "a", 20), r("a", "b", 30), r("b", "b", 40), r("none", "none", 50),
               r("none", "a", 60), r("b", "error", 70, "timeout", "timeout")]
    m = score(results, ["a", "b"], "gpt-4.1-mini")
    assert m["accuracy"] == pytest.approx(4 / 7)
    a, b, none = (m["per_destination"][k] for k in ("a", "b", "none"))
    # a: tp 2, fp 1 (none->a), fn 1 (a->b): P 2/3, R 2/3
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    # b: tp 1, fp 1 (a->b), fn 1 (b->error): P 1/2, R 1/2
    assert (b["precision"], b["recall"], b["f1"]) == (0.5, 0.5, 0.5)
    # none: tp 1, fp 0, fn 1: P 1, R 1/2, F1 2/3
    assert (m["none_precision"], m["none_recall"], none["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)
    assert m["confusion"]["a"]["b"] == 1 and m["confusion"]["none"]["a"] == 1 and m["confusion"]["b"]["error"] == 1
    assert (m["errors"], m["timeouts"]) == (1, 1)
    assert m["latency_ms"] == {"p50": 40.0, "p95": pytest.approx(67.0), "max": 70.0}
    assert m["tokens"] == {"prompt": 700, "completion": 35}
    assert m["cost_usd"] == pytest.approx((700 * 0.40 + 35 * 1.60) / 1e6)


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 0.5) == 2.5 and percentile([], 0.9) == 0.0


def run(args, env=None):
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def test_offline_eval_on_the_sample_dataset_writes_reports(tmp_path):
    result = run(["eval", SAMPLE, "--router", "offline", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out/results.json").read_text())
    m = doc["combinations"][0]["metrics"]
    assert m["calls"] == 66 and 0 < m["accuracy"] <= 1
    acc = f"{100 * m['accuracy']:.1f}%"
    assert acc in result.output
    assert acc in (tmp_path / "out/report.md").read_text()
    page = (tmp_path / "out/report.html").read_text()
    assert acc in page and "<table class='confusion'>" in page and "rgba(" in page and "<script" not in page


def test_gates_and_exit_codes(tmp_path):
    out = tmp_path / "base"
    assert run(["eval", SAMPLE, "-r", "offline", "-o", str(out)]).exit_code == 0
    assert run(["eval", SAMPLE, "-r", "offline", "--min-accuracy", "0.5"]).exit_code == 0
    failed = run(["eval", SAMPLE, "-r", "offline", "--min-accuracy", "0.999"])
    assert failed.exit_code == 1
    assert run(["eval", SAMPLE, "-r", "offline", "--baseline", str(out / "results.json")]).exit_code == 0
    better = json.loads((out / "results.json").read_text())
    better["combinations"][0]["metrics"]["accuracy"] = 1.0
    (out / "better.json").write_text(json.dumps(better))
    assert run(["eval", SAMPLE, "-r", "offline", "--baseline", str(out / "better.json")]).exit_code == 1
    recall = json.loads((out / "results.json").read_text())
    per = recall["combinations"][0]["metrics"]["per_destination"]
    weakest = min((d for d in per if per[d]["support"]), key=lambda d: per[d]["recall"])
    assert per[weakest]["recall"] < 0.98  # the baseline claims this destination used to be perfect
    per[weakest]["recall"] = 1.0
    (out / "recall.json").write_text(json.dumps(recall))
    assert run(["eval", SAMPLE, "-r", "offline", "--baseline", str(out / "recall.json")]).exit_code == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "expected": "billing"}\n')
    usage = run(["eval", str(bad), "-r", "offline"])
    assert usage.exit_code == 2 and "bad.jsonl:1: payload: Field required" in usage.output


def oracle(request):
    """A crude deterministic stand-in for a model, always within the allowed ids."""
    text = request["messages"][-1]["content"].lower()
    chosen = "none" if "charg" in text else "tech_support" if "internet" in text else "front_desk"
    return answer(chosen if chosen in allowed_ids(request) else "none")


def test_llm_eval_uses_the_cache_and_compares_prompts(tmp_path, fake):
    fake.policy = oracle
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k"}
    cache = str(tmp_path / "cache.sqlite")
    args = ["eval", SAMPLE, "-p", str(ROOT / "prompts/route.md"), "-p", str(ROOT / "prompts/route-with-reason.md"),
            "--cache", cache, "-c", "16", "-o", str(tmp_path / "o")]
    first = run(args, env)
    assert first.exit_code == 0, first.output
    assert len(fake.requests) == 2 * 66
    doc = json.loads((tmp_path / "o/results.json").read_text())
    assert [c["prompt"] for c in doc["combinations"]] == ["route", "route-with-reason"]
    assert doc["combinations"][0]["metrics"]["tokens"]["prompt"] == 321 * 66
    again = run(args, env)
    assert again.exit_code == 0 and len(fake.requests) == 2 * 66  # every answer came from the cache
    doc2 = json.loads((tmp_path / "o/results.json").read_text())
    assert doc2["combinations"][0]["metrics"]["cached_calls"] == 66
    assert doc2["combinations"][0]["metrics"]["accuracy"] == doc["combinations"][0]["metrics"]["accuracy"]
    run([*args, "--no-cache"], env)
    assert len(fake.requests) == 4 * 66


def billing_calls(tmp_path, n):
    rows = [json.dumps({"id": f"c{i}", "expected": "billing", "payload": transfer_request([("user", "bill")])})
            for i in range(n)]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(rows) + "\n")
    return data


def test_repeat_measures_consistency(tmp_path, fake):
    flip = iter(range(10_000))
    lock = threading.Lock()

    def flaky(request):
        with lock:
            n = next(flip)
        return answer("billing" if n % 2 else "sales")

    fake.policy = flaky
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k"}
    out = tmp_path / "o"
    result = run(["eval", str(billing_calls(tmp_path, 4)), "--repeat", "2", "-c", "1", "--no-cache", "-o", str(out)],
                 env)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "results.json").read_text())["combinations"][0]["metrics"]
    assert m["consistency"] == 0.0  # every call got billing once and sales once


@pytest.mark.parametrize("concurrency", [1, 20])
def test_eval_runs_calls_concurrently(tmp_path, fake, concurrency):
    fake.default = answer("billing", latency=0.2)
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k"}
    data = billing_calls(tmp_path, 10 if concurrency == 1 else 40)
    assert run(["eval", str(data), "-c", str(concurrency), "--no-cache"], env).exit_code == 0
    if concurrency == 1:
        assert fake.max_in_flight == 1
    else:  # 20 workers overlap their 200 ms waits
        assert fake.max_in_flight >= 15, fake.max_in_flight


def test_directory_dataset(tmp_path):
    d = tmp_path / "calls"
    d.mkdir()
    for i, line in enumerate((ROOT / "datasets/sample.jsonl").read_text().splitlines()[:5]):
        (d / f"{i}.json").write_text(line)
    result = run(["eval", str(d), "-r", "offline", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0
    assert json.loads((tmp_path / "o/results.json").read_text())["combinations"][0]["metrics"]["calls"] == 5
