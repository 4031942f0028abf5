"""Health and reload that tell the truth (issue 17): /healthz says "degraded" while the last reload failed and names
the catalogue in force (file, hash, when loaded), the same hash is on every decision line and in the metrics,
SIGHUP reloads every worker of `serve --workers 2` in place, `serve` says where it listens, warns once and passes
--catalogue/--prompt to its workers, and every decision outcome is counted and documented."""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx2

from app.loading import catalogue_digest
from app.service.reload import reload
from tests.conftest import ROOT, decision_logs, poll
from tests.fake_openai import answer
from tests.service_process import ServiceProcess, free_port
from tests.vapi_payloads import transfer_request

BILLING = transfer_request([("user", "I was charged twice on my bill")])
SILENT = transfer_request([("bot", "Brightline, how can I help?")])  # no caller words: outcome no_conversation
BROKEN = '{"destinations": [{"id": "x"}]}'


def without_outages(path: Path) -> None:
    data = json.loads(path.read_text())
    data["destinations"] = [d for d in data["destinations"] if d["id"] != "outages"]
    path.write_text(json.dumps(data))


def metric(text: str, name: str) -> dict[str, float]:
    """The samples of one metric on a /metrics page: {labels as written: value}."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name):].rpartition(" ")
            found[labels] = float(value)
    return found


# --- /healthz, the decision lines and the metrics, in one process ------------------------------------------------


def test_a_failed_reload_is_degraded_until_a_good_one(service_factory, catalogue_path, log_records):
    """Reported: after a failed reload /healthz still said "ok"; only a log line said the old catalogue stayed."""
    service = service_factory(router="offline", reload_interval=0.05)
    health = lambda: service.client.get("/healthz")  # noqa: E731
    first = health().json()
    old_hash = catalogue_digest(catalogue_path.read_bytes())
    assert first["status"] == "ok" and "reload_failed" not in first
    assert first["catalogue"]["file"] == "destinations.json" and first["catalogue"]["hash"] == old_hash
    loaded = dt.datetime.fromisoformat(first["catalogue"]["loaded"])
    assert loaded.utcoffset() == dt.timedelta(0) and abs(dt.datetime.now(dt.UTC) - loaded).total_seconds() < 60

    original = catalogue_path.read_bytes()
    catalogue_path.write_text(BROKEN)
    degraded = poll(lambda: (r := health()).json()["status"] == "degraded" and r, "degraded", 10)
    assert degraded.status_code == 200  # the old catalogue still answers
    failed = next(r for r in log_records if r.getMessage() == "reload_failed").fields  # type: ignore[attr-defined]
    body = degraded.json()
    assert "destinations[0] (id 'x')" in failed["error"] and failed["failed"] == "catalogue"
    assert body["reload_failed"]["what"] == "catalogue" and body["reload_failed"]["file"] == "destinations.json"
    assert body["reload_failed"]["error"] == "see the reload_failed log line"
    assert body["reload_failed"]["trigger"] == "file changed" and failed["kept_catalogue_hash"] == old_hash
    assert body["catalogue"] == first["catalogue"]  # still the one in force
    assert service.post(BILLING).json()["destination"]["number"] == "+14155550142"
    page = service.client.get("/metrics").text
    assert metric(page, "switchboard_reload_failures_total") == {"": 1.0}
    assert metric(page, "switchboard_catalogue_info") == {f'{{hash="{old_hash}"}}': 1.0}

    catalogue_path.write_bytes(original)  # the same files as in force: nothing to compile, and no longer degraded
    assert poll(lambda: health().json()["status"] == "ok", "ok again", 10)
    assert health().json()["catalogue"] == first["catalogue"]

    without_outages(catalogue_path)
    new_hash = catalogue_digest(catalogue_path.read_bytes())
    poll(lambda: health().json()["catalogue"]["hash"] == new_hash, "the new catalogue in /healthz", 10)
    body = health().json()
    assert body["status"] == "ok" and body["destinations"] == 8 and body["catalogue"]["loaded"] >= \
        first["catalogue"]["loaded"]
    page = service.client.get("/metrics").text
    assert metric(page, "switchboard_catalogue_info") == {f'{{hash="{new_hash}"}}': 1.0}  # the old one is gone
    assert metric(page, "switchboard_reload_failures_total") == {"": 1.0}
    service.post(BILLING)
    assert decision_logs(log_records)[-1]["catalogue_hash"] == new_hash
    reloaded = [r.fields for r in log_records if r.getMessage() == "reloaded"]  # type: ignore[attr-defined]
    assert reloaded[-1]["catalogue_hash"] == new_hash


def test_the_health_page_quotes_no_file_and_no_server_path_after_a_failed_reload(service_factory, catalogue_path,
                                                                                prompt_path, log_records):
    """Reported: /healthz (no credentials) gave a failed reload's whole error, which quoted a SIP URI's password,
    and the files' absolute paths. It names the file that failed; the error is on the log line only."""
    service = service_factory(router="offline")
    first = service.client.get("/healthz").json()
    assert first["catalogue"]["file"] == "destinations.json" and first["prompt"]["file"] == "route.md"
    assert set(first["catalogue"]) == {"file", "hash", "loaded"}  # one shape for both files
    assert set(first["prompt"]) == {"name", "file", "hash", "packaged", "loaded"} and first["prompt"]["name"] == "route"
    assert first["prompt"]["packaged"] is False  # a prompt file named in the settings: the operator's own
    started = next(r for r in log_records if r.getMessage() == "started").fields  # type: ignore[attr-defined]
    assert started["catalogue_file"] == str(catalogue_path) and started["prompt_file"] == str(prompt_path)
    assert (started["catalogue_hash"], started["prompt_hash"]) == (first["catalogue"]["hash"], first["prompt"]["hash"])

    original = catalogue_path.read_bytes()
    data = json.loads(original)
    data["destinations"][0]["destination"] = {"type": "sip", "sipUri": "admin:S3cretPassw0rd@pbx.example.com"}
    catalogue_path.write_text(json.dumps(data))
    reload(service.state, logging.getLogger("switchboard"), "SIGHUP")  # as SIGHUP does, in this thread
    page = service.client.get("/healthz").text
    body = json.loads(page)
    assert body["status"] == "degraded" and body["reload_failed"]["what"] == "catalogue"
    assert "S3cretPassw0rd" not in page and str(catalogue_path.parent) not in page
    failed = [r.fields for r in log_records if r.getMessage() == "reload_failed"]  # type: ignore[attr-defined]
    assert "S3cretPassw0rd" in failed[-1]["error"]  # the operator's own log keeps the whole error

    catalogue_path.write_bytes(original)
    prompt_path.write_text("no front matter")
    reload(service.state, logging.getLogger("switchboard"), "SIGHUP")
    page = service.client.get("/healthz").text
    body = json.loads(page)
    assert body["reload_failed"]["what"] == "prompt" and body["reload_failed"]["file"] == "route.md"
    assert str(prompt_path.parent) not in page and body["prompt"] == first["prompt"]


def test_every_decision_line_names_the_catalogue_and_no_conversation_is_counted(service_factory, log_records):
    """Reported: no_conversation was logged but missing from switchboard_decisions_total."""
    service = service_factory(router="offline")
    in_force = service.client.get("/healthz").json()["catalogue"]["hash"]
    service.post(BILLING)
    answer = service.post(SILENT)
    assert answer.status_code == 200 and "error" in answer.json()
    lines = decision_logs(log_records)
    assert [line["outcome"] for line in lines] == ["routed", "no_conversation"]
    assert [line["catalogue_hash"] for line in lines] == [in_force, in_force]
    started = next(r for r in log_records if r.getMessage() == "started").fields  # type: ignore[attr-defined]
    assert started["catalogue_hash"] == in_force
    decisions = metric(service.client.get("/metrics").text, "switchboard_decisions_total")
    assert decisions == {'{destination="billing",kind="transfer",outcome="routed"}': 1.0,
                         '{destination="none",kind="transfer",outcome="no_conversation"}': 1.0}


def test_the_health_page_is_still_rendered_once_while_degraded():
    """/healthz's cost must not grow with the catalogue: the body is kept until something in it changes."""
    from app.engine import build_engine
    from app.loading import load_routing
    from app.service.health import HealthPage
    from app.service.state import ReloadFailure
    from app.settings import Settings

    settings = Settings(destinations=ROOT / "destinations.json", prompt=ROOT / "prompts/route.md", router="offline")
    engine = build_engine(settings, load_routing(settings), None)
    page = HealthPage(clock=lambda: 0.0)
    failure = ReloadFailure("catalogue", "destinations.json", "2026-01-01T00:00:00Z", "SIGHUP")
    first, status = page.render(engine, "closed", loaded_at="2026-01-01T00:00:00Z", failure=failure)
    again, _ = page.render(engine, "closed", loaded_at="2026-01-01T00:00:00Z",
                           failure=ReloadFailure(failure.what, failure.file, failure.at, failure.trigger))
    assert status == 200 and again is first and json.loads(first)["status"] == "degraded"
    ok, _ = page.render(engine, "closed", loaded_at="2026-01-01T00:00:00Z")
    assert json.loads(ok)["status"] == "ok" and "reload_failed" not in json.loads(ok)


# --- the documented outcomes are the code's --------------------------------------------------------------------


def code_outcomes() -> set[str]:
    """Every decision outcome the code can give: the strings assigned to a Decision's `outcome` (app/decision/),
    and the service's own (no_conversation), read from the source so that a new one cannot go unnoticed."""
    found: set[str] = set()
    for path in [*(ROOT / "app/decision").glob("*.py"), ROOT / "app/service/webhook.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "outcome" and isinstance(node.value, ast.Constant):
                found.add(node.value.value)
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = zip(target.elts, node.value.elts, strict=True) if isinstance(target, ast.Tuple) and \
                        isinstance(node.value, ast.Tuple) else [(target, node.value)]
                    for name, value in pairs:
                        if isinstance(name, ast.Attribute) and name.attr == "outcome" and \
                                isinstance(value, ast.Constant):
                            found.add(value.value)
    return found | {"no_conversation"}  # the webhook's answer to a request without caller words


def test_every_list_of_outcomes_in_the_docs_is_complete():
    """Reported: the list of outcomes left out closed, low_confidence and no_conversation."""
    outcomes = code_outcomes()
    assert {"routed", "closed", "low_confidence", "no_match", "fallback", "no_conversation"} <= outcomes
    lists = 0
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for paragraph in page.read_text().split("\n\n"):
            words = set(re.findall(r"`([a-z_]+)`", paragraph))
            if len(words & outcomes) >= 4 and {"routed", "no_match"} <= words:  # a list of decision outcomes
                lists += 1
                assert outcomes <= words, f"{page.name}: the list of outcomes lacks {sorted(outcomes - words)}"
    assert lists >= 1


def test_the_docs_say_reload_failures_are_counted_by_each_worker():
    """Reported: switchboard_reload_failures_total reads 2.0 after one bad SIGHUP with --workers 2 (each worker
    counts its own, as test_sighup_reloads_every_worker_in_place sees), and the docs did not say how it counts:
    an alert written for one would be wrong by a factor of N."""
    text = " ".join((ROOT / "docs/operations.md").read_text().split())
    said = text[text.index("`switchboard_reload_failures_total` ("):][:600]
    assert "counted by each worker" in said and "with `--workers N` one bad `SIGHUP` adds N" in said


def test_what_a_reload_can_fail_on_is_what_the_docs_say():
    """Reported: /healthz's reload_failed.what could be "settings", which the docs did not list (only catalogue
    or prompt) and no reload can fail on: a reload does not change the settings start-up checked."""
    from typing import get_args

    from app.service.state import FailedFile

    text = " ".join((ROOT / "docs/operations.md").read_text().split())
    assert get_args(FailedFile) == ("catalogue", "prompt")
    assert "says which file could not be used (`catalogue` or `prompt`)" in text


def test_a_worker_still_starting_gets_the_sighup_once_it_serves(monkeypatch):
    """Before a worker serves, its SIGHUP handler is not installed and the signal would end it: the supervisor
    holds the signal for it, and a worker that was replaced meanwhile reads the files afresh."""
    from app.service import supervisor as workers

    class Worker:
        def __init__(self, pid: int, ready: bool) -> None:
            self.pid, self.ready = pid, ready

        def is_ready(self, timeout: float) -> bool:
            return self.ready

    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(workers.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    supervisor = workers.Supervisor.__new__(workers.Supervisor)  # without __init__: it takes this process's signals
    serving, starting = Worker(101, True), Worker(102, False)
    supervisor.processes, supervisor.should_exit = [serving, starting], threading.Event()
    supervisor.handle_hup()
    assert sent == [(101, signal.SIGHUP)] and supervisor.hup_pending == {102}
    supervisor.forward_hup()
    assert sent == [(101, signal.SIGHUP)]
    starting.ready = True
    supervisor.forward_hup()
    assert sent == [(101, signal.SIGHUP), (102, signal.SIGHUP)] and supervisor.hup_pending == set()
    starting.ready = False
    supervisor.handle_hup()
    assert supervisor.hup_pending == {102}
    supervisor.processes = [serving, Worker(103, True)]  # 102 died before it was ready: 103 reads the files anew
    supervisor.forward_hup()
    assert supervisor.hup_pending == set() and (103, signal.SIGHUP) not in sent


def test_a_stopping_supervisor_passes_no_sighup_on(monkeypatch):
    """Reported: after Ctrl-C or SIGTERM the supervisor still passed SIGHUP on to its workers, which were stopping
    (a SIGHUP once a worker's event loop has closed ends it). Stopping wins, also when both signals come together
    and the kernel hands over SIGHUP (the lower number) first."""
    from app.service import supervisor as workers

    class Worker:
        pid = 101

        def is_ready(self, timeout: float) -> bool:
            return True

    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(workers.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    supervisor = workers.Supervisor.__new__(workers.Supervisor)  # without __init__: it takes this process's signals
    supervisor.processes, supervisor.hup_pending = [Worker()], set()
    supervisor.should_exit = threading.Event()
    supervisor.signal_queue = [signal.SIGHUP, signal.SIGINT]  # as a Ctrl-C and a SIGHUP that came together queue
    supervisor.handle_signals()
    assert supervisor.should_exit.is_set() and sent == [] and supervisor.signal_queue == []
    supervisor.handle_hup()  # one that comes later, while the workers stop
    supervisor.hup_pending = {101}  # one owed from before
    supervisor.forward_hup()
    assert sent == []
    supervisor.should_exit.clear()
    supervisor.signal_queue = [signal.SIGHUP]  # while serving, it is passed on as before
    supervisor.handle_signals()
    assert sent == [(101, signal.SIGHUP)]


# --- serve, as a process ---------------------------------------------------------------------------------------


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def events(log: Path, name: str) -> list[dict[str, Any]]:
    return [line for line in lines(log) if line["event"] == name]


def wait_for(log: Path, name: str, count: int) -> list[dict[str, Any]]:
    """The `name` lines once there are `count` of them."""
    def enough() -> list[dict[str, Any]] | None:
        found = events(log, name)
        return found if len(found) >= count else None
    found: list[dict[str, Any]] = poll(enough, f"{count} {name} lines")
    return found


def hashes(url: str, asks: int = 8) -> set[str]:
    """The catalogue hashes /healthz gives over several connections (the kernel spreads them over the workers)."""
    return {httpx2.get(url + "/healthz", timeout=5).json()["catalogue"]["hash"] for _ in range(asks)}


def test_sighup_reloads_every_worker_in_place(tmp_path, catalogue_path, prompt_path):
    """Reported: SIGHUP with --workers 2 restarted the workers (two `started` lines, no `reloaded`)."""
    log = tmp_path / "log"
    env = {"SWITCHBOARD_ROUTER": "offline", "SWITCHBOARD_DESTINATIONS": str(catalogue_path),
           "SWITCHBOARD_PROMPT": str(prompt_path), "SWITCHBOARD_RELOAD_INTERVAL": "0"}
    service = ServiceProcess(env, log, workers=2)
    try:
        old_hash = catalogue_digest(catalogue_path.read_bytes())
        workers = {line["pid"] for line in wait_for(log, "started", 2)}
        assert len(workers) == 2 and service.proc.pid not in workers
        assert hashes(service.url) == {old_hash}

        original = catalogue_path.read_bytes()
        catalogue_path.write_text(BROKEN)
        service.hup()
        failed = wait_for(log, "reload_failed", 2)
        assert {line["pid"] for line in failed} == workers
        assert {httpx2.get(service.url + "/healthz").json()["status"] for _ in range(8)} == {"degraded"}
        page = httpx2.get(service.url + "/metrics").text
        assert metric(page, "switchboard_reload_failures_total") == {"": 2.0}

        catalogue_path.write_bytes(original)
        without_outages(catalogue_path)
        new_hash = catalogue_digest(catalogue_path.read_bytes())
        service.hup()
        wait_for(log, "reloaded", 2)
        poll(lambda: hashes(service.url) == {new_hash}, "every worker's /healthz on the new catalogue")
        reloaded = events(log, "reloaded")
        assert {line["pid"] for line in reloaded} == workers  # the same processes, reloaded in place
        assert {line["catalogue_hash"] for line in reloaded} == {new_hash}
        assert len(events(log, "started")) == 2 and service.proc.poll() is None  # no worker was restarted
        assert {httpx2.get(service.url + "/healthz").json()["status"] for _ in range(8)} == {"ok"}
        # with --workers 2 the metrics come from shared files: the old hash must not linger there
        page = httpx2.get(service.url + "/metrics").text
        assert metric(page, "switchboard_catalogue_info") == {f'{{hash="{new_hash}"}}': 1.0}
        assert old_hash not in page and metric(page, "switchboard_reload_failures_total") == {"": 2.0}
        decision = httpx2.post(service.url + "/webhook", json=BILLING)
        assert decision.status_code == 200
        assert wait_for(log, "decision", 1)[-1]["catalogue_hash"] == new_hash
    finally:
        service.stop()
    assert service.proc.returncode in (0, -15)  # SIGTERM still stops the supervisor and its workers


def test_serve_says_where_it_listens_passes_its_files_and_warns_once(tmp_path, catalogue_path, prompt_path):
    """Reported: serve printed no address, workers' lines had no process id, an unknown setting was warned about
    once by serve and again by each worker, and --catalogue/--prompt did not exist for serve."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "mine.json").write_bytes(catalogue_path.read_bytes())
    without_outages(work / "mine.json")
    (work / "route.md").write_bytes(prompt_path.read_bytes())
    log = tmp_path / "log"
    # relative to the folder serve runs in, which has no destinations.json: the workers must get the flags' files
    service = ServiceProcess({"SWITCHBOARD_ROUTER": "offline", "SWITCHBOARD_TIMOUT": "3"}, log, workers=2,
                             args=("--catalogue", "mine.json", "--prompt", "route.md"), cwd=work)
    try:
        body = httpx2.get(service.url + "/healthz").json()
        assert body["destinations"] == 8 and body["catalogue"]["file"] == "mine.json"
        started = wait_for(log, "started", 2)
        assert len({line["pid"] for line in started}) == 2 and service.proc.pid not in {s["pid"] for s in started}
        text = log.read_text()
        assert f"Switchboard listening on http://127.0.0.1:{service.port}" in text
        assert text.count("SWITCHBOARD_TIMOUT") == 1  # said once, by serve, as an event in the log's format
        [unknown] = events(log, "unknown_setting")
        assert unknown["variable"] == "SWITCHBOARD_TIMOUT" and "SWITCHBOARD_TIMEOUT" in unknown["hint"]
        assert unknown["pid"] == service.proc.pid
        service.proc.send_signal(signal.SIGINT)  # Ctrl-C still stops the supervisor and, cleanly, its workers
        assert service.proc.wait(timeout=20) == 0
        assert {line["pid"] for line in wait_for(log, "store_closed", 2)} == {line["pid"] for line in started}
    finally:
        service.stop()


def test_a_sighup_while_serve_starts_is_one_reload_once_it_serves(tmp_path, fake, catalogue_path, prompt_path):
    """Reported: a SIGHUP 0.3 s after `serve` started ended it (rc 129): its handler was installed only once the
    store was open and the model warmed up. Now it is held, and serve reloads once it serves, since the files may
    have changed after they were read. And an unknown setting is one `unknown_setting` event in the log's format
    (JSON here), not a plain line that a JSON log pipeline cannot read."""
    fake.script(answer("billing", latency=1.5))  # the warm-up: serve is starting until it is answered
    log = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OPENAI_"))}
    env.update({"PYTHONPATH": str(ROOT), "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k",
                "SWITCHBOARD_WARMUP": "true", "SWITCHBOARD_DESTINATIONS": str(catalogue_path),
                "SWITCHBOARD_PROMPT": str(prompt_path), "SWITCHBOARD_RELOAD_INTERVAL": "0",
                "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "SWITCHBOARD_TIMOUT": "3"})
    url = f"http://127.0.0.1:{(port := free_port())}"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                                stdout=out, stderr=out)
    try:
        poll(lambda: fake.requests or proc.poll() is not None, "the warm-up request")
        assert proc.poll() is None, log.read_text()[-2000:]
        without_outages(catalogue_path)  # edited after serve read it
        proc.send_signal(signal.SIGHUP)  # while it waits for the warm-up's answer
        def serving() -> bool:
            with contextlib.suppress(httpx2.HTTPError):
                return httpx2.get(url + "/healthz", timeout=2).status_code == 200
            return proc.poll() is not None
        poll(serving, "serve to answer /healthz, or to end")
        assert proc.poll() is None, f"serve ended ({proc.returncode}): {log.read_text()[-2000:]}"
        reloaded = wait_for(log, "reloaded", 1)
        new_hash = catalogue_digest(catalogue_path.read_bytes())
        assert [line["trigger"] for line in reloaded] == ["SIGHUP"] and reloaded[0]["catalogue_hash"] == new_hash
        assert poll(lambda: httpx2.get(url + "/healthz").json()["catalogue"]["hash"] == new_hash, "the new hash")
        assert events(log, "warmed_up") and events(log, "started")[0]["pid"] == proc.pid
        unknown = events(log, "unknown_setting")
        assert [(u["variable"], u["level"]) for u in unknown] == [("SWITCHBOARD_TIMOUT", "warning")]
        assert "SWITCHBOARD_TIMEOUT" in unknown[0]["hint"] and "Warning:" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_killed_worker_leaves_no_catalogue_in_the_metrics(tmp_path, catalogue_path, prompt_path):
    """Reported: after a worker was killed (kill -9) and the catalogue reloaded, /metrics showed two
    switchboard_catalogue_info hashes: a worker that dies without closing never removed its gauges from the
    shared metrics folder. The supervisor does it for the workers it finds dead."""
    log = tmp_path / "log"
    env = {"SWITCHBOARD_ROUTER": "offline", "SWITCHBOARD_DESTINATIONS": str(catalogue_path),
           "SWITCHBOARD_PROMPT": str(prompt_path), "SWITCHBOARD_RELOAD_INTERVAL": "0"}
    service = ServiceProcess(env, log, workers=2)
    try:
        first = wait_for(log, "started", 2)
        os.kill(first[0]["pid"], signal.SIGKILL)
        replacement = wait_for(log, "started", 3)[-1]  # the supervisor starts another
        assert replacement["pid"] not in {line["pid"] for line in first}
        without_outages(catalogue_path)
        new_hash = catalogue_digest(catalogue_path.read_bytes())
        service.hup()
        assert {line["pid"] for line in wait_for(log, "reloaded", 2)} == {first[1]["pid"], replacement["pid"]}
        page = httpx2.get(service.url + "/metrics").text
        assert metric(page, "switchboard_catalogue_info") == {f'{{hash="{new_hash}"}}': 1.0}
    finally:
        service.stop()
