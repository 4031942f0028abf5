"""Benchmark: the service against the same openai client calling the same fake model directly.

    python bench/run.py            # full run (about 2 minutes); prints a Markdown table
    python bench/run.py --smoke    # about 10 seconds; CI runs it to prove the script still works

The fake OpenAI-compatible server and the service (one uvicorn worker) run as separate processes on
loopback; this process drives them. Figures are ratios against the direct path measured in the same run,
because these machines are shared and their absolute speed varies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import openai  # noqa: E402

from app.engine import build_engine  # noqa: E402
from app.loading import load_routing  # noqa: E402
from app.routers.llm import Endpoint, LLMRouter, ServerTraits  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.vapi.conversation import extract, render  # noqa: E402
from app.vapi.messages import parse_request  # noqa: E402
from tests.service_process import ServiceProcess  # noqa: E402
from tests.vapi_payloads import transfer_request  # noqa: E402

CALLER = ["I was charged twice this month", "my internet keeps dropping in the evening", "I want to cancel",
          "is there an outage on my street", "I'm moving next month", "can I talk to a manager",
          "someone changed my password", "do you have faster plans", "the router light is red",
          "I need a payment plan", "yes that's right", "it's under my wife's name", "twelve Elm Street"]
ASSISTANT = ["I can help with that.", "Could you confirm the name on the account?", "Thank you.",
             "Let me look into that for you.", "Is this the best number to reach you?", "One moment please."]


def bodies(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        turns = []
        for t in range(rng.randint(10, 60)):
            turns.append(("user", rng.choice(CALLER)) if t % 2 else ("bot", rng.choice(ASSISTANT)))
        out.append(json.dumps(transfer_request(turns, call_id=f"bench-{i}")).encode())
    return out


def start_fake(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_openai", "--latency", str(latency)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def start_service(base_url: str, router: str = "llm") -> ServiceProcess:
    env = {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "bench", "SWITCHBOARD_ROUTER": router,
           "SWITCHBOARD_RELOAD_INTERVAL": "0", "SWITCHBOARD_TIMEOUT": "10", "SWITCHBOARD_HEDGE_DELAY": "0"}
    return ServiceProcess(env, ROOT / "bench/service.log")


async def drive(call: Any, items: list[Any], concurrency: int, seconds: float) -> dict[str, float]:
    """Run `call(item)` from `concurrency` workers for `seconds`; latency percentiles and rate."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.monotonic() < stop:
            item = items[next(counter) % len(items)]
            t0 = time.perf_counter()
            await call(item)
            latencies.append(time.perf_counter() - t0)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"n": len(latencies), "rate": len(latencies) / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000}


async def measure(base_url: str, service_url: str, payloads: list[bytes], requests: list[dict[str, Any]],
                  concurrency: int, seconds: float) -> dict[str, dict[str, float]]:
    """Three paths at the same concurrency, each warmed right before it is measured:
    - direct: the openai client as a developer would call the model (default client, chat.completions.create);
    - direct_same: the openai client configured as the service configures it (aiohttp transport, raw post);
    - service: webhooks through Switchboard, sent by a light aiohttp driver (the stand-in for Vapi)."""
    import aiohttp

    limits = httpx2.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    default_client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30,
                                        http_client=openai.DefaultAsyncHttpx2Client(limits=limits))
    same_client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30,
                                     http_client=openai.DefaultAioHttpClient(limits=limits))
    session = aiohttp.ClientSession(base_url=service_url, connector=aiohttp.TCPConnector(limit=concurrency * 2))

    async def direct(request: dict[str, Any]) -> None:
        response = await default_client.chat.completions.create(**request)
        json.loads(response.choices[0].message.content or "{}")

    async def direct_same(request: dict[str, Any]) -> None:
        response = await same_client.post("/chat/completions", body=request, cast_to=httpx2.Response)
        json.loads(response.json()["choices"][0]["message"]["content"])

    async def via_service(body: bytes) -> None:
        async with session.post("/webhook", data=body, headers={"content-type": "application/json"}) as response:
            answer = await response.json()
            assert response.status == 200 and "destination" in answer, answer

    out = {}
    try:
        for name, call, items in (("direct", direct, requests), ("direct_same", direct_same, requests),
                                  ("service", via_service, payloads)):
            await drive(call, items, concurrency, min(2.0, seconds))
            out[name] = await drive(call, items, concurrency, seconds)
    finally:
        await default_client.close()
        await same_client.close()
        await session.close()
    return out


def inside(service: ServiceProcess, n: int) -> dict[str, float]:
    """The service's own view of the last n decisions (its decision log): total and model time p50/p99."""
    rows = [json.loads(line) for line in service.log_path.read_text().splitlines()
            if line.startswith("{") and '"event": "decision"' in line][-n:]
    total = sorted(r["total_ms"] for r in rows)
    llm = sorted(r["llm_ms"] for r in rows)
    pick = lambda xs, q: xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")  # noqa: E731
    return {"total_p50": pick(total, 0.5), "total_p99": pick(total, 0.99), "llm_p50": pick(llm, 0.5),
            "llm_p99": pick(llm, 0.99)}


def model_requests(payloads: list[bytes]) -> list[dict[str, Any]]:
    """What the service sends the model for each body (built by the LLM router's own code, log-probabilities
    and all), so the direct path carries the same bytes and asks for the same work."""
    settings = Settings.from_env(env_file=None)
    routing = load_routing(settings)
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="bench")
    router = LLMRouter(Endpoint(client, settings.model), routing.prompt, routing.compiled)
    traits = ServerTraits()
    out = []
    for body in payloads:
        request = parse_request(json.loads(body)["message"])
        conv = extract(request, budget_chars=settings.conversation_chars)
        compiled = routing.compiled[routing.catalogue.ids]
        out.append(router._request(settings.model, compiled, compiled.messages(render(conv), conv.hint), traits))
    return out


def offline_rate(payloads: list[bytes], seconds: float) -> tuple[float, float]:
    settings = Settings.from_env(env_file=None)
    engine = build_engine(settings, load_routing(settings), None, router_name="offline")
    queries = [engine.query(parse_request(json.loads(b)["message"])) for b in payloads]
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for q in queries:
            engine.offline.rank(q)
        n += len(queries)
    rate = n / (time.perf_counter() - started)
    # the worst case named in the issue: a 40-turn call
    long_q = next(q for q in queries if len(q.conversation.turns) >= 40)
    t0 = time.perf_counter()
    for _ in range(200):
        engine.offline.rank(long_q)
    return rate, (time.perf_counter() - t0) / 200 * 1000


def run_once(latency: float, payloads: list[bytes], requests: list[dict[str, Any]], concurrency: int,
             seconds: float) -> dict[str, Any]:
    fake, base_url = start_fake(latency)
    service = start_service(base_url)
    try:
        paths = asyncio.run(measure(base_url, service.url, payloads, requests, concurrency, seconds))
        return {**paths, "rss_mb": service.peak_rss_mb(), "inside": inside(service, paths["service"]["n"])}
    finally:
        service.stop()
        assert fake.stdin is not None
        fake.stdin.close()
        fake.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a 10-second run that only proves the script works")
    parser.add_argument("--latency", type=float, default=0.3, help="the fake model's latency L, seconds")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=12.0, help="measuring time per phase")
    parser.add_argument("--rounds", type=int, default=3, help="repeat and report medians (shared, noisy machines)")
    args = parser.parse_args()
    if args.smoke:
        args.latency, args.concurrency, args.seconds, args.rounds = 0.05, 10, 1.0, 1
    payloads = bodies(200)
    requests = model_requests(payloads)
    lats, zeros = [], []
    for _ in range(args.rounds):
        lats.append(run_once(args.latency, payloads, requests, args.concurrency, args.seconds))
        zeros.append(run_once(0.0, payloads, requests, args.concurrency, args.seconds))
    rate, long_ms = offline_rate(payloads, 1.0 if args.smoke else 3.0)
    med = statistics.median

    def row(name: str, runs: list[dict[str, Any]], key: str, unit: str) -> tuple[str, ...]:
        cells: list[str] = [name, f"{med(r['service'][key] for r in runs):.1f}{unit}"]
        for ref in ("direct", "direct_same"):
            ratios = [r["service"][key] / r[ref][key] for r in runs]
            cells.append(f"{med(r[ref][key] for r in runs):.1f}{unit}")
            cells.append(f"**{med(ratios):.3f}** ({', '.join(f'{x:.2f}' for x in ratios)})")
        return tuple(cells)

    rows = [
        row(f"p50 latency, L={args.latency * 1000:.0f} ms, c={args.concurrency}", lats, "p50", " ms"),
        row("p99 latency, same", lats, "p99", " ms"),
        row(f"throughput, L=0, c={args.concurrency}", zeros, "rate", "/s"),
        ("service peak RSS", f"{max(r['rss_mb'] for r in lats + zeros):.0f} MB", "", "", "", ""),
        ("offline router", f"{rate:.0f} decisions/s", "", f"{long_ms:.2f} ms for a 40+ turn call", "", ""),
    ]
    print(f"| measure (median of {args.rounds}) | service | direct, default client | ratio (each round) "
          "| direct, client as the service sets it | ratio (each round) |\n|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    ins = {k: med(r["inside"][k] for r in lats) for k in lats[0]["inside"]}
    print(f"\nInside the service at L={args.latency * 1000:.0f} ms (its decision log): total p50 "
          f"{ins['total_p50']:.1f} / p99 {ins['total_p99']:.1f} ms, of which waiting for the model p50 "
          f"{ins['llm_p50']:.1f} / p99 {ins['llm_p99']:.1f} ms.")
    print(f"(requests measured per round: about {lats[0]['service']['n']} at L={args.latency * 1000:.0f} ms and "
          f"{zeros[0]['service']['n']} at L=0 through the service)")


if __name__ == "__main__":
    main()
