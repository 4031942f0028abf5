"""Chaos run: attacks on the real service, each against a fresh service process, measured from outside.

    python bench/chaos.py                          # every attack, full length (about 9 minutes)
    python bench/chaos.py --smoke                  # all but one, shortened: well under 90 s (for CI)
    python bench/chaos.py --repo /work/before      # run the service from another checkout
    python bench/chaos.py --only hang-storm --only slow-body --json out.json --logs chaos-logs

Each attack starts the service (`python -m app serve --port P`, cwd and PYTHONPATH set to --repo, settings
in SWITCHBOARD_* variables) and, when the attack needs a model, `bench/chaos_fake.py` (a fake
OpenAI-compatible server whose behaviour is switched mid-run over `POST /control`), both as separate
processes on 127.0.0.1. Latency is measured here, outside the service, with aiohttp; raw-socket attacks use
asyncio streams. The service's RSS is sampled from /proc every 100 ms while an attack runs, and once more a
few seconds after its connections are closed.

Some attacks bring what they attack: the model's hostile answers are modes of the fake (a fenced answer
padded with spaces, a completion of many megabytes, a body that never ends, log-probabilities with bad bytes,
NaN or the wrong spelling); the catalogue attacks write their own catalogue (300 to 3,000 generated entries
with business hours, or a named pipe) in a temporary directory; full-disk mounts a 64 KiB tmpfs for the
recordings (root needed: without it the attack is reported as skipped, with why) and unmounts it after;
database-outage starts a throwaway PostgreSQL with tests/postgres.py (skipped, saying why, where it is not
installed) and stops and starts it mid-run. report-flood's 50 clients run in a process of their own (this
script with --flood-worker), so that the flood does not slow the event loop that times the normal callers.
Every attack's embedded store (SQLite) is in its own temporary folder. The list of attacks is at the end of
--help.

Output: one Markdown table on stdout (one row per attack), then what a good result would be for each.
The script measures and never gates: the exit code is 0 unless the script itself fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import datetime as dt
import errno
import functools
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SECRET = "s3cret"
INTENTS = [
    [("user", "Hi, I was charged twice this month and I want a refund"), ("bot", "I can help with that.")],
    [("user", "my internet keeps dropping in the evening"), ("bot", "Let me look into that for you.")],
    [("user", "I want to cancel my service, I'm switching providers"), ("bot", "I'm sorry to hear that.")],
    [("user", "is there an outage in my area? the whole neighborhood is down"), ("bot", "One moment please.")],
    [("user", "I'm moving next month, can you transfer my service"), ("bot", "Sure.")],
    [("user", "can I speak to a real person, I have a complaint"), ("bot", "Of course.")],
]

T = TypeVar("T")
transfer_request: Callable[..., dict[str, Any]]  # tests/vapi_payloads.py of --repo, imported in main()


# -- results ----------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    status: int  # 0: no HTTP answer (connection error or client timeout)
    latency: float  # seconds, until the whole answer was read (or the error)
    body: Any = None
    error: str | None = None

    @property
    def has_destination(self) -> bool:
        return self.status == 200 and isinstance(self.body, dict) and "destination" in self.body


@dataclass
class Result:
    name: str
    budget: float
    good: str
    requests: int = 0
    raw: int = 0  # raw-socket connections (and abandoned requests): not in the latency columns
    non200: int = 0
    conn_errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    mem_before: float = float("nan")
    mem_peak: float = float("nan")
    mem_after: float = float("nan")
    check: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)
    finished: bool = True
    error: str | None = None
    alive_at_end: bool = True
    skipped: str = ""  # why the attack could not run here (it was not run)
    stopped: str = ""
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> Outcome:
        self.requests += 1
        self.latencies.append(outcome.latency)
        key = str(outcome.status) if outcome.status else (outcome.error or "error")
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if outcome.status != 200:
            self.non200 += 1
        if outcome.status == 0:
            self.conn_errors += 1
        return outcome


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.0f} ms"


def statuses(outcomes: list[Outcome]) -> str:
    counts = Counter(str(o.status) if o.status else (o.error or "error") for o in outcomes)
    return ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "none"


# -- processes ------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def service_env(repo: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OPENAI_"))}
    env.update(PYTHONPATH=str(repo), **extra)
    return env


def verify_code(repo: Path) -> str:
    """Which app package `python -m app` imports with the service's cwd and environment."""
    out = subprocess.run([sys.executable, "-c", "import app; print(app.__file__)"], cwd=repo,
                         env=service_env(repo, {}), capture_output=True, text=True, timeout=60, check=True)
    path = out.stdout.strip()
    if not Path(path).resolve().is_relative_to((repo / "app").resolve()):
        raise SystemExit(f"--repo {repo}: `python -m app` would import {path}, not {repo}/app")
    return path


def read_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def wait_exit(proc: subprocess.Popen[Any], timeout: float) -> str:
    """Terminate, then kill after `timeout`; says which it took."""
    if proc.poll() is not None:
        return f"had exited (rc {proc.returncode})"
    proc.terminate()
    try:
        await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        return "terminated"
    except TimeoutError:
        proc.kill()
        await asyncio.to_thread(proc.wait)
        return f"killed after {timeout:.0f} s"


def spawn(argv: list[str], cwd: Path, env: dict[str, str], log_path: Path,
          preexec: Callable[[], None] | None) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                preexec_fn=preexec)


def spawn_fake(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "chaos_fake.py"), "--port", str(port)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


class Service:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://{HOST}:{port}"

    @classmethod
    async def start(cls, repo: Path, env: dict[str, str], log_path: Path, nofile: int | None = None) -> Service:
        port = free_port()

        def limit_fds() -> None:  # runs in the child, before exec: the soft limit only
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

        proc = spawn([sys.executable, "-m", "app", "serve", "--port", str(port)], repo, service_env(repo, env),
                     log_path, limit_fds if nofile is not None else None)
        service = cls(proc, port, log_path)
        try:
            await service._wait_ready()
        except BaseException:
            await wait_exit(proc, 5)
            raise
        return service

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"service exited at start-up: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"service did not start within 30 s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        return read_rss_mb(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> list[str]:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace").splitlines()

    def log_tail(self) -> str:
        return self.log_path.read_text("utf-8", "replace")[-1500:]

    async def stop(self, timeout: float) -> str:
        return await wait_exit(self.proc, timeout)


class Fake:
    """bench/chaos_fake.py in its own process."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port
        self.base_url = f"http://{HOST}:{port}/v1"
        self.session = aiohttp.ClientSession(f"http://{HOST}:{port}")

    @classmethod
    async def start(cls, port: int) -> Fake:
        proc = spawn_fake(port)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            return cls(proc, int(line))
        except BaseException:
            proc.kill()
            proc.wait()
            raise

    async def control(self, mode: str | None = None, latency: float | None = None, **more: Any) -> dict[str, Any]:
        """Switch the fake's behaviour; `more`: content, size, variant (see bench/chaos_fake.py)."""
        body = {k: v for k, v in (("mode", mode), ("latency", latency), *more.items()) if v is not None}
        method = "POST" if body else "GET"
        async with self.session.request(method, "/control", json=body or None) as r:
            data: dict[str, Any] = await r.json()
            return data

    async def count(self) -> int:
        return int((await self.control())["requests"])

    async def stop(self) -> None:
        await self.session.close()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 5)
        except TimeoutError:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)


class LagMonitor:
    """This process's own event-loop lag: large values mean the driver, not the service, added latency."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append((time.perf_counter() - t0 - 0.01) * 1000)

    def start(self) -> LagMonitor:
        self._task = asyncio.create_task(self._loop())
        return self

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return {"p99": round(pct(self.lags, 0.99), 1), "max": round(max(self.lags, default=0.0), 1)}


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.samples.append(read_rss_mb(self.pid))
            await asyncio.sleep(0.1)

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._loop())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- traffic --------------------------------------------------------------------------------------------

def normal_body(i: int, call: str = "chaos") -> bytes:
    return json.dumps(transfer_request(INTENTS[i % len(INTENTS)], call_id=f"{call}-{i}")).encode()


def head(port: int, length: int, headers: dict[str, str] | None = None) -> bytes:
    lines = ["POST /webhook HTTP/1.1", f"Host: {HOST}:{port}", "Content-Type: application/json",
             f"Content-Length: {length}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def closed_after(reader: asyncio.StreamReader, t0: float, until: float) -> tuple[float | None, bytes]:
    """Read until the server closes the connection: (seconds since t0, first bytes it sent), or None at `until`."""
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.0, until - time.monotonic()))
            if not chunk:
                return time.monotonic() - t0, data
            data += chunk[: max(0, 200 - len(data))]
    except TimeoutError:
        return None, data
    except OSError:
        return time.monotonic() - t0, data


@dataclass
class Ctx:
    service: Service
    fake: Fake | None
    session: aiohttp.ClientSession  # pooled keep-alive connections
    fresh: aiohttp.ClientSession  # a new connection per request, as a new caller would open
    result: Result
    smoke: bool
    repo: Path
    log_offset: int
    sockets: list[asyncio.StreamWriter] = field(default_factory=list)
    finalize: Callable[[Result], str] | None = None
    after: Callable[[], Awaitable[None]] | None = None  # run after the settle, before `finalize` (e.g. /metrics)

    def pick(self, full: float, smoke: float) -> float:
        return smoke if self.smoke else full

    @property
    def model(self) -> Fake:
        assert self.fake is not None, "this attack needs the fake model"
        return self.fake

    @property
    def fallback_destination(self) -> Any:
        catalogue = json.loads((self.repo / "destinations.json").read_text())
        return next(d["destination"] for d in catalogue["destinations"] if d["id"] == catalogue["fallback"])

    def routed(self, outcome: Outcome) -> bool:
        """200, with a destination that is not the catalogue's fallback."""
        return outcome.has_destination and outcome.body["destination"] != self.fallback_destination

    async def post(self, body: bytes, headers: dict[str, str] | None = None, *, fresh: bool = False,
                   record: bool = True, timeout: float | None = None) -> Outcome:
        session = self.fresh if fresh else self.session
        limit = timeout or self.result.budget * 3 + 5
        t0 = time.perf_counter()
        try:
            async with session.post(self.service.url + "/webhook", data=body, timeout=aiohttp.ClientTimeout(
                    total=limit), headers={"content-type": "application/json", **(headers or {})}) as r:
                raw, status = await r.read(), r.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            outcome = Outcome(0, time.perf_counter() - t0, error=type(exc).__name__)
        else:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw[:200].decode("utf-8", "replace")
            outcome = Outcome(status, time.perf_counter() - t0, parsed)
        return self.result.add(outcome) if record else outcome

    async def get(self, path: str) -> Any:
        async with self.session.get(self.service.url + path, timeout=aiohttp.ClientTimeout(total=30)) as r:
            return await r.json()

    async def breaker(self) -> str:
        try:
            return str((await self.get("/healthz")).get("breaker"))
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return f"unreadable ({type(exc).__name__})"

    async def open_raw(self, timeout: float = 10) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.service.port), timeout)
        self.sockets.append(writer)
        return reader, writer

    def close_sockets(self) -> None:
        for writer in self.sockets:
            with contextlib.suppress(Exception):
                writer.close()
        self.sockets.clear()

    def log(self) -> list[str]:
        return self.service.log_since(self.log_offset)


async def periodic(ctx: Ctx, interval: float, until: float, headers: dict[str, str] | None = None,
                   fresh: bool = True, call: str = "real") -> list[Outcome]:
    """A caller posting a normal request every `interval` s (not waiting for the previous answer)."""
    outcomes: list[Outcome] = []

    async def one(i: int) -> None:
        outcomes.append(await ctx.post(normal_body(i, call), headers, fresh=fresh))

    async with asyncio.TaskGroup() as tg:
        i = 0
        while time.monotonic() < until:
            tg.create_task(one(i))
            i += 1
            await asyncio.sleep(interval)
    return outcomes


async def continuous(ctx: Ctx, until: float, body: Callable[[int], bytes], record: bool = True) -> list[Outcome]:
    outcomes, i = [], 0
    while time.monotonic() < until:
        outcomes.append(await ctx.post(body(i), record=record))
        i += 1
    return outcomes


def ok_count(outcomes: list[Outcome]) -> str:
    return f"{sum(o.has_destination for o in outcomes)}/{len(outcomes)}"


def log_stats(lines: list[str]) -> dict[str, Any]:
    errors = [ln for ln in lines if '"level": "error"' in ln or '"level": "critical"' in ln
              or ln.startswith(("ERROR", "CRITICAL"))]
    unusual = Counter(re.sub(r'"(ts|request_id)": [^,}]+(, )?', "", ln)[:300] for ln in lines
                      if not ln.startswith((" ", "\t")) and (not ln.startswith("{") or '"level": "info"' not in ln))
    return {"lines": len(lines), "tracebacks": sum(ln.startswith("Traceback") for ln in lines),
            "errors": len(errors), "excerpt": [f"{n}× {ln}" for ln, n in unusual.most_common(8)]}


def log_words(log: dict[str, Any]) -> str:
    return f"log: {log.get('lines', 0)} lines, {log.get('tracebacks', 0)} Traceback, {log.get('errors', 0)} error-level"


# -- the attacks ----------------------------------------------------------------------------------------

async def hang_storm(ctx: Ctx) -> None:
    # Open the 200 keep-alive connections first, as Vapi's pool would have them: otherwise this driver's own
    # connection set-up (200 connects in one loop) is measured as the service's latency in the first wave.
    await ctx.model.control("ok")
    await asyncio.gather(*(ctx.post(normal_body(i, "warm"), record=False) for i in range(200)))
    await ctx.model.control("hang")
    until = time.monotonic() + ctx.pick(30, 3)
    count0 = await ctx.model.count()

    callers = [continuous(ctx, until, lambda n, i=i: normal_body(i * 100_000 + n, "storm")) for i in range(200)]
    outcomes = [o for c in await asyncio.gather(*callers) for o in c]
    budget = ctx.result.budget
    within = sum(o.latency <= budget + 0.1 for o in outcomes)
    late = sum(o.latency > budget + 0.3 for o in outcomes)
    ctx.result.check = (f"within {budget + 0.1:.1f} s: {within / max(1, len(outcomes)):.2%}; later than "
                        f"{budget + 0.3:.1f} s: {late}; with a destination: {ok_count(outcomes)}; "
                        f"model requests: {await ctx.model.count() - count0}")
    inside = [json.loads(ln)["total_ms"] for ln in ctx.log() if ln.startswith("{") and '"decision"' in ln]
    ctx.finalize = lambda r: (f"{r.check}; the service's own total_ms max {max(inside, default=0):.0f}; this "
                              f"driver's event-loop lag max {r.details['driver_lag_ms']['max']:.0f} ms")


async def breaker_hung_probe(ctx: Ctx) -> None:
    fake, r = ctx.model, ctx.result
    await fake.control("500")
    for i in range(3):
        await ctx.post(normal_body(i, "five-hundred"))
    after_500 = await ctx.breaker()
    await fake.control("hang")
    await asyncio.sleep(1.3)  # past the 1 s cooldown: the next call is the half-open probe, and it hangs
    probes = [await ctx.post(normal_body(i, "probe")) for i in range(3)]
    after_probe = await ctx.breaker()
    await fake.control("ok")
    n, spacing = int(ctx.pick(20, 4)), 0.5
    start, routed = time.monotonic(), 0
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i * spacing - time.monotonic()))
        before = await fake.count()
        outcome = await ctx.post(normal_body(i, "recovered"))
        routed += ctx.routed(outcome) and await fake.count() > before
        r.check = f"routed after recovery: {routed}/{i + 1}"
    end = await ctx.breaker()
    r.details.update(probe_latencies=[o.latency for o in probes], breaker=[after_500, after_probe, end])
    r.check = (f"routed after recovery: {routed}/{n}; breaker after the 500s: {after_500}, after the hung probe: "
               f"{after_probe}, at the end: {end}; probe calls took {', '.join(ms(o.latency) for o in probes)}")


async def breaker_hang_storm(ctx: Ctx) -> None:
    await ctx.model.control("hang")
    count0 = await ctx.model.count()
    n = int(ctx.pick(8, 4))
    outcomes = [await ctx.post(normal_body(i, "hang")) for i in range(n)]
    waited = sum(o.latency > 1.5 for o in outcomes)
    ctx.result.check = (f"waited the whole budget (>1.5 s): {waited}/{n}; model requests: "
                        f"{await ctx.model.count() - count0}; breaker at the end: {await ctx.breaker()}")


def hostile_body(arguments: str) -> bytes:
    body = transfer_request(INTENTS[0], views=("messages", "transcript"), call_id="hostile")
    body["message"]["artifact"]["messages"][-1]["toolCalls"][0]["function"]["arguments"] = arguments
    return json.dumps(body).encode()


def hostile_arguments() -> dict[str, str]:
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    return {"nested": "[" * 100_000 + "]" * 100_000, "bigint": '{"x": ' + "9" * 5000 + "}",
            "garbage": "".join(rng.choices(alphabet, k=900_000))}


async def hostile_args(ctx: Ctx) -> None:
    await ctx.model.control("ok")
    n = int(ctx.pick(50, 5))
    parts = []
    for name, arguments in hostile_arguments().items():
        body = hostile_body(arguments)
        sem = asyncio.Semaphore(10)

        async def one(body: bytes = body, sem: asyncio.Semaphore = sem) -> Outcome:
            async with sem:
                return await ctx.post(body)

        outcomes = await asyncio.gather(*(one() for _ in range(n)))
        resets = sum(o.status == 0 for o in outcomes)
        parts.append(f"{name} ({len(body) // 1000} KB): {statuses(outcomes)}, resets {resets}")
        ctx.result.details[name] = {"bytes": len(body), "statuses": statuses(outcomes)}
    ctx.result.check = "; ".join(parts)
    ctx.finalize = lambda r: f"{r.check}; {log_words(r.log)}"


async def drop_mid_body(ctx: Ctx) -> None:
    n, port = int(ctx.pick(200, 50)), ctx.service.port
    rng = random.Random(5)

    async def drop() -> None:
        _, writer = await ctx.open_raw()
        writer.write(head(port, 100_000) + (b'{"message": {"type": "transfer-destination-request", ').ljust(1000))
        await writer.drain()
        await asyncio.sleep(rng.uniform(0, 0.2))
        writer.close()

    async def drops() -> None:
        results = await asyncio.gather(*(drop() for _ in range(n)), return_exceptions=True)
        ctx.result.details["drop_errors"] = [repr(x) for x in results if isinstance(x, BaseException)][:5]

    until = time.monotonic() + ctx.pick(3, 2)
    ctx.result.raw = n
    normal, _ = await asyncio.gather(periodic(ctx, 0.1, until), drops())
    ctx.finalize = lambda r: f"{log_words(r.log)} (for {n} dropped bodies); normal calls ok {ok_count(normal)}"


async def unauth_flood(ctx: Ctx) -> None:
    n, port = 200, ctx.service.port
    until = time.monotonic() + ctx.pick(10, 3)
    body = b"x" * 1_048_575
    sent = Counter[str]()

    async def hog() -> None:
        try:
            _, writer = await ctx.open_raw()
            writer.write(head(port, len(body)) + body)
            await asyncio.wait_for(writer.drain(), max(0.1, until - time.monotonic()))
            sent["whole body sent"] += 1
        except TimeoutError:
            sent["body still sending at the end"] += 1
        except OSError as exc:
            sent[type(exc).__name__] += 1
        await asyncio.sleep(max(0.0, until - time.monotonic()))

    ctx.result.raw = n
    real, *_ = await asyncio.gather(periodic(ctx, 0.2, until, {"X-Vapi-Secret": SECRET}),
                                    *(hog() for _ in range(n)))
    ctx.close_sockets()
    ctx.result.details["hogs"] = dict(sent)

    def verdict(r: Result) -> str:
        grown = r.mem_after - r.mem_before
        back = "yes" if grown <= 10 else "no"
        return (f"real caller ok {ok_count(real)}; memory after − before {grown:+.0f} MB (back within 10 MB: "
                f"{back}); hogs: {', '.join(f'{k} {v}' for k, v in sent.items())}")

    ctx.finalize = verdict


async def half_open_fd(ctx: Ctx) -> None:
    n, port = 1100, ctx.service.port
    hold = ctx.pick(10, 3)
    opened = Counter[str]()
    closes: list[float] = []
    answers = Counter[str]()
    ready, all_open = asyncio.Event(), asyncio.Event()
    gate = asyncio.Semaphore(200)

    async def holder() -> None:
        try:
            async with gate:
                reader, writer = await ctx.open_raw(timeout=5)
                writer.write(head(port, 20_000) + b"x" * 10_000)
                t0 = time.monotonic()
            opened["opened"] += 1
        except (OSError, TimeoutError) as exc:
            opened[type(exc).__name__] += 1
            return
        finally:
            if sum(opened.values()) >= n:
                all_open.set()
        await ready.wait()
        closed, data = await closed_after(reader, t0, until)
        if closed is not None:
            closes.append(closed)
            answers[data.split(b"\r\n", 1)[0].decode("latin-1") or "(nothing)"] += 1

    until = time.monotonic() + 90.0  # replaced once every connection is open

    async def real_caller() -> list[Outcome]:
        nonlocal until
        tasks = [asyncio.create_task(holder()) for _ in range(n)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_open.wait(), 60)
        until = time.monotonic() + hold
        ready.set()
        outcomes = await periodic(ctx, 0.2, until)
        await asyncio.gather(*tasks)
        return outcomes

    ctx.result.raw = n
    real = await real_caller()
    ctx.close_sockets()
    await asyncio.sleep(ctx.pick(1.0, 0.5))
    after = [await ctx.post(normal_body(i, "after"), fresh=True) for i in range(5)]
    ctx.result.details.update(opened=dict(opened), server_answers=dict(answers))
    first = f", first after {min(closes):.1f} s" if closes else ""
    ctx.result.check = (f"real caller ok during the hold {ok_count(real)}; server closed {len(closes)}/"
                        f"{opened['opened']} held connections{first}; after release ok {ok_count(after)}")
    ctx.finalize = lambda r: f"{r.check}; {log_words(r.log)}"


async def type_labels(ctx: Ctx) -> None:
    n = int(ctx.pick(150, 20))
    sem = asyncio.Semaphore(4)

    async def one(i: int) -> Outcome:
        async with sem:
            body = json.dumps({"message": {"type": "x" * 1_048_000 + str(i)}}).encode()
            return await ctx.post(body)

    outcomes = await asyncio.gather(*(one(i) for i in range(n)))
    t0, size = time.monotonic(), 0
    async with ctx.session.get(ctx.service.url + "/metrics", timeout=aiohttp.ClientTimeout(total=120)) as r:
        async for chunk in r.content.iter_chunked(1 << 16):
            size += len(chunk)
    took = time.monotonic() - t0
    ctx.result.details["metrics_bytes"] = size
    ctx.finalize = lambda r: (f"{n} types: {statuses(outcomes)}; /metrics {size:,} bytes in {took:.1f} s; "
                              f"memory after − before {r.mem_after - r.mem_before:+.0f} MB")


def big_conversation(limit: int = 1_048_576 - 2_000) -> tuple[bytes, int]:
    """A transfer request of about 1 MiB: ~31,000 short turns in artifact.messages (the only view present)."""
    texts = [("user", "my bill"), ("bot", "ok"), ("user", "yes"), ("bot", "sure")]
    turns: list[dict[str, Any]] = []
    size = 0
    while size < limit - 400:
        role, text = texts[len(turns) % len(texts)]
        turns.append({"role": role, "message": text})
        size += len(json.dumps(turns[-1], separators=(",", ":"))) + 1
    turns.append({"role": "tool_calls", "message": "", "toolCalls": [
        {"id": "t1", "type": "function", "function": {"name": "transferCall", "arguments": "{}"}}]})
    message = {"type": "transfer-destination-request", "artifact": {"messages": turns},
               "assistant": {"id": "asst-main", "name": "Brightline Front Line"}, "call": {"id": "big"}}
    return json.dumps({"message": message}, separators=(",", ":")).encode(), len(turns) - 1


async def large_conversations(ctx: Ctx) -> None:
    big, turns = big_conversation()
    until = time.monotonic() + ctx.pick(15, 2)
    heavy = [continuous(ctx, until, lambda _: big, record=False) for _ in range(2)]
    normal, *heavies = await asyncio.gather(periodic(ctx, 0.1, until, fresh=False), *heavy)
    done = [o for h in heavies for o in h]
    lat = [o.latency for o in normal]
    ctx.result.raw = len(done)
    ctx.result.details.update(big_bytes=len(big), big_turns=turns, heavy_latencies=[o.latency for o in done])
    ctx.result.check = (f"normal caller p50 {ms(pct(lat, 0.5))}, p90 {ms(pct(lat, 0.9))}, worst {ms(max(lat))}; "
                        f"1 MiB requests ({turns:,} turns, messages view only): {len(done)}, p50 "
                        f"{ms(pct([o.latency for o in done], 0.5))}, {statuses(done)}")


async def slow_body(ctx: Ctx) -> None:
    n, port = 50, ctx.service.port
    window = ctx.pick(30, 3)
    until = time.monotonic() + window
    closes: list[float] = []
    answers = Counter[str]()

    async def dribble() -> None:
        reader, writer = await ctx.open_raw()
        t0 = time.monotonic()
        writer.write(head(port, 1000))
        watch = asyncio.create_task(closed_after(reader, t0, until))
        while not watch.done() and time.monotonic() < until:
            with contextlib.suppress(OSError):
                if not writer.is_closing():
                    writer.write(b" ")
            await asyncio.wait({watch}, timeout=1.0)
        closed, data = await watch
        if closed is not None:
            closes.append(closed)
            answers[data.split(b"\r\n", 1)[0].decode("latin-1") or "(nothing)"] += 1

    ctx.result.raw = n
    normal, *_ = await asyncio.gather(periodic(ctx, 0.2, until), *(dribble() for _ in range(n)))
    ctx.result.details["server_answers"] = dict(answers)
    median = f" (median after {statistics.median(closes):.1f} s, answered {dict(answers)})" if closes else ""
    ctx.result.check = (f"server closed {len(closes)}/{n}{median}; still open at {window:.0f} s: {n - len(closes)}; "
                        f"normal caller ok {ok_count(normal)}")


async def client_cancel(ctx: Ctx) -> None:
    fake, port = ctx.model, ctx.service.port
    await fake.control("ok", latency=1.5)
    n = int(ctx.pick(200, 50))
    count0 = await fake.count()

    async def abandon(i: int) -> None:
        _, writer = await ctx.open_raw()
        body = normal_body(i, "abandoned")
        writer.write(head(port, len(body)) + body)
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()

    await asyncio.gather(*(abandon(i) for i in range(n)))
    ctx.result.raw = n
    await asyncio.sleep(2.0)  # the abandoned decisions end (1.5 s model latency) before the normal calls
    model_calls = await fake.count() - count0
    normal = await asyncio.gather(*(ctx.post(normal_body(i, "after-cancel")) for i in range(20)))
    routed = sum(ctx.routed(o) for o in normal)
    breaker = await ctx.breaker()
    ctx.finalize = lambda r: (f"normal calls routed {routed}/20 ({statuses(list(normal))}); {log_words(r.log)}; "
                              f"breaker {breaker}; model requests for the {n} abandoned: {model_calls}")


def read_text(path: Path) -> str:
    return path.read_text()


def write_text(path: Path, text: str) -> None:
    path.write_text(text)


def canonical(destination: Any) -> str:
    return json.dumps(destination, sort_keys=True)


async def reload_storm(ctx: Ctx) -> None:
    path = Path(ctx.result.details["destinations"])
    original = json.loads(read_text(path))
    allowed = {canonical(d["destination"]) for d in original["destinations"]}
    until = time.monotonic() + ctx.pick(10, 3)
    written = Counter[str]()

    async def rewrite() -> None:
        k = 0
        while time.monotonic() < until:
            version = copy.deepcopy(original)
            billing = next(d for d in version["destinations"] if d["id"] == "billing")
            billing["destination"]["number"] = f"+1415556{k % 10000:04d}"
            text = json.dumps(version, indent=2)
            if k % 2:
                text = text[: len(text) // 2]  # broken JSON
                written["broken"] += 1
            else:
                allowed.update(canonical(d["destination"]) for d in version["destinations"])
                written["valid"] += 1
            write_text(path, text)  # in place, not atomic: a reader may see it half-written
            k += 1
            await asyncio.sleep(0.05)

    async def hup() -> None:
        while time.monotonic() < until:
            await asyncio.sleep(0.2)
            if ctx.service.alive():
                os.kill(ctx.service.pid, signal.SIGHUP)
                written["SIGHUP"] += 1

    _, _, *callers = await asyncio.gather(rewrite(), hup(), *(continuous(ctx, until, lambda i, c=c: normal_body(
        i * 20 + c, "reload")) for c in range(20)))
    outcomes = [o for c in callers for o in c]
    bad = [o for o in outcomes if o.has_destination and canonical(o.body["destination"]) not in allowed]
    numbers = {o.body["destination"].get("number") for o in outcomes if o.has_destination}
    lines = ctx.log()
    reloads = {k: sum(f'"event": "{k}"' in ln for ln in lines) for k in ("reloaded", "reload_failed")}
    ctx.result.details.update(written=dict(written), reloads=reloads, bad=[o.body for o in bad[:3]])
    ctx.result.check = (f"non-200: {ctx.result.non200}; answers outside every catalogue version: {len(bad)}; "
                        f"distinct numbers answered: {len(numbers)}; files written {written['valid']} valid + "
                        f"{written['broken']} broken, {written['SIGHUP']} SIGHUP; log: {reloads['reloaded']} "
                        f"reloaded, {reloads['reload_failed']} reload_failed")


class Skipped(Exception):
    """The attack cannot run on this machine; the message says why and what would let it run."""


@dataclass
class Setup:
    """What an attack's `prepare` gets: its own directory, and cleanups run once its processes have stopped."""

    workdir: Path
    repo: Path
    result: Result
    cleanups: list[Callable[[], None]]


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Ctx], Awaitable[None]]
    env: dict[str, str]
    good: str
    model: bool = True  # needs the fake model (the LLM router); else the offline router
    nominal: tuple[float, float] = (30, 10)  # expected seconds (full, smoke): the limit is 2× this + 20 s
    settle: tuple[float, float] = (3, 0.3)  # seconds between closing the attack's connections and "after" RSS
    nofile: int | None = None
    prepare: Callable[[Setup], dict[str, str]] | None = None  # files or mounts of its own; returns settings
    smoke: bool = True  # part of --smoke (else run in full runs, or when named with --only)
    what: str = ""  # one line for --help


def own_catalogue(setup: Setup) -> dict[str, str]:
    """Copies of the catalogue and prompt that the attack may rewrite under load."""
    shutil.copy(setup.repo / "destinations.json", setup.workdir / "destinations.json")
    shutil.copy(setup.repo / "prompts" / "route.md", setup.workdir / "route.md")
    setup.result.details["destinations"] = str(setup.workdir / "destinations.json")
    return {"SWITCHBOARD_DESTINATIONS": str(setup.workdir / "destinations.json"),
            "SWITCHBOARD_PROMPT": str(setup.workdir / "route.md")}


# -- attacks on the model's answers, the disk, the headers, /healthz and reloads ---------------------------

def timing(outcomes: list[Outcome], budget: float) -> str:
    """Late answers (over the budget + 100 ms), p50 and worst."""
    lat = [o.latency for o in outcomes]
    late = sum(x > budget + 0.1 for x in lat)
    return f"late {late}/{len(lat)}, p50 {ms(pct(lat, 0.5))}, worst {ms(max(lat, default=float('nan')))}"


def log_events(lines: list[str], *names: str) -> dict[str, int]:
    return {name: sum(f'"event": "{name}"' in ln for ln in lines) for name in names}


def breaker_opened(lines: list[str]) -> int:
    return sum('"event": "breaker"' in ln and '"to": "open"' in ln for ln in lines)


def tracebacks(lines: list[str]) -> int:
    return sum(ln.startswith("Traceback") for ln in lines)


def outcomes_by_call(lines: list[str], prefix: str) -> Counter[str]:
    """Decision outcomes in the service's log for the calls whose id starts with `prefix`."""
    found = Counter[str]()
    for ln in lines:
        if ln.startswith("{") and '"event": "decision"' in ln and f'"call_id": "{prefix}' in ln:
            with contextlib.suppress(ValueError):
                line = json.loads(ln)
                failure = line.get("failure")
                found[str(line.get("outcome")) + (f" ({failure})" if failure else "")] += 1
    return found


def counted(counter: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{k}×{v}" for k, v in sorted(counter.items())) or "none"


async def rounds(ctx: Ctx, callers: int, times: int, call: str, headers: dict[str, str] | None = None,
                 record: bool = True) -> list[Outcome]:
    """`times` waves of `callers` normal requests at once (keep-alive), one wave after the other."""
    outcomes: list[Outcome] = []
    for r in range(times):
        outcomes += await asyncio.gather(*(ctx.post(normal_body(r * callers + i, call), headers, record=record)
                                           for i in range(callers)))
    return outcomes


async def callers_until(ctx: Ctx, until: float, callers: int, call: str,
                        headers: dict[str, str] | None = None) -> list[list[Outcome]]:
    """`callers` keep-alive callers, each posting a normal request as soon as the last is answered."""
    async def caller(c: int) -> list[Outcome]:
        outcomes, n = [], 0
        while time.monotonic() < until:
            outcomes.append(await ctx.post(normal_body(c * 100_000 + n, call), headers))
            n += 1
        return outcomes

    return list(await asyncio.gather(*(caller(c) for c in range(callers))))


async def rss_during(ctx: Ctx, work: Awaitable[list[Outcome]], settle: float) -> tuple[list[Outcome], float, float]:
    """Run `work` with the service's RSS sampled: (its outcomes, peak MB, MB `settle` s after it ended)."""
    sampler = RssSampler(ctx.service.pid).start()
    try:
        outcomes = await work
    finally:
        await sampler.stop()
    await asyncio.sleep(settle)
    after = ctx.service.rss_mb()
    return outcomes, max([after, *(x for x in sampler.samples if x == x)]), after


async def fence_whitespace(ctx: Ctx) -> None:
    budget, parts = ctx.result.budget, []
    # (spaces, callers at once, waves): the model's content is "```", the spaces, then "x"
    for spaces, callers, waves in ((2000, 1, int(ctx.pick(3, 1))), (800, 10, int(ctx.pick(2, 1)))):
        await ctx.model.control("content", content="```" + " " * spaces + "x")
        outcomes = await rounds(ctx, callers, waves, f"fence-{spaces}")
        parts.append(f"{spaces:,} spaces × {callers} at once: {timing(outcomes, budget)} ({statuses(outcomes)})")
        ctx.result.details[f"spaces_{spaces}"] = [round(o.latency, 3) for o in outcomes]
    ctx.result.check = "; ".join(parts)
    ctx.finalize = lambda r: f"{r.check}; {log_words(r.log)}"


async def huge_answer(ctx: Ctx) -> None:
    budget, parts = ctx.result.budget, []
    # (bytes, callers at once, waves): a valid answer whose log-probability list is padded to the size
    sizes = ((9_000_000, 5, 2), (18_000_000, 5, 2)) if not ctx.smoke else ((9_000_000, 2, 1),)
    for size, callers, waves in sizes:
        await ctx.model.control("huge", size=size)
        outcomes, peak, after = await rss_during(ctx, rounds(ctx, callers, waves, f"huge-{size // 1_000_000}"),
                                                 ctx.pick(2, 0))
        parts.append(f"{size // 1_000_000} MB × {callers} at once: {timing(outcomes, budget)} ({statuses(outcomes)}); "
                     f"RSS peak {peak:.0f}, after {after:.0f} MB")
    ctx.result.check = "; ".join(parts)
    ctx.finalize = lambda r: f"{r.check}; {log_words(r.log)}"


async def endless_body(ctx: Ctx) -> None:
    callers, waves = int(ctx.pick(10, 3)), int(ctx.pick(2, 1))
    await ctx.model.control("endless")
    outcomes = await rounds(ctx, callers, waves, "endless")
    await asyncio.sleep(ctx.pick(2, 0.2))  # time for the service to hang up on bodies it no longer waits for
    fake = await ctx.model.control()
    ctx.result.details.update(streams_open=fake["streams_open"], streamed_bytes=fake["streamed_bytes"])
    ctx.result.check = (f"{callers} callers × {waves}: {timing(outcomes, ctx.result.budget)} ({statuses(outcomes)}); "
                        f"model bodies still being read {ctx.pick(2, 0.2):g} s later: {fake['streams_open']}; "
                        f"{fake['streamed_bytes'] / 1e6:,.0f} MB streamed to the service")
    ctx.finalize = lambda r: (f"{r.check}; RSS {r.mem_before:.0f} → peak {r.mem_peak:.0f} → after {r.mem_after:.0f} "
                              f"MB; {log_words(r.log)}")


async def bad_logprobs(ctx: Ctx) -> None:
    n = int(ctx.pick(12, 4))
    routed = Counter[str]()
    for i in range(n):
        variant = ("byte300", "byte-1")[i % 2]
        await ctx.model.control("logprobs", variant=variant)
        routed[variant] += ctx.routed(await ctx.post(normal_body(i, f"badlp-{variant}")))
    breaker = await ctx.breaker()

    def verdict(r: Result) -> str:
        lines = ctx.log()
        crashes = log_events(lines, "router_crashed")["router_crashed"]
        return (f"routed {sum(routed.values())}/{n} (bytes 300: {routed['byte300']}, bytes -1: {routed['byte-1']}); "
                f"router_crashed {crashes}, Traceback {tracebacks(lines)}; breaker opened {breaker_opened(lines)}×, "
                f"at the end {breaker}; statuses {counted(r.statuses)}")

    ctx.finalize = verdict


async def min_confidence_nan(ctx: Ctx) -> None:
    n = int(ctx.pick(4, 1))
    routed = Counter[str]()
    variants = ("nan", "inf", "cut", "misspelled", "low")
    for variant in variants:
        await ctx.model.control("logprobs", variant=variant)
        for i in range(n):
            routed[variant] += ctx.routed(await ctx.post(normal_body(i, f"conf-{variant}-")))

    def verdict(r: Result) -> str:
        lines = ctx.log()
        parts = [f"{v}: routed {routed[v]}/{n} ({counted(outcomes_by_call(lines, f'conf-{v}-'))})" for v in variants]
        unknowable = sum(routed[v] for v in variants[:-1])
        return (f"routed with an unknowable confidence {unknowable}/{n * (len(variants) - 1)}; " + "; ".join(parts)
                + f" (low: an honest 0.5, the control); Traceback {tracebacks(lines)}")

    ctx.finalize = verdict


def unmount(path: Path) -> None:
    done = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:  # still busy: detach it now, the kernel frees it when the last file closes
        subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, timeout=30, check=True)


def tiny_disk(setup: Setup) -> dict[str, str]:
    """The recording directory on a 64 KiB tmpfs: full after a few dozen calls."""
    mount = setup.workdir / "records"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "chaos-full-disk", str(mount)],
                              capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise Skipped(f"cannot run mount ({exc}); it needs mount(8) and root") from None
    if done.returncode != 0:
        raise Skipped(f"mount -t tmpfs failed ({done.stderr.strip() or done.returncode}); it needs root "
                      "(or CAP_SYS_ADMIN in a container)")
    setup.cleanups.append(lambda: unmount(mount))
    setup.result.details["record_dir"] = str(mount)
    return {"SWITCHBOARD_RECORD_DIR": str(mount)}


def recording_state(directory: Path) -> dict[str, Any]:
    """The recording files: bytes, lines, lines that are not JSON, and whether the last one is whole."""
    state: dict[str, Any] = {"files": 0, "bytes": 0, "lines": 0, "broken_lines": 0, "ends_with_partial_line": False}
    for path in sorted(directory.glob("*.jsonl")):
        data = path.read_bytes()
        state["files"] += 1
        state["bytes"] += len(data)
        lines = data.split(b"\n")
        state["lines"] += len(lines) - 1
        state["broken_lines"] += sum(1 for ln in lines[:-1] if not _is_json(ln))
        state["ends_with_partial_line"] |= bool(lines[-1])
    return state


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


async def full_disk(ctx: Ctx) -> None:
    callers = int(ctx.pick(150, 50))
    await rounds(ctx, callers, 1, "warm", record=False)  # keep-alive connections, as Vapi's pool has them
    per_caller = await callers_until(ctx, time.monotonic() + ctx.pick(5, 1), callers, "disk")
    await asyncio.sleep(ctx.pick(0.5, 0.2))  # recordings are written after the answer
    outcomes = [o for c in per_caller for o in c]
    unanswered = sum(any(o.status == 0 for o in c) for c in per_caller)
    disk = recording_state(Path(ctx.result.details["record_dir"]))
    ctx.result.details["recording"] = disk

    def verdict(r: Result) -> str:
        lines = ctx.log()
        decisions = sum('"event": "decision"' in ln for ln in lines)
        return (f"callers that got no answer at least once {unanswered}/{callers} ({r.conn_errors} of "
                f"{len(outcomes)} requests); {timing(outcomes, r.budget)}; log {len(lines):,} lines "
                f"({decisions:,} decisions), Traceback {tracebacks(lines)}, error-level {r.log.get('errors', 0)}; "
                f"recording {disk['lines']} lines in {disk['bytes']:,} bytes, {disk['broken_lines']} broken, ends "
                f"with a partial line: {'yes' if disk['ends_with_partial_line'] else 'no'}")

    ctx.finalize = verdict


async def header_bloat(ctx: Ctx) -> None:
    n, size, piece = int(ctx.pick(50, 5)), 20 << 20, 1 << 18
    blob = memoryview(b"a" * size)
    until = time.monotonic() + ctx.pick(30, 10)
    sent, answers = Counter[str](), Counter[str]()
    request = (f"POST /webhook HTTP/1.1\r\nHost: {HOST}:{ctx.service.port}\r\nContent-Type: application/json\r\n"
               "Content-Length: 2\r\nX-Padding: ").encode()

    async def bloat() -> None:
        reader, writer = await ctx.open_raw()
        t0 = time.monotonic()
        watch = asyncio.create_task(closed_after(reader, t0, until))
        try:
            writer.write(request)
            for offset in range(0, size, piece):
                if watch.done():
                    break
                writer.write(blob[offset:offset + piece])
                await asyncio.wait_for(writer.drain(), max(0.1, until - time.monotonic()))
            else:
                writer.write(b"\r\n\r\n{}")
            sent["stopped early (answered or closed)" if watch.done() else "whole 20 MiB header sent"] += 1
        except TimeoutError:
            sent["still sending at the end"] += 1
        except OSError as exc:
            sent[f"cut off ({type(exc).__name__})"] += 1
        closed, data = await watch
        first = data.split(b"\r\n", 1)[0].decode("latin-1")
        answers[first or ("closed without an answer" if closed is not None else "no answer, still open")] += 1

    ctx.result.raw = n
    real, *_ = await asyncio.gather(periodic(ctx, 0.2, until=time.monotonic() + ctx.pick(5, 1),
                                             headers={"X-Vapi-Secret": SECRET}), *(bloat() for _ in range(n)))
    ctx.result.details.update(sent=dict(sent), answers=dict(answers))
    ctx.finalize = lambda r: (f"{n} × 20 MiB headers, no credentials: {counted(answers)}; {counted(sent)}; RSS "
                              f"{r.mem_before:.0f} → peak {r.mem_peak:.0f} → after {r.mem_after:.0f} MB; real caller "
                              f"ok {ok_count(real)}, {timing(real, r.budget)}")


def generated_catalogue(n: int, today: dt.date, season_days: int) -> dict[str, Any]:
    """`n` destinations as a large organisation may have them: one always open first (the fake model answers
    it), a front desk last (the fallback and the after-hours destination), and between them a quarter always
    open, a quarter open on weekdays with holidays, and half seasonal lines, closed for the next `season_days`
    days (the next opening is that far ahead)."""
    holidays = [str(today + dt.timedelta(days=d)) for d in (12, 40, 75, 120, 160, 200, 250, 300)]
    season = {"open": {"mon-fri": "08:00-20:00", "sat": "09:00-13:00"},
              "closed": [str(today + dt.timedelta(days=d)) for d in range(season_days)]}
    hours = [None, season, {"open": {"mon-fri": "09:00-12:30,13:30-18:00"}, "closed": holidays}, season]
    entries: list[dict[str, Any]] = []
    for i in range(n - 1):
        entry: dict[str, Any] = {"id": f"dept-{i:04d}", "description": f"Questions about product line {i}: orders, "
                                 f"returns and repairs for it.", "examples": [f"my product {i} is broken"],
                                 "destination": {"type": "number", "number": f"+1415555{i:04d}"}}
        if i and hours[i % 4] is not None:
            entry.update(hours=hours[i % 4], after_hours="front_desk")
        entries.append(entry)
    entries.append({"id": "front_desk", "description": "Anything else, and when a department is closed.",
                    "destination": {"type": "number", "number": "+14155550100"}})
    return {"destinations": entries, "fallback": "front_desk", "timezone": "America/Los_Angeles"}


def big_catalogue(n: int, season_days: int) -> Callable[[Setup], dict[str, str]]:
    def prepare(setup: Setup) -> dict[str, str]:
        path = setup.workdir / "destinations.json"
        path.write_text(json.dumps(generated_catalogue(n, dt.datetime.now(dt.UTC).date(), season_days), indent=1))
        setup.result.details.update(destinations=str(path), entries=n)
        return {"SWITCHBOARD_DESTINATIONS": str(path)}

    return prepare


def answered_as(ctx: Ctx, outcomes: list[Outcome]) -> Counter[str]:
    """Which entry of the attack's own catalogue each answer is: the routed one, the fallback, or other."""
    catalogue = json.loads(read_text(Path(ctx.result.details["destinations"])))
    names = {canonical(catalogue["destinations"][0]["destination"]): "routed",
             canonical(catalogue["destinations"][-1]["destination"]): "fallback"}
    return Counter(names.get(canonical(o.body["destination"]), "other destination") if o.has_destination
                   else f"HTTP {o.status}" if o.status else "no answer" for o in outcomes)


HEALTH_FLOOD_LATENCY = 0.5  # seconds: a model at a modest latency


async def health_flood(ctx: Ctx) -> None:
    secret = {"X-Vapi-Secret": SECRET}
    await ctx.model.control("ok", latency=HEALTH_FLOOD_LATENCY)
    callers, pollers = 20, 20
    await rounds(ctx, callers, 1, "warm", secret, record=False)  # keep-alive connections, as Vapi's pool has
    # The same callers first without the pollers: what the pollers add is the difference.
    quiet = [o for c in await callers_until(ctx, time.monotonic() + ctx.pick(4, 0.5), callers, "quiet", secret)
             for o in c]
    until = time.monotonic() + ctx.pick(20, 1.5)
    polls: list[float] = []
    poll_errors = Counter[str]()

    async def poll() -> None:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            try:
                async with ctx.fresh.get(ctx.service.url + "/healthz", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
                polls.append(time.perf_counter() - t0)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                poll_errors[type(exc).__name__] += 1

    per_caller, *_ = await asyncio.gather(callers_until(ctx, until, callers, "flood", secret),
                                          *(poll() for _ in range(pollers)))
    outcomes = [o for c in per_caller for o in c]
    kinds = answered_as(ctx, outcomes)
    ctx.result.details.update(answers=dict(kinds), healthz=len(polls))

    def verdict(r: Result) -> str:
        lines = ctx.log()
        return (f"{ctx.result.details['entries']} entries, model {HEALTH_FLOOD_LATENCY * 1000:.0f} ms; {callers} "
                f"callers alone: p50 {ms(pct([o.latency for o in quiet], 0.5))}; with {pollers} /healthz pollers: "
                f"{len(outcomes)} calls: {counted(kinds)}; {timing(outcomes, r.budget)}; breaker opened "
                f"{breaker_opened(lines)}×; /healthz {len(polls)} answered, p50 {ms(pct(polls, 0.5))}, errors "
                f"{counted(poll_errors)}")

    ctx.finalize = verdict


async def fifo_reload(ctx: Ctx) -> None:
    path = Path(ctx.result.details["destinations"])
    original = read_text(path)
    pipe = path.with_name("pipe")
    window = ctx.pick(8, 1.5)
    until = time.monotonic() + window
    health: list[float] = []
    health_errors = Counter[str]()
    fed = Counter[str]()

    async def swap() -> None:
        await asyncio.sleep(ctx.pick(0.5, 0.3))
        os.mkfifo(pipe)
        os.link(pipe, path.with_name("pipe-link"))
        os.replace(path.with_name("pipe-link"), path)  # the catalogue is now a named pipe nobody writes to
        os.kill(ctx.service.pid, signal.SIGHUP)  # and the mtime watcher (0.5 s) sees it changed too

    async def release() -> None:
        """At the end: a regular catalogue again, and any reader blocked on the pipe fed the original text
        (else the service could not even be stopped)."""
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        path.with_name("restored").write_text(original)
        os.replace(path.with_name("restored"), path)
        for _ in range(10):
            try:
                fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody has the pipe open for reading
                    raise
                break
            with contextlib.suppress(OSError):
                os.write(fd, original.encode())
            os.close(fd)
            fed["readers fed"] += 1
            await asyncio.sleep(0.2)

    async def poll_health() -> None:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            try:
                async with ctx.fresh.get(ctx.service.url + "/healthz", timeout=aiohttp.ClientTimeout(total=3)) as r:
                    await r.read()
                health.append(time.perf_counter() - t0)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                health_errors[type(exc).__name__] += 1
            await asyncio.sleep(0.5)

    normal, *_ = await asyncio.gather(periodic(ctx, 0.1, until), swap(), release(), poll_health())
    ctx.result.details.update(healthz_latencies=health, fed=dict(fed))

    def verdict(r: Result) -> str:
        events = log_events(ctx.log(), "reloaded", "reload_failed")
        return (f"catalogue replaced by a named pipe, SIGHUP: callers {timing(normal, r.budget)} "
                f"({statuses(normal)}); /healthz every 0.5 s (3 s timeout): {len(health)} answered, worst "
                f"{ms(max(health, default=float('nan')))}, failed {counted(health_errors)}; log: {counted(events)}; "
                f"blocked readers fed at the end: {fed['readers fed']}")

    ctx.finalize = verdict


async def reload_big_catalogue(ctx: Ctx) -> None:
    callers = int(ctx.pick(40, 10))
    await rounds(ctx, callers, 1, "warm", record=False)  # keep-alive connections, as Vapi's pool has them
    await ctx.model.control("hang")
    until = time.monotonic() + ctx.pick(20, 0.6)
    hups = 0

    async def hup() -> None:
        nonlocal hups
        while time.monotonic() < until:
            await asyncio.sleep(0.5)
            if ctx.service.alive():
                os.kill(ctx.service.pid, signal.SIGHUP)
                hups += 1

    per_caller, _ = await asyncio.gather(callers_until(ctx, until, callers, "reload-big"), hup())
    outcomes = [o for c in per_caller for o in c]

    def verdict(r: Result) -> str:
        events = log_events(ctx.log(), "reloaded", "reload_failed")
        return (f"{r.details['entries']:,} entries, SIGHUP every 0.5 s ({hups} sent; log: {counted(events)}), model "
                f"hanging, {callers} callers: {timing(outcomes, r.budget)} ({statuses(outcomes)})")

    ctx.finalize = verdict


def record_dir(setup: Setup) -> dict[str, str]:
    (setup.workdir / "records").mkdir()
    setup.result.details["record_dir"] = str(setup.workdir / "records")
    return {"SWITCHBOARD_RECORD_DIR": str(setup.workdir / "records")}


async def recording_big_conversations(ctx: Ctx) -> None:
    big, turns = big_conversation(int(0.9 * (1 << 20)))
    until = time.monotonic() + ctx.pick(15, 1.5)
    heavy = [continuous(ctx, until, lambda _: big, record=False) for _ in range(10)]
    normal, *heavies = await asyncio.gather(periodic(ctx, 0.1, until, fresh=False), *heavy)
    done = [o for h in heavies for o in h]
    lat = [o.latency for o in normal]
    ctx.result.raw = len(done)
    await asyncio.sleep(ctx.pick(0.5, 0.2))  # recordings are written after the answer
    disk = recording_state(Path(ctx.result.details["record_dir"]))
    ctx.result.details.update(big_bytes=len(big), big_turns=turns, recording=disk)
    ctx.result.check = (f"recording on; normal caller {timing(normal, ctx.result.budget)}, p90 {ms(pct(lat, 0.9))}; "
                        f"10 clients' 0.9 MiB conversations ({turns:,} turns): {len(done)}, p50 "
                        f"{ms(pct([o.latency for o in done], 0.5))}, {statuses(done)}; recorded {disk['lines']} lines "
                        f"({disk['bytes'] / 1e6:,.0f} MB), {disk['broken_lines']} broken")
    ctx.finalize = lambda r: f"{r.check}; {log_words(r.log)}"


# -- attacks on the decision store: a flood of Vapi's outcome messages, and the database going away ---------

OUTCOME_KINDS = {"end-of-call-report": 0.6, "status-update": 0.25, "transfer-update": 0.15}  # the flood's mix
ENDED_REASONS = ["assistant-forwarded-call", "call.forwarding.no-answer", "call.forwarding.operator-busy",
                 "call.in-progress.error-transfer-failed", "customer-ended-call-during-transfer", "customer-ended-call"]
TRANSFER_STATUSES = ["connected", "no-answer", "busy", "voicemail", "failed", "completed", "cancelled"]
FLOOD_RESEND = 0.15  # share of the flood's messages that resend one the same client sent before (Vapi retries)
FLOOD_MAX = 2_000_000  # messages per flood client at most, whatever the window: bounded in count as well as time


def outcome_templates() -> dict[str, dict[str, Any]]:
    """The worked examples (examples/*.json of this checkout, not --repo's: older ones have none)."""
    return {kind: json.loads((ROOT / "examples" / f"{kind}.json").read_text()) for kind in OUTCOME_KINDS}


def outcome_message(templates: dict[str, dict[str, Any]], kind: str, call_id: str, destination: Any,
                    rng: random.Random) -> dict[str, Any]:
    """A worked example of `kind` for `call_id` and `destination`, its outcome varied by `rng`."""
    body = copy.deepcopy(templates[kind])
    message = body["message"]
    message["call"]["id"] = call_id
    message["timestamp"] = int(time.time() * 1000)
    if kind == "end-of-call-report":
        message["endedReason"] = rng.choice(ENDED_REASONS)
        message["destination"] = destination
        message["artifact"]["transfers"] = [{"destination": destination, "mode": "blind-transfer",
                                             "status": rng.choice(TRANSFER_STATUSES)}]
    elif kind == "status-update":
        if rng.random() < 0.7:
            message.update(status="forwarding", destination=destination)
        else:
            message.pop("destination", None)
            message.update(status="ended", endedReason=rng.choice(ENDED_REASONS))
    else:
        message["destination"] = destination
    return body


async def flood_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The flood's clients, in their own process (`chaos.py --flood-worker SPEC`): as fast as they can from
    spec["start"] to spec["stop"] (epoch seconds), so that this driver's event loop, which times the normal
    callers, is not the one saturated."""
    templates = outcome_templates()
    catalogue = json.loads((ROOT / "destinations.json").read_text())
    destinations = [d["destination"] for d in catalogue["destinations"]]
    kinds, weights = list(OUTCOME_KINDS), list(OUTCOME_KINDS.values())
    counts: Counter[str] = Counter()
    latencies: list[float] = []
    began = [float("nan")]

    async def client(session: aiohttp.ClientSession, c: int) -> None:
        rng = random.Random(c)
        sent: list[bytes] = []  # the last few, for resends
        for n in range(FLOOD_MAX):
            if time.time() >= spec["stop"]:
                return
            if sent and rng.random() < FLOOD_RESEND:
                body, counts["resent"] = rng.choice(sent), counts["resent"] + 1
            else:
                kind = rng.choices(kinds, weights)[0]
                # Half the messages name a call the normal callers made (their decisions are joined), half not.
                if rng.random() < 0.5:
                    made = rng.randrange(spec["callers"]) * 100_000 + rng.randrange(spec["per_caller"])
                    call_id = f"{spec['prefix']}-{made}"
                else:
                    call_id = f"flood-{c}-{n}"
                body = json.dumps(outcome_message(templates, kind, call_id, rng.choice(destinations), rng)).encode()
                counts[kind] += 1
                sent = [*sent[-19:], body]
            t0 = time.perf_counter()
            try:
                async with session.post(spec["url"], data=body, headers={"content-type": "application/json"},
                                        timeout=aiohttp.ClientTimeout(total=10)) as r:
                    await r.read()
                    counts[f"HTTP {r.status}"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                counts[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=spec["clients"])) as session:
        print("ready", flush=True)
        await asyncio.sleep(max(0.0, spec["start"] - time.time()))
        began[0] = time.time()
        await asyncio.gather(*(client(session, c) for c in range(spec["clients"])))
    return {"sent": len(latencies), "began": began[0], "ended": time.time(), "counts": dict(counts),
            "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "worst": max(latencies, default=float("nan"))}


async def scrape(ctx: Ctx, *names: str) -> dict[str, float]:
    """Samples of these metrics from /metrics (name{labels} -> value); {} when it cannot be read."""
    try:
        async with ctx.session.get(ctx.service.url + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r:
            text = await r.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(names):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                found[key.replace("switchboard_", "")] = float(value)
    return found


def metric_words(samples: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.0f}" for k, v in sorted(samples.items()) if v) or "none (no such metrics)"


def event_counts(lines: list[str], needle: str) -> Counter[str]:
    """How many log lines each event whose name contains `needle` has."""
    found = Counter[str]()
    for ln in lines:
        if ln.startswith("{") and needle in ln:
            with contextlib.suppress(ValueError):
                name = str(json.loads(ln).get("event", ""))
                if needle in name:
                    found[name] += 1
    return found


REPORT_FLOOD_LATENCY = 0.3  # seconds: the model at a modest latency


def data_dir(setup: Setup) -> dict[str, str]:
    """The embedded store's folder, in the attack's own directory (its default is data/ under the cwd)."""
    return {"SWITCHBOARD_DATA_DIR": str(setup.workdir / "data")}


async def report_flood(ctx: Ctx) -> None:
    await ctx.model.control("ok", latency=REPORT_FLOOD_LATENCY)
    callers, clients = 10, 50
    await rounds(ctx, callers, 1, "warm", record=False)  # keep-alive connections, as Vapi's pool has them
    quiet_s, flood_s, after_s = ctx.pick(8, 0.5), ctx.pick(20, 1.5), ctx.pick(4, 0.3)
    start = time.time() + quiet_s
    stop = start + flood_s
    spec: dict[str, Any] = {"url": ctx.service.url + "/webhook", "start": start, "stop": stop, "clients": clients,
            "prefix": "flooded", "callers": callers, "per_caller": int(flood_s / REPORT_FLOOD_LATENCY) + 1}
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "chaos.py"), "--flood-worker", json.dumps(spec), cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        quiet = [o for c in await callers_until(ctx, time.monotonic() + quiet_s, callers, "quiet") for o in c]
        assert worker.stdout is not None
        ready = await asyncio.wait_for(worker.stdout.readline(), 30)
        if ready.strip() != b"ready":
            raise RuntimeError(f"the flood worker did not start: {ready!r}")
        await asyncio.sleep(max(0.0, start - time.time()))
        flooded = [o for c in await callers_until(ctx, time.monotonic() + max(0.0, stop - time.time()),
                                                  callers, "flooded") for o in c]
        out, _ = await asyncio.wait_for(worker.communicate(), 30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    flood = json.loads(out)
    after = [o for c in await callers_until(ctx, time.monotonic() + after_s, callers, "after") for o in c]
    counts = flood["counts"]
    answered = {k: v for k, v in counts.items() if k.startswith("HTTP ")}
    not_2xx = flood["sent"] - sum(v for k, v in answered.items() if k.startswith("HTTP 2"))
    seconds = max(1e-9, flood["ended"] - flood["began"])
    ctx.result.raw = flood["sent"]
    ctx.result.details.update(flood=flood, quiet=len(quiet), flooded=len(flooded), after=len(after))
    mix = ", ".join(f"{k} {counts.get(k, 0):,}" for k in OUTCOME_KINDS)

    async def metrics() -> None:  # read after the settle, when what the flood left in flight is done
        ctx.result.details["metrics"] = await scrape(ctx, "switchboard_outcome_messages_total",
                                                     "switchboard_store_rows_total", "switchboard_store_buffered")

    ctx.after = metrics

    def verdict(r: Result) -> str:
        lines = ctx.log()
        drops = event_counts(lines, "drop")
        return (f"model {REPORT_FLOOD_LATENCY * 1000:.0f} ms, {callers} callers; without the flood: "
                f"{timing(quiet, r.budget)}; with {clients} clients flooding {flood['sent']:,} outcome messages "
                f"({flood['sent'] / seconds:,.0f}/s: {mix}, {counts.get('resent', 0):,} resends): "
                f"{timing(flooded, r.budget)} ({statuses(flooded)}); after it: {timing(after, r.budget)}; the "
                f"flood's answers {counted(answered)}, {not_2xx} not 2xx, p50 {ms(flood['p50'])}, worst "
                f"{ms(flood['worst'])}; metrics: {metric_words(r.details.get('metrics', {}))}; drop lines in the "
                f"log: {counted(drops)}; {log_words(r.log)}")

    ctx.finalize = verdict


_POSTGRES: dict[str, Any] = {}  # attack directory -> its throwaway PostgresServer (not JSON: kept out of details)


def postgres_helper() -> Any:
    """tests/postgres.py of this checkout (not --repo's), by path: `tests` may already be --repo's package."""
    import importlib.util

    path = ROOT / "tests" / "postgres.py"
    spec = importlib.util.spec_from_file_location("chaos_postgres_helper", path)
    if spec is None or spec.loader is None or not path.exists():
        raise Skipped(f"{path} is missing: it starts the throwaway PostgreSQL server")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise Skipped(f"{path} cannot be imported ({exc}); run with the project's venv") from None
    return module


def throwaway_postgres(setup: Setup) -> dict[str, str]:
    """A PostgreSQL server of its own (initdb, pg_ctl; as root, run as the `postgres` user), and the service's
    SWITCHBOARD_DATABASE_URL pointing at a fresh database on it."""
    helper = postgres_helper()
    bindir = helper.find_bindir()
    if bindir is None:
        raise Skipped("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH); "
                      "install it (Debian: apt-get install postgresql) to run this attack")
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise Skipped("running as root, and there is no `postgres` user to run initdb as (it refuses "
                          "root)") from None
        if shutil.which("runuser") is None:
            raise Skipped("running as root, and there is no runuser to run initdb as the `postgres` user")
    server = helper.PostgresServer(bindir)
    setup.cleanups.append(server.cleanup)
    t0 = time.monotonic()
    server.init()
    server.start()
    url = server.new_database()
    _POSTGRES[str(setup.workdir)] = server
    setup.result.details.update(postgres=str(setup.workdir), database=url.rpartition("/")[2])
    setup.cleanups.append(lambda: _POSTGRES.pop(str(setup.workdir), None))
    setup.result.details["postgres_setup_s"] = round(time.monotonic() - t0, 2)
    return {"SWITCHBOARD_DATABASE_URL": url, **data_dir(setup)}


def report_for(templates: dict[str, dict[str, Any]], call_id: str, destination: Any) -> bytes:
    """The end-of-call-report of a call whose transfer to `destination` connected."""
    body = copy.deepcopy(templates["end-of-call-report"])
    message = body["message"]
    message["call"]["id"], message["timestamp"] = call_id, int(time.time() * 1000)
    message["endedReason"], message["destination"] = "assistant-forwarded-call", destination
    message["artifact"]["transfers"] = [{"destination": destination, "mode": "blind-transfer", "status": "connected"}]
    return json.dumps(body).encode()


def rows_in(server: Any, database: str, prefix: str) -> tuple[list[str], Counter[str], int]:
    """(call ids of the decisions, their outcomes, events) kept in the database for calls starting with prefix."""
    like = f"'{prefix}-%'"
    ids = server.psql(f"SELECT call_id FROM decisions WHERE call_id LIKE {like}", database).split()
    outcomes = Counter[str]()
    for line in server.psql(f"SELECT outcome, count(*) FROM decisions WHERE call_id LIKE {like} GROUP BY outcome",
                            database).splitlines():
        if "|" in line:
            name, _, n = line.partition("|")
            outcomes[name] = int(n)
    events = int(server.psql(f"SELECT count(*) FROM events WHERE call_id LIKE {like}", database).strip() or 0)
    return ids, outcomes, events


async def database_outage(ctx: Ctx) -> None:
    server = _POSTGRES[ctx.result.details["postgres"]]
    templates = outcome_templates()
    before_s, down_s, after_s = ctx.pick(5, 0.3), ctx.pick(20, 3), ctx.pick(10, 0.3)
    interval = 0.1  # a call every 0.1 s, each followed by its end-of-call-report
    phase = ["before"]
    calls: list[tuple[str, str, Outcome]] = []  # (phase when sent, call id, the answer)
    reports: list[tuple[str, Outcome]] = []
    stopped_in = started_in = float("nan")

    async def one(i: int) -> None:
        call_id, sent_in = f"outage-{i}", phase[0]
        answer = await ctx.post(normal_body(i, "outage"), fresh=False)
        calls.append((sent_in, call_id, answer))
        if answer.has_destination:
            report = await ctx.post(report_for(templates, call_id, answer.body["destination"]), fresh=False,
                                    record=False)
            reports.append((sent_in, report))

    async def traffic(done: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            i = 0
            while not done.is_set():
                tg.create_task(one(i))
                i += 1
                await asyncio.sleep(interval)

    done = asyncio.Event()
    driver = asyncio.create_task(traffic(done))
    try:
        await asyncio.sleep(before_s)
        phase[0] = "stopping"
        t0 = time.monotonic()
        await asyncio.to_thread(server.stop, "fast")
        stopped_in, phase[0] = time.monotonic() - t0, "down"
        await asyncio.sleep(down_s)
        phase[0] = "starting"
        t0 = time.monotonic()
        await asyncio.to_thread(server.start)
        started_in, phase[0] = time.monotonic() - t0, "back"
        back_at = time.monotonic()
        await asyncio.sleep(after_s)
    finally:
        done.set()
        await driver
    # Every answered request should become one row: wait (bounded) until they have all arrived, and their
    # reports are joined (no decision left pending).
    answered = {call_id for _, call_id, o in calls if o.status == 200}
    wait_until = time.monotonic() + ctx.pick(60, 12)
    rows: list[str] = []
    outcomes: Counter[str] = Counter()
    events, unreadable = 0, ""
    while True:
        try:
            rows, outcomes, events = await asyncio.to_thread(rows_in, server, ctx.result.details["database"],
                                                             "outage")
            unreadable = ""
        except RuntimeError as exc:  # psql failed: asked again, unless the service never made the tables
            unreadable = next((ln.strip() for ln in str(exc).splitlines() if ln.startswith("ERROR")), str(exc)[:200])
            if "does not exist" in unreadable:
                break
        # --smoke waits for the rows only: the joins wait for two of the service's 2 s ticks after the rows
        if (answered <= set(rows) and (ctx.smoke or not outcomes.get("pending"))) or time.monotonic() >= wait_until:
            break
        await asyncio.sleep(0.5)
    ids = set(rows)
    settled_s = time.monotonic() - back_at
    budget = ctx.result.budget
    lost = Counter(p for p, _, o in calls if o.status != 200 or o.latency > budget + 0.1)
    by_phase = Counter(p for p, _, _ in calls)
    report_bad = sum(not (200 <= o.status < 300) or o.latency > budget + 0.1 for _, o in reports)
    down_calls = [o for p, _, o in calls if p in ("stopping", "down", "starting")]
    missing, extra = answered - ids, ids - answered
    ctx.result.details.update(phases=dict(by_phase), missing=sorted(missing)[:20], rows=len(rows),
                              outcomes=dict(outcomes), events=events)

    async def metrics() -> None:  # after the settle
        ctx.result.details["metrics"] = await scrape(ctx, "switchboard_store_rows_total",
                                                     "switchboard_outcome_messages_total")

    ctx.after = metrics

    def verdict(r: Result) -> str:
        lines = ctx.log()
        store_lines = event_counts(lines, "store_")
        return (f"PostgreSQL stopped (-m fast, {stopped_in:.1f} s) for {down_s:.0f} s, then started ({started_in:.1f} "
                f"s); {len(calls)} calls at {1 / interval:.0f}/s ({counted(by_phase)}), each then its "
                f"end-of-call-report: answers lost (non-200 or later than {budget + 0.1:.1f} s) {sum(lost.values())} "
                f"({counted(lost)}); while it was down {timing(down_calls, budget)}; reports not 2xx or late "
                f"{report_bad}/{len(reports)}; decisions answered {len(answered)}, in the database {len(rows)} "
                f"{settled_s:.1f} s after it was back: {len(missing)} missing, {len(extra)} not answered, "
                f"{len(rows) - len(ids)} twice{f' ({unreadable})' if unreadable else ''}; outcomes "
                f"{counted(outcomes)}; {events} events; metrics: {metric_words(r.details.get('metrics', {}))}; "
                f"store log lines: {counted(store_lines)}; {log_words(r.log)}")

    ctx.finalize = verdict


# In this order, short attacks alternate with long ones: in --smoke the next attack's processes start
# while one runs, so a short one rarely waits for them.
ATTACKS = [
    Attack("hang-storm", hang_storm, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_BREAKER_FAILURES": "0"},
           "≥99.5% of answers within 2.1 s, none later than 2.3 s, all 200 (fallback answers)", nominal=(33, 8),
           what="200 keep-alive callers, model hanging, breaker off, 2 s budget"),
    Attack("fence-whitespace", fence_whitespace, {"SWITCHBOARD_TIMEOUT": "2"},
           "every answer within 2.1 s (the fallback: no id in it), p50 far below the budget, for 2,000 spaces and "
           "for 800 spaces × 10 callers", nominal=(40, 8),
           what="the model answers \"```\", 2,000 (then 800, 10 callers at once) spaces and \"x\""),
    Attack("breaker-hung-probe", breaker_hung_probe,
           {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_BREAKER_FAILURES": "3", "SWITCHBOARD_BREAKER_COOLDOWN": "1",
            "SWITCHBOARD_MAX_ATTEMPTS": "1"},
           "post-recovery calls routed except those in at most one 1 s cooldown (≥18/20; smoke ≥2/4), breaker "
           "closed at the end",
           nominal=(20, 10),
           what="the breaker's half-open probe hangs, then the model is back"),
    Attack("bad-logprobs", bad_logprobs, {"SWITCHBOARD_TIMEOUT": "2"},
           "every answer routed (a bad token byte makes the confidence unknown, nothing more), 0 router_crashed and 0 "
           "Traceback lines, the breaker never opens", nominal=(10, 4),
           what="log-probability `bytes` holding 300 or -1"),
    Attack("breaker-hang-storm", breaker_hang_storm, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_BREAKER_FAILURES": "3"},
           "only the 3 calls that open the breaker wait ~2 s (3/8; smoke 3/4); the rest answered at once",
           nominal=(18, 12),
           what="model hanging, breaker at 3 failures, calls one after another"),
    Attack("hostile-args", hostile_args, {"SWITCHBOARD_TIMEOUT": "2"},
           "all 200 with a destination (a bad hint is ignored), no resets, no Traceback or error lines",
           nominal=(25, 8),
           what="tool-call arguments: 100,000 nested arrays, a 5,000-digit number, 900 KB of garbage"),
    Attack("drop-mid-body", drop_mid_body, {"SWITCHBOARD_TIMEOUT": "2"},
           "normal calls all ok; no Traceback and no error-level line for a client that went away", nominal=(5, 4),
           what="200 clients hang up mid-body"),
    Attack("min-confidence-nan", min_confidence_nan, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_MIN_CONFIDENCE": "0.9"},
           "with SWITCHBOARD_MIN_CONFIDENCE=0.9, 0 routed when the confidence cannot be known (NaN, +inf, a list cut "
           "short, tokens spelling another id): low_confidence, as for the honest 0.5", nominal=(10, 4),
           what="SWITCHBOARD_MIN_CONFIDENCE=0.9 and log-probabilities NaN, +inf, cut short, misspelled"),
    Attack("unauth-flood", unauth_flood, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_SECRET": SECRET},
           "real caller all ok; unauthenticated bodies not buffered (peak far below +200 MB); after within 10 MB of "
           "before", nominal=(12, 6), settle=(5, 1),
           what="200 callers without credentials send 1 MiB bodies"),
    # Breaker off (here and in endless-body): every call meets the hostile answer, not an open breaker's fallback.
    Attack("huge-answer", huge_answer, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_BREAKER_FAILURES": "0"},
           "every answer within 2.1 s (an oversized model answer is refused: the fallback), RSS peak and after near "
           "before", nominal=(40, 6),
           what="valid 9 MB and 18 MB completions (long log-probability lists), 5 callers at once"),
    Attack("half-open-fd", half_open_fd, {"SWITCHBOARD_TIMEOUT": "2"},
           "real caller ok throughout (the service keeps fds for callers), idle half-sent requests closed by the "
           "server after a body timeout; all ok after release", nominal=(20, 12), nofile=1024,
           what="1,100 half-sent requests, open-file soft limit 1,024"),
    Attack("header-bloat", header_bloat, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_SECRET": SECRET},
           "each refused at once (431, or closed) without reading 20 MiB; RSS flat (peak within +20 MB of before); "
           "real caller all ok within 2.1 s", model=False, nominal=(15, 6), settle=(5, 1),
           what="50 connections without credentials, each sending a 20 MiB header"),
    Attack("type-labels", type_labels, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_MAX_BODY_BYTES": "2097152"},
           "/metrics stays small (unknown types share one label), memory back near before", model=False,
           nominal=(30, 8),
           what="150 distinct 1 MiB message types, then /metrics"),
    Attack("large-conversations", large_conversations, {"SWITCHBOARD_TIMEOUT": "1"},
           "normal caller p50 < 100 ms and p90 < 300 ms; 1 MiB requests answered within 1.1 s", model=False,
           nominal=(17, 6),
           what="two clients post 1 MiB conversations (31,000 turns)"),
    Attack("endless-body", endless_body, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_BREAKER_FAILURES": "0"},
           "every answer within 2.1 s (the fallback), no model body still being read after, RSS after near before "
           "(peak bounded by a response-size limit)", nominal=(20, 5),
           what="the model's chunked body never ends (bytes until the service hangs up), 10 callers"),
    Attack("slow-body", slow_body, {"SWITCHBOARD_TIMEOUT": "2"},
           "the server closes a trickling body after a few seconds (e.g. 408), normal caller all ok",
           nominal=(32, 8),
           what="50 clients trickle a body, 1 byte a second"),
    Attack("recording-big-conversations", recording_big_conversations, {"SWITCHBOARD_TIMEOUT": "1"},
           "normal caller p50 < 100 ms and 0 later than 1.1 s, as with recording off (large-conversations); no "
           "broken recorded line", model=False, nominal=(17, 5), prepare=record_dir,
           what="recording on, 10 clients posting 0.9 MiB conversations, a normal caller every 0.1 s"),
    Attack("client-cancel", client_cancel, {"SWITCHBOARD_TIMEOUT": "2"},
           "20/20 normal calls routed, no error lines, breaker closed", nominal=(10, 6),
           what="200 callers hang up mid-decision"),
    Attack("report-flood", report_flood, {"SWITCHBOARD_TIMEOUT": "2"},
           "callers as without the flood: 0 later than 2.1 s, p50 within 100 ms of without, all routed; every outcome "
           "message answered 2xx (fast: ingested after the answer); RSS peak bounded (within +100 MB of before) and "
           "after near before; 0 Traceback; drops (if any) logged once per interval, not a line per message",
           nominal=(36, 3), settle=(5, 0.5), prepare=data_dir,
           what="50 clients flood end-of-call-reports, status-updates, transfer-updates (resends too) beside 10 "
                "callers (model 0.3 s)"),
    Attack("full-disk", full_disk, {"SWITCHBOARD_TIMEOUT": "2"},
           "every caller answered 200 within 2.1 s; 0 Traceback; a full disk logged a bounded number of times (not a "
           "trace per call); the recording ends with a whole line", model=False, nominal=(15, 5), prepare=tiny_disk,
           what="recording onto a 64 KiB tmpfs (mounted here; needs root), 150 keep-alive callers"),
    Attack("health-flood", health_flood, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_SECRET": SECRET},
           "/healthz pollers cost callers nothing: callers' p50 with the pollers within 50 ms of without, every "
           "call routed (0 fallback answers), breaker never opens, 0 later than 2.1 s; /healthz p50 a few ms",
           nominal=(25, 5), prepare=big_catalogue(300, 300),
           what="300-entry catalogue with hours, 20 unauthenticated /healthz pollers, 20 callers (model 0.5 s)"),
    Attack("health-flood-1000", health_flood, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_SECRET": SECRET},
           "as health-flood, with 1,000 entries", nominal=(25, 5), prepare=big_catalogue(1000, 300), smoke=False,
           what="health-flood with a 1,000-entry catalogue"),
    Attack("database-outage", database_outage, {"SWITCHBOARD_TIMEOUT": "2"},
           "0 answers lost (every call 200 within 2.1 s, every report 2xx) while PostgreSQL is down; once it is back, "
           "every answered decision in the database (0 missing) and joined to its report (0 pending; --smoke waits for "
           "the rows only); 0 Traceback; "
           "the outage logged a bounded number of times", model=False, nominal=(60, 8), settle=(2, 0.3),
           prepare=throwaway_postgres,
           what="a throwaway PostgreSQL (the store) stopped for 20 s under 10 calls/s, each with its "
                "end-of-call-report (needs initdb/pg_ctl)"),
    Attack("reload-storm", reload_storm, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_RELOAD_INTERVAL": "0.1"},
           "0 non-200, every answer from some catalogue version, service alive", model=False, nominal=(12, 5),
           prepare=own_catalogue,
           what="catalogue rewritten (valid and broken) every 50 ms, SIGHUP every 200 ms, 20 callers"),
    Attack("fifo-reload", fifo_reload, {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_RELOAD_INTERVAL": "0.5"},
           "callers all answered within 2.1 s, /healthz answers throughout, the pipe refused (reload_failed) and the "
           "old catalogue kept", model=False, nominal=(12, 5), prepare=own_catalogue,
           what="the catalogue file replaced by a named pipe, then SIGHUP (and the mtime watcher)"),
    Attack("reload-big-catalogue", reload_big_catalogue,
           {"SWITCHBOARD_TIMEOUT": "2", "SWITCHBOARD_BREAKER_FAILURES": "0"},
           "0 answers later than 2.1 s while a 3,000-entry catalogue reloads every 0.5 s", nominal=(25, 6),
           prepare=big_catalogue(3000, 30),
           what="3,000-entry catalogue, SIGHUP every 0.5 s, model hanging, 40 callers at a 2 s budget"),
]
BASE_ENV = {"SWITCHBOARD_LOG_FORMAT": "json", "SWITCHBOARD_RELOAD_INTERVAL": "0", "SWITCHBOARD_HEDGE_DELAY": "0"}


# -- running --------------------------------------------------------------------------------------------

@dataclass
class Options:
    repo: Path
    smoke: bool
    logs: Path


@contextlib.asynccontextmanager
async def sessions() -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    pooled = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=250))
    fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
    try:
        yield pooled, fresh
    finally:
        await pooled.close()
        await fresh.close()


def attack_env(attack: Attack, fake_port: int | None, setup: Setup) -> dict[str, str]:
    env = dict(BASE_ENV)
    if fake_port is not None:
        env.update(OPENAI_BASE_URL=f"http://{HOST}:{fake_port}/v1", OPENAI_API_KEY="chaos", SWITCHBOARD_ROUTER="llm")
    else:
        env["SWITCHBOARD_ROUTER"] = "offline"
    env.update(data_dir(setup))  # the embedded store's file: never in --repo's data/ folder
    if attack.prepare is not None:
        env.update(attack.prepare(setup))
    env.update(attack.env)
    return env


async def start_both(attack: Attack, setup: Setup, opts: Options) -> tuple[Fake | None, Service]:
    """The fake model (if the attack needs one) and the service, started side by side."""
    fake_port = free_port() if attack.model else None
    env = await asyncio.to_thread(attack_env, attack, fake_port, setup)  # may write big files, or mount
    log = opts.logs / f"{attack.name}.log"
    fake_start: Awaitable[Fake | None] = Fake.start(fake_port) if fake_port else asyncio.sleep(0, None)
    fake, service = await asyncio.gather(fake_start, Service.start(opts.repo, env, log, attack.nofile),
                                         return_exceptions=True)
    if isinstance(fake, BaseException) or isinstance(service, BaseException):
        if isinstance(fake, Fake):
            await fake.stop()
        if isinstance(service, Service):
            await service.stop(5)
        error = fake if isinstance(fake, BaseException) else service
        assert isinstance(error, BaseException)
        raise error
    assert isinstance(service, Service)
    return fake, service


async def measure(attack: Attack, ctx: Ctx, opts: Options, settling: Callable[[], None]) -> None:
    """The attack itself, bounded, with RSS sampled throughout and once more after it settles. `settling` is
    called when the attack's connections are closed (the next attack's processes start meanwhile)."""
    result = ctx.result
    pick = 1 if opts.smoke else 0
    limit = 2 * attack.nominal[pick] + 20
    sampler = RssSampler(ctx.service.pid).start()
    lag = LagMonitor().start()
    try:
        async with asyncio.timeout(limit) as deadline:
            await attack.run(ctx)
    except TimeoutError:
        if not deadline.expired():
            raise
        result.finished = False
        result.check = f"did not finish within {limit:.0f} s; so far: {result.check or '-'}"
    finally:
        ctx.close_sockets()
        await sampler.stop()
        result.details["driver_lag_ms"] = await lag.stop()
    settling()
    await asyncio.sleep(attack.settle[pick])
    result.mem_after = ctx.service.rss_mb()
    if ctx.after is not None and result.finished and ctx.service.alive():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ctx.after(), 30)
    result.mem_peak = max([result.mem_before, result.mem_after, *(s for s in sampler.samples if s == s)])
    result.log = log_stats(ctx.log())
    result.alive_at_end = ctx.service.alive()
    if ctx.finalize is not None and result.finished:
        result.check = ctx.finalize(result)


@dataclass
class Launch:
    """An attack whose fake model and service are starting (or have started) in the background."""

    attack: Attack
    result: Result
    setup: Setup
    task: asyncio.Task[tuple[Fake | None, Service]]

    @property
    def workdir(self) -> Path:
        return self.setup.workdir

    @classmethod
    def start(cls, attack: Attack, opts: Options) -> Launch:
        result = Result(attack.name, float(attack.env.get("SWITCHBOARD_TIMEOUT", "5")), attack.good)
        setup = Setup(Path(tempfile.mkdtemp(prefix=f"chaos-{attack.name}-")), opts.repo, result, [])
        return cls(attack, result, setup, asyncio.create_task(start_both(attack, setup, opts)))

    def clean_up(self) -> None:
        """The attack's own cleanups (an unmount), then its directory: after its processes have stopped."""
        for cleanup in reversed(self.setup.cleanups):
            try:
                cleanup()
            except Exception as exc:
                print(f"[{self.attack.name}] cleanup failed: {exc}", file=sys.stderr, flush=True)
        self.setup.cleanups.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def abandon(self) -> None:
        """Stop whatever this launch started, without running the attack."""
        self.task.cancel()
        with contextlib.suppress(BaseException):
            fake, service = await self.task
            await service.stop(5)
            if fake is not None:
                await fake.stop()
        self.clean_up()


async def stop_launch(launch: Launch, fake: Fake | None, service: Service | None) -> None:
    """Stop the attack's processes, then its cleanups (an unmount needs the service gone)."""
    t_stop = time.monotonic()
    if service is not None:
        launch.result.stopped = await service.stop(5)
    if fake is not None:
        await fake.stop()
    launch.result.details["stop_s"] = round(time.monotonic() - t_stop, 2)
    await asyncio.to_thread(launch.clean_up)


async def run_attack(launch: Launch, opts: Options, settling: Callable[[], None],
                     stopping: list[asyncio.Task[None]] | None = None) -> Result:
    """The attack from its launch to its results. With `stopping`, its processes are stopped in a task added
    there (the next attack need not wait); else before this returns."""
    attack, result = launch.attack, launch.result
    started = time.monotonic()
    fake: Fake | None = None
    service: Service | None = None
    try:
        fake, service = await launch.task
        result.details["start_wait_s"] = round(time.monotonic() - started, 2)
        async with sessions() as (pooled, fresh):
            ctx = Ctx(service, fake, pooled, fresh, result, opts.smoke, opts.repo, 0)
            await ctx.post(normal_body(0, "warm-up"), record=False)  # first request's lazy imports and connections
            result.mem_before = service.rss_mb()
            ctx.log_offset = service.log_size()
            await measure(attack, ctx, opts, settling)
    except Skipped as exc:
        result.skipped = str(exc)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:300]
        traceback.print_exc(file=sys.stderr)
    finally:
        settling()
        if stopping is None:
            await stop_launch(launch, fake, service)
        else:
            stopping.append(asyncio.create_task(stop_launch(launch, fake, service)))
        result.seconds = time.monotonic() - started
    return result


class Pipeline:
    """Runs the attacks one after another; each attack's processes start while the previous one settles. In
    --smoke they start while it runs, and stop while the next one runs: the smoke run shows that every attack
    works, in the least time; the full run measures, with nothing else of its own running."""

    def __init__(self, attacks: list[Attack], opts: Options) -> None:
        self.attacks, self.opts = attacks, opts
        self.launches: dict[int, Launch] = {}
        self.stopping: list[asyncio.Task[None]] = []

    def launch(self, index: int) -> None:
        if index < len(self.attacks) and index not in self.launches:
            self.launches[index] = Launch.start(self.attacks[index], self.opts)

    async def run(self) -> list[Result]:
        results = []
        try:
            for i, attack in enumerate(self.attacks):
                self.launch(i)
                if self.opts.smoke:  # two ahead: a short attack is over before one service has started
                    self.launch(i + 1)
                    self.launch(i + 2)
                print(f"[{attack.name}] running", file=sys.stderr, flush=True)
                result = await run_attack(self.launches.pop(i), self.opts, functools.partial(self.launch, i + 1),
                                          self.stopping if self.opts.smoke else None)
                said = f"SKIPPED: {result.skipped}" if result.skipped else result.check
                print(f"[{attack.name}] {result.seconds:.1f} s: {said}", file=sys.stderr, flush=True)
                results.append(result)
        finally:
            for launch in self.launches.values():
                await launch.abandon()
            await asyncio.gather(*self.stopping, return_exceptions=True)
        return results


def mb(x: float) -> str:
    return "?" if x != x else f"{x:.0f}"


def row(r: Result) -> str:
    over = sum(x > r.budget + 0.1 for x in r.latencies)
    share = f"{over / r.requests:.1%} (>{r.budget + 0.1:.1f} s)" if r.requests else "n/a"
    requests = f"{r.requests}" + (f" (+{r.raw} raw)" if r.raw else "")
    non200 = f"{r.non200}" + (f" ({r.conn_errors} no answer)" if r.conn_errors else "")
    check = r.check
    if r.skipped:
        return f"| {r.name} | - | - | - | - | - | SKIPPED: {r.skipped.replace('|', '/')} |"
    if r.error:
        check = f"SCRIPT ERROR: {r.error}; {check}"
    if not r.alive_at_end:
        check = f"SERVICE DIED; {check}"
    worst = ms(max(r.latencies)) if r.latencies else "n/a"
    memory = f"{mb(r.mem_before)} / {mb(r.mem_peak)} / {mb(r.mem_after)}"
    return f"| {r.name} | {requests} | {non200} | {share} | {worst} | {memory} | {check.replace('|', '/')} |"


def report(results: list[Result], code: str, opts: Options, seconds: float) -> str:
    lines = [f"Service code: {code} ({'smoke' if opts.smoke else 'full'} run, {seconds:.0f} s)", "",
             "| attack | requests | non-200 answers | share over budget+100 ms | worst latency "
             "| memory before / peak / after (MB) | check |", "|---|---|---|---|---|---|---|"]
    lines += [row(r) for r in results]
    lines += ["", "What good looks like:"]
    lines += [f"- {r.name}: {r.good}" for r in results]
    return "\n".join(lines)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def attack_list() -> str:
    width = max(len(a.name) for a in ATTACKS)
    lines = [f"  {a.name:<{width}}  {a.what}" + ("" if a.smoke else " (not in --smoke)") for a in ATTACKS]
    return "attacks (each against a fresh service; --only NAME runs one):\n" + "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, epilog=attack_list(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose app/ the service runs")
    parser.add_argument("--smoke", action="store_true",
                        help="the attacks marked for it, shortened (well under 90 s); see the list below")
    parser.add_argument("--only", action="append", choices=[a.name for a in ATTACKS], metavar="NAME",
                        help="run only this attack (repeatable; with --smoke, shortened); see the list below")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--logs", type=Path, help="keep each attack's service log in this directory")
    return parser.parse_args()


def import_payloads(repo: Path) -> None:
    global transfer_request
    sys.path.insert(0, str(repo))
    from tests.vapi_payloads import transfer_request as builder

    transfer_request = builder


async def run_all(opts: Options, names: list[str] | None) -> list[Result]:
    chosen = [a for a in ATTACKS if a.name in names] if names else [a for a in ATTACKS if a.smoke or not opts.smoke]
    return await Pipeline(chosen, opts).run()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """On uvloop when installed (as the service runs): less client-side overhead in the measurements."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--flood-worker":  # report-flood's clients, in their own process
        print(json.dumps(run(flood_worker(json.loads(sys.argv[2])))), flush=True)
        return
    args = parse_args()
    repo = args.repo.resolve()
    raise_fd_limit()
    code = verify_code(repo)
    import_payloads(repo)
    logs = args.logs.resolve() if args.logs else Path(tempfile.mkdtemp(prefix="chaos-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    opts = Options(repo, args.smoke, logs)
    started = time.monotonic()
    try:
        results = run(run_all(opts, args.only))
    finally:
        if not args.logs:
            shutil.rmtree(logs, ignore_errors=True)
    print(report(results, code, opts, time.monotonic() - started), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"code": code, "smoke": opts.smoke,
                                         "results": [dataclasses.asdict(r) for r in results]}, indent=1))


if __name__ == "__main__":
    main()
