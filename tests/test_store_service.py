"""The service and its store at the edges: a store that cannot be opened stops `serve` with one `Error:` line; a
database that is down at start, or stops while calls come in, never costs a caller their answer, and once it is
back no row is lost; two service processes share one PostgreSQL, so a decision made on one is joined to the
end-of-call report the other received.

The PostgreSQL tests start a throwaway server (tests/postgres.py; skipped where PostgreSQL is not installed, failing
in CI) and real `switchboard serve` processes (tests/service_process.py).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.errors import UserError
from app.service.app import create_app
from app.settings import Settings
from app.store import StoreConfigError, StoreError, open_store_sync
from tests import postgres
from tests.conftest import ROOT
from tests.conftest import poll as shared_poll
from tests.service_process import ServiceProcess
from tests.test_outcomes import BILLING, report
from tests.vapi_payloads import transfer_request

WAIT = 60.0  # seconds to wait for rows once the database is back: generous, for a busy 2-core machine
BILLING_TURNS = [("bot", "How can I help?"), ("user", "I was charged twice this month and I want a refund")]
OUTAGE = 20.0  # seconds PostgreSQL is stopped
RATE = 5.0  # requests a second while it is stopped


poll = functools.partial(shared_poll, timeout=WAIT)  # tests.conftest.poll, with this file's patience


def serve_error(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run([sys.executable, "-m", "app", "serve", "--port", str(postgres.free_port())], cwd=ROOT,
                          env=full, capture_output=True, text=True, timeout=60, check=False)


def test_a_sqlite_file_that_cannot_be_written_stops_serve_with_one_error_line(tmp_path: Path,
                                                                              catalogue_path: Path) -> None:
    (tmp_path / "file").write_text("")
    url = f"sqlite:///{tmp_path}/file/switchboard.db"
    with pytest.raises(StoreError, match="cannot create the folder of the SQLite file") as caught:
        create_app(Settings(destinations=catalogue_path, database_url=url))
    assert isinstance(caught.value, UserError)
    done = serve_error({"SWITCHBOARD_DATABASE_URL": url}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and "SWITCHBOARD_DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_database_url_that_cannot_work_stops_serve(tmp_path: Path, catalogue_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="not supported"):
        create_app(Settings(destinations=catalogue_path, database_url="mysql://db/switchboard"))
    done = serve_error({"SWITCHBOARD_DATABASE_URL": "mysql://db/switchboard"}, tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("Error: SWITCHBOARD_DATABASE_URL"), done.stderr


def test_a_database_down_at_start_never_stops_the_service(service_factory: Any) -> None:
    """Nothing listens on that port: the service starts, answers, and the rows wait in the buffer."""
    service = service_factory(router="offline",
                              database_url=f"postgresql://postgres@127.0.0.1:{postgres.free_port()}/nowhere")
    answer = service.post(transfer_request(BILLING_TURNS, call_id="call-down"))
    assert answer.status_code == 200 and answer.json()["destination"]["number"] == "+14155550142"
    response = service.post({"message": report("call-down", at=time.time(), transfers=[(BILLING, "connected")])})
    assert response.status_code == 200 and response.json() == {}
    time.sleep(1.1)  # /healthz reads the store's state once a second
    store = service.client.get("/healthz").json()["store"]
    assert store["kind"] == "postgresql" and store["connected"] is False and store["buffered"] >= 1


# ----- PostgreSQL -----


def service_env(url: str, catalogue: Path) -> dict[str, str]:
    return {"SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_ROUTER": "offline",
            "SWITCHBOARD_DESTINATIONS": str(catalogue), "SWITCHBOARD_RELOAD_INTERVAL": "0"}


def test_two_service_processes_on_one_postgresql_join_across_them(pg_url: str, tmp_path: Path,
                                                                  catalogue_path: Path) -> None:
    env = service_env(pg_url, catalogue_path)
    first = ServiceProcess(env, tmp_path / "first.log")
    try:
        second = ServiceProcess(env, tmp_path / "second.log")
    except BaseException:
        first.stop()
        raise
    try:
        answer = httpx2.post(first.url + "/webhook", json=transfer_request(BILLING_TURNS, call_id="call-two-procs"),
                             timeout=30)
        assert answer.status_code == 200 and answer.json()["destination"]["extension"] == "204"
        with open_store_sync(pg_url) as reader:
            poll(lambda: reader.call_sync("call-two-procs").decisions, "the first process's decision in PostgreSQL")
            message = report("call-two-procs", "assistant-forwarded-call", at=time.time() + 30,
                             destination=BILLING, transfers=[(BILLING, "connected")])
            response = httpx2.post(second.url + "/webhook", json={"message": message}, timeout=30)
            assert response.status_code == 200 and response.json() == {}
            poll(lambda: reader.call_sync("call-two-procs").decisions[0].outcome == "reached",
                 "the second process to join the report to the first one's decision")
        page = httpx2.get(second.url + "/metrics", timeout=30).text
        assert 'switchboard_transfer_outcomes_total{destination="billing",outcome="reached"} 1.0' in page
    finally:
        first.stop()
        second.stop()


def test_postgresql_stopped_under_traffic_loses_no_answer_and_no_row(pg: postgres.PostgresServer, pg_url: str,
                                                                     service_factory: Any) -> None:
    """PostgreSQL stops for OUTAGE seconds while destination requests and their calls' end-of-call reports come
    in at RATE a second: every one is answered as usual; once it is back, every decision and event is written
    and every decision joined to its report."""
    service = service_factory(router="offline", database_url=pg_url)
    calls: list[str] = []
    answered = 0

    def one_call(n: int) -> None:
        nonlocal answered
        call_id = f"call-outage-{n}"
        started = time.monotonic()
        answer = service.post(transfer_request(BILLING_TURNS, call_id=call_id))
        assert answer.status_code == 200 and answer.json()["destination"]["extension"] == "204"
        assert time.monotonic() - started < 5.0 + 1.0  # within the budget (SWITCHBOARD_TIMEOUT) and then some
        message = report(call_id, "assistant-forwarded-call", at=time.time() + 1, destination=BILLING,
                         transfers=[(BILLING, "connected")])
        response = service.post({"message": message})
        assert response.status_code == 200 and response.json() == {}
        calls.append(call_id)
        answered += 1

    one_call(0)  # with the database up
    pg.stop()
    try:
        end = time.monotonic() + OUTAGE
        n = 1
        while time.monotonic() < end:  # bounded: OUTAGE seconds at RATE requests a second (two per call)
            one_call(n)
            n += 1
            time.sleep(2 / RATE)
    finally:
        pg.start()
    assert answered == len(calls) >= OUTAGE * RATE / 2 / 2  # half the rate or better on a busy machine
    with open_store_sync(pg_url) as reader:
        def all_joined() -> bool:
            records = [reader.call_sync(c) for c in calls]
            return all(len(r.decisions) == 1 and len(r.events) == 2 and r.decisions[0].outcome == "reached"
                       for r in records)

        poll(all_joined, f"all {len(calls)} calls written and joined once PostgreSQL is back")
    stats = service.state.store.stats()
    assert stats.dropped == 0 and stats.rejected == 0 and stats.lost == 0
    page = service.client.get("/metrics").text  # the joins during the outage waited for the database
    deferred = next(line for line in page.splitlines()
                    if line.startswith('switchboard_outcome_messages_total{result="deferred"}'))
    assert float(deferred.split()[1]) >= 1
