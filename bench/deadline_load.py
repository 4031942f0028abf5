"""Deadline under load: does the service cut decisions whose model would still have answered in time?

    python bench/deadline_load.py                           # slow model (1.5-1.7 s), 2 s budget, 200 callers, 20 s
    python bench/deadline_load.py --scenario hang           # the model hangs instead (a hang storm)
    python bench/deadline_load.py --repo /work/before --runs 2

Starts the service (`python -m app serve` from --repo, one worker) and a fake model (tests/fake_openai.py in a
child process: each answer's latency drawn uniformly from [latency, latency + jitter], or a hang), both on
127.0.0.1. The callers' keep-alive connections are opened first (as Vapi's pool would have them), then each
caller posts a normal request, waits for the answer and posts the next, for --seconds. Latency is measured
here, outside the service, with aiohttp. Hedging and the breaker are off. The catalogue is the repo's own
without its `fallback`, so a timed-out decision answers `routing timed out`.

Prints, per run: answers, timeouts (and the earliest and median of their latencies), latency percentiles and
the maximum, answers later than budget + 100 ms and + 300 ms, the service's CPU per answer, and this driver's
own event-loop lag (large values mean the driver, not the service, added latency). Measures, never gates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TIMED_OUT = "routing timed out"
INTENTS = [
    [("user", "Hi, I was charged twice this month and I want a refund"), ("bot", "I can help with that.")],
    [("user", "my internet keeps dropping in the evening"), ("bot", "Let me look into that for you.")],
    [("user", "I want to cancel my service, I'm switching providers"), ("bot", "I'm sorry to hear that.")],
    [("user", "is there an outage in my area? the whole neighborhood is down"), ("bot", "One moment please.")],
]


# -- the fake model, in its own process ------------------------------------------------------------------

def run_fake(port: int) -> None:
    """Serve the fake; stdin lines `ok LATENCY JITTER` or `hang` switch its behaviour; EOF stops it."""
    sys.path.insert(0, str(ROOT))
    from tests.fake_openai import HANG, Behaviour, FakeOpenAI, answer

    mode: list[Any] = ["ok", 0.0, 0.0]

    def behaviour(request: dict[str, Any]) -> Behaviour:
        return HANG if mode[0] == "hang" else answer(latency=mode[1] + random.uniform(0, mode[2]))

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a hang storm leaves many sockets open here
    fake = FakeOpenAI()
    fake.keep_history = False
    fake.policy = behaviour
    fake.server.port = port
    fake.start()
    print(fake.server.port, flush=True)
    try:
        for line in sys.stdin:
            word, *numbers = line.split()
            mode[:] = [word, *(float(n) for n in numbers), 0.0, 0.0][:3]
            print("ok", flush=True)
    finally:
        fake.stop()


class Fake:
    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--fake", "--port", str(port)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.port = int(self.stdout.readline())
        self.base_url = f"http://{HOST}:{self.port}/v1"

    def set(self, *mode: object) -> None:
        self.stdin.write(" ".join(map(str, mode)) + "\n")
        self.stdin.flush()
        self.stdout.readline()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the service ------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_service(repo: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OPENAI_"))}
    environ.update(PYTHONPATH=str(repo), **env)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=repo, env=environ,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return proc, f"http://{HOST}:{port}"


def tail(log: Path) -> str:
    return log.read_text("utf-8", "replace")[-1500:]


async def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited at start-up: {await asyncio.to_thread(tail, log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"service did not start within 30 s: {await asyncio.to_thread(tail, log)}")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- the load ---------------------------------------------------------------------------------------------

class LagMonitor:
    """This driver's own event-loop lag, in ms."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append((time.perf_counter() - t0 - 0.01) * 1000)

    async def stop(self) -> dict[str, float]:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        return {"p99": round(pct(self.lags, 0.99), 1), "max": round(max(self.lags, default=0.0), 1)}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def one_run(args: argparse.Namespace, workdir: Path, transfer_request: Any) -> dict[str, Any]:
    catalogue = json.loads((args.repo / "destinations.json").read_text())
    catalogue.pop("fallback", None)
    (workdir / "destinations.json").write_text(json.dumps(catalogue))
    fake = await asyncio.to_thread(Fake, free_port())
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "load", "SWITCHBOARD_ROUTER": "llm",
           "SWITCHBOARD_TIMEOUT": str(args.budget), "SWITCHBOARD_BREAKER_FAILURES": "0",
           "SWITCHBOARD_HEDGE_DELAY": "0", "SWITCHBOARD_RELOAD_INTERVAL": "0", "SWITCHBOARD_LOG_FORMAT": "json",
           "SWITCHBOARD_DESTINATIONS": str(workdir / "destinations.json")}
    log = workdir / "service.log"
    proc, url = start_service(args.repo, env, log)
    bodies = [json.dumps(transfer_request(turns, call_id="load")).encode() for turns in INTENTS]
    try:
        await wait_ready(proc, url, log)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.callers + 50)) as session:
            async def post(i: int) -> tuple[float, dict[str, Any]]:
                t0 = time.perf_counter()
                try:
                    async with session.post(url + "/webhook", data=bodies[i % len(bodies)],
                                            headers={"content-type": "application/json"},
                                            timeout=aiohttp.ClientTimeout(total=args.budget * 3 + 5)) as r:
                        body = await r.json() if r.status == 200 else {"status": r.status}
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    body = {"status": 0, "error": type(exc).__name__}
                return time.perf_counter() - t0, body

            await asyncio.to_thread(fake.set, "ok", 0, 0)
            await asyncio.gather(*(post(i) for i in range(args.callers)))  # open the pool
            if args.scenario == "hang":
                await asyncio.to_thread(fake.set, "hang")
            else:
                await asyncio.to_thread(fake.set, "ok", args.latency, args.jitter)
            until = time.monotonic() + args.seconds

            async def caller(c: int) -> list[tuple[float, dict[str, Any]]]:
                out, n = [], c
                while time.monotonic() < until:
                    out.append(await post(n))
                    n += 1
                return out

            lag, cpu0 = LagMonitor(), cpu_seconds(proc.pid)
            answers = [a for c in await asyncio.gather(*(caller(c) for c in range(args.callers))) for a in c]
            driver_lag, service_cpu = await lag.stop(), cpu_seconds(proc.pid) - cpu0
    finally:
        await asyncio.to_thread(stop_service, proc)
        await asyncio.to_thread(fake.stop)
    latencies = [t for t, _ in answers]
    timed_out = [t for t, body in answers if body.get("error") == TIMED_OUT]
    other = [body for _, body in answers if "destination" not in body and body.get("error") != TIMED_OUT]
    budget = args.budget
    return {"answers": len(answers), "timeouts": len(timed_out),
            "timeout_share": f"{len(timed_out) / max(1, len(answers)):.1%}",
            "timeout_min_ms": round(min(timed_out) * 1000) if timed_out else None,
            "timeout_median_ms": round(statistics.median(timed_out) * 1000) if timed_out else None,
            "other_errors": len(other), "other_example": other[:1],
            "p50_ms": round(pct(latencies, 0.5) * 1000), "p99_ms": round(pct(latencies, 0.99) * 1000),
            "max_ms": round(max(latencies) * 1000),
            "within_budget_100": f"{sum(t <= budget + 0.1 for t in latencies) / len(latencies):.2%}",
            "later_than_budget_100": sum(t > budget + 0.1 for t in latencies),
            "later_than_budget_300": sum(t > budget + 0.3 for t in latencies),
            "service_cpu_ms_per_answer": round(service_cpu / max(1, len(answers)) * 1000, 2),
            "driver_lag_ms": driver_lag}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose app/ the service runs")
    parser.add_argument("--scenario", choices=("slow", "hang"), default="slow")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the load (at most 60)")
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--budget", type=float, default=2.0, help="SWITCHBOARD_TIMEOUT")
    parser.add_argument("--latency", type=float, default=1.5, help="the model's fastest answer, seconds")
    parser.add_argument("--jitter", type=float, default=0.2, help="added to each answer, uniformly 0..jitter")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--log", type=Path, help="keep the last run's service log here")
    parser.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake:
        run_fake(args.port)
        return
    args.seconds = min(args.seconds, 60.0)  # bounded: the machine is shared
    args.repo = args.repo.resolve()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.path.insert(0, str(args.repo))
    from tests.vapi_payloads import transfer_request  # the request builder of the code under test

    print(f"service code: {args.repo}/app, load average {os.getloadavg()[0]:.1f}", flush=True)
    import uvloop  # as the service runs: less overhead in this driver's own measurements

    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="deadline-load-") as workdir:
            result = uvloop.run(one_run(args, Path(workdir), transfer_request))
            if args.log:
                shutil.copy(Path(workdir) / "service.log", args.log)
        print(f"{args.scenario} run {n + 1}: {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
