"""Callers without credentials and odd inputs at the HTTP edge: request heads past the bound (431, memory that
stays flat), /healthz and /metrics that stay cheap whatever the catalogue's size, /metrics behind a token,
timestamps at the ends of the date range, and text log lines that a request cannot forge. Raw sockets and
real services on loopback, bounded in count and time."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time

import httpx2
import pytest
from click.testing import CliRunner

from app.catalogue.destinations import Catalogue
from app.service.health import HOURS_REFRESH, HealthPage
from tests.conftest import ROOT, decision_logs
from tests.service_process import ServiceProcess
from tests.test_limits import connect, read_until_closed
from tests.vapi_payloads import transfer_request

SECRET = "s3cret-value"
METRICS_TOKEN = "scrape-token-1"
BODY = json.dumps(transfer_request([("user", "I was charged twice")])).encode()
FORGED = "12:00:00 INFO    decision outcome=forged call_id=x"


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    log = tmp_path_factory.mktemp("edge") / "service.log"
    service = ServiceProcess({"SWITCHBOARD_ROUTER": "offline", "SWITCHBOARD_SECRET": SECRET,
                              "SWITCHBOARD_READ_TIMEOUT": "2", "SWITCHBOARD_RELOAD_INTERVAL": "0",
                              "SWITCHBOARD_LOG_FORMAT": "text", "SWITCHBOARD_METRICS_TOKEN": METRICS_TOKEN}, log)
    yield service
    service.stop()


def request(extra: str = "", body: bytes = BODY, secret: bool = True) -> bytes:
    auth = f"x-vapi-secret: {SECRET}\r\n" if secret else ""
    return (f"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{auth}{extra}\r\n").encode() + body


def statuses(raw: bytes) -> list[bytes]:
    """The status of each answer on a connection (one answer's JSON body runs straight into the next)."""
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)


# --- 1. Request heads past the bound -------------------------------------------------------------------------


def test_a_header_past_the_byte_bound_is_431_and_closed(edge):
    """Reported: a 20 MiB header from a caller without credentials was read in full, then answered 401."""
    with connect(edge.url) as sock:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000)  # never ends
        reply = read_until_closed(sock)[0]
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:80]
    assert b"SWITCHBOARD_MAX_HEADER_BYTES" in reply and b"connection: close" in reply.lower()


def test_too_many_header_fields_is_431(edge):
    fields = "".join(f"x-f{i}: 1\r\n" for i in range(150))  # 1.5 KiB in all, but 150 fields
    with connect(edge.url) as sock:
        sock.sendall(request(fields, secret=False))
        reply = read_until_closed(sock)[0]
    assert statuses(reply) == [b"431"], reply[:80]


def test_a_long_request_line_counts_too(edge):
    with connect(edge.url) as sock:
        sock.sendall(b"GET /healthz?" + b"q" * 70_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = read_until_closed(sock)[0]
    assert statuses(reply) == [b"431"]


def test_heads_within_the_bound_still_work_on_one_connection(edge):
    """The count starts again with each request; a body in the same packet as the head is not counted."""
    padding = f"x-pad: {'p' * 40_000}\r\n"  # two of these are over 64 KiB, one is not
    big_body = json.dumps({**json.loads(BODY), "note": "n" * 300_000}).encode()
    with connect(edge.url) as sock:
        sock.sendall(request(padding) + request(padding, big_body) + request("connection: close\r\n"))
        reply = read_until_closed(sock)[0]
    assert statuses(reply) == [b"200", b"200", b"200"]


def test_a_pipelined_request_past_the_bound_is_refused(edge):
    """Headers that arrive in one read with the request before them are counted as they are parsed."""
    fields = "".join(f"x-f{i}: 1\r\n" for i in range(150))
    with connect(edge.url) as sock:
        sock.sendall(request() + request(fields))
        reply = read_until_closed(sock)[0]
    assert statuses(reply) == [b"200", b"431"]


def test_many_huge_heads_leave_memory_flat(tmp_path):
    """Reported: 50 connections without credentials, a 20 MiB header each: 75 -> 1,242 MB, 383 MB held after."""
    service = ServiceProcess({"SWITCHBOARD_ROUTER": "offline", "SWITCHBOARD_SECRET": SECRET,
                              "SWITCHBOARD_RELOAD_INTERVAL": "0"}, tmp_path / "log")
    outcomes: list[bytes] = []

    def flood() -> None:
        try:
            with connect(service.url) as sock:
                sock.settimeout(30)
                try:
                    sock.sendall(b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-big: ")
                    chunk = b"a" * 65536
                    for _ in range(320):  # 20 MiB
                        sock.sendall(chunk)
                    sock.sendall(b"\r\ncontent-length: 0\r\n\r\n")
                except OSError:
                    pass  # the server stopped reading: refused early, as it should
                outcomes.append(read_until_closed(sock, 30)[0][:12] or b"reset")
        except OSError:
            outcomes.append(b"reset")

    try:
        before = service.rss_mb()
        threads = [threading.Thread(target=flood) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        peak, after = service.peak_rss_mb(), service.rss_mb()
        assert peak - before < 30, (before, peak)  # was +134 MB for these 20 (and +1,167 MB for 50 reported)
        assert after - before < 15, (before, after)
        assert len(outcomes) == 20 and b"HTTP/1.1 401" not in outcomes, outcomes
        assert outcomes.count(b"HTTP/1.1 431") >= 1, outcomes
        assert httpx2.post(service.url + "/webhook", content=BODY, headers={"x-vapi-secret": SECRET}).status_code \
            == 200
    finally:
        service.stop()


# --- 2. /healthz and /metrics -----------------------------------------------------------------------------------


def big_catalogue(path, entries: int) -> None:
    data = json.loads((ROOT / "destinations.json").read_text())
    template = next(e for e in data["destinations"] if isinstance(e.get("hours"), dict))
    for i in range(entries):
        data["destinations"].append({**template, "id": f"team-{i}", "after_hours": None})
    path.write_text(json.dumps(data))


def test_healthz_works_out_the_hours_at_most_once_a_second(service_factory, catalogue_path, monkeypatch):
    """Reported: each /healthz went over every entry's hours; 20 pollers and 1,000 entries starved the model calls."""
    big_catalogue(catalogue_path, 1000)
    calls = []
    original = Catalogue.hours_now
    monkeypatch.setattr(Catalogue, "hours_now", lambda self, at: calls.append(at) or original(self, at))
    service = service_factory(router="offline")
    started = time.monotonic()
    bodies = [service.client.get("/healthz") for _ in range(200)]
    took = time.monotonic() - started
    assert {r.status_code for r in bodies} == {200}
    assert len(bodies[-1].json()["hours"]["closed"]) + len(bodies[-1].json()["hours"]["open"]) == 1003
    assert len(calls) <= took / HOURS_REFRESH + 2, (len(calls), took)  # was one per request: 200


def test_healthz_shows_a_change_at_once(service_factory, catalogue_path):
    """Cached, but never stale about what changed: a new catalogue, or the breaker."""
    import logging

    from app.service.reload import reload

    service = service_factory(router="offline")
    assert "sales" in json.dumps(service.client.get("/healthz").json()["hours"])
    data = json.loads(catalogue_path.read_text())
    data["destinations"] = [d for d in data["destinations"] if d["id"] != "sales"]
    data["assistants"] = {k: [i for i in ids if i != "sales"] for k, ids in data["assistants"].items()}
    catalogue_path.write_text(json.dumps(data))
    assert reload(service.state, logging.getLogger("switchboard"), "test")
    body = service.client.get("/healthz").json()
    assert body["destinations"] == 8 and "sales" not in json.dumps(body["hours"])


def test_health_page_reuses_its_body_until_something_changes(service_factory, monkeypatch):
    service = service_factory(router="offline")
    engine = service.state.engine
    calls = []
    original = Catalogue.hours_now
    monkeypatch.setattr(Catalogue, "hours_now", lambda self, at: calls.append(at) or original(self, at))
    now = [100.0]
    page = HealthPage(clock=lambda: now[0])
    first, status = page.render(engine, "closed")
    assert status == 200 and page.render(engine, "closed")[0] is first and len(calls) == 1
    opened = page.render(engine, "open")[0]
    assert json.loads(opened)["breaker"] == "open" and len(calls) == 1  # re-rendered, hours not worked out again
    now[0] += HOURS_REFRESH
    page.render(engine, "open")
    assert len(calls) == 2
    starting, status = page.render(None, "off")
    assert status == 503 and json.loads(starting)["status"] == "starting"


def test_metrics_rendering_is_spaced_by_its_own_cost(monkeypatch):
    """/metrics asked in a loop renders at most about a tenth of the time (74 ms a render at 3,000 series)."""
    from app.service import metrics as metrics_mod

    rendered = []
    monkeypatch.setattr(metrics_mod, "generate_latest", lambda registry: rendered.append(1) or b"x")
    clock = iter([0.0, 0.01,  # first render: 10 ms
                  0.05,  # within 10 x 10 ms of its end: the same bytes
                  0.2, 0.2])  # later: rendered afresh
    monkeypatch.setattr(metrics_mod.time, "monotonic", lambda: next(clock))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    m = metrics_mod.Metrics()
    m.render()
    m.render()
    assert len(rendered) == 1
    m.render()
    assert len(rendered) == 2


def test_metrics_can_require_a_token(edge):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": METRICS_TOKEN},
                    {"x-vapi-secret": SECRET}):
        refused = httpx2.get(edge.url + "/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert "SWITCHBOARD_METRICS_TOKEN" in refused.json()["error"]
        assert refused.headers["www-authenticate"] == "Bearer"
    ok = httpx2.get(edge.url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and "switchboard_requests_total" in ok.text
    assert httpx2.get(edge.url + "/healthz").status_code == 200  # health stays open, for load balancers


# --- 3. Timestamps at the ends of the date range -------------------------------------------------------------


EDGE_STAMPS = [-62135596800000, -62135596799000, -62135510400000, 253402300799000, 253402300798999,
               253402214400000, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", -62135596800, {"ms": 1}]


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Pacific/Kiritimati"])  # UTC-8 and UTC+14
@pytest.mark.parametrize("stamp", EDGE_STAMPS, ids=str)
def test_a_timestamp_at_the_end_of_the_range_is_decided_at_receipt(service_factory, catalogue_path, log_records,
                                                                   zone, stamp):
    """Reported: year 1 and year 9999 timestamps gave a 500 and a stack trace; the caller was not transferred."""
    data = json.loads(catalogue_path.read_text())
    data["timezone"] = zone
    for entry in [{"hours": data["hours"]}, *data["destinations"]]:  # the shared calendar, then the entries'
        if isinstance(entry.get("hours"), dict):
            entry["hours"]["timezone"] = zone
            entry["hours"].update(open={"mon-sun": "00:00-24:00"}, closed=[])  # open at receipt, whenever it runs
    catalogue_path.write_text(json.dumps(data))
    service = service_factory(router="offline")
    body = transfer_request([("user", "I was charged twice on my bill")])
    body["message"]["timestamp"] = stamp
    response = service.post(body)
    assert response.status_code == 200, response.text
    assert response.json()["destination"]["number"] == "+14155550142"
    log = decision_logs(log_records)[-1]
    assert log["timestamp_ignored"] == str(stamp) and log["outcome"] == "routed"


def test_a_usable_timestamp_is_not_flagged(service_factory, log_records):
    service_factory(router="offline").post(json.loads(BODY))
    assert decision_logs(log_records)[-1]["timestamp_ignored"] is None


@pytest.mark.parametrize("stamp", [-62135596800000, 253402300799000, "9999-12-31T23:59:59-14:00"])
def test_route_with_a_timestamp_at_the_end_of_the_range(tmp_path, stamp):
    from app.cli import cli

    data = json.loads((ROOT / "destinations.json").read_text())
    for entry in data["destinations"]:
        if isinstance(entry.get("hours"), dict):
            entry["hours"]["timezone"] = "Pacific/Kiritimati" if isinstance(stamp, str) or stamp > 0 \
                else "America/Los_Angeles"
    (tmp_path / "destinations.json").write_text(json.dumps(data))
    body = transfer_request([("user", "I was charged twice on my bill")])
    body["message"]["timestamp"] = stamp
    (tmp_path / "call.json").write_text(json.dumps(body))
    result = CliRunner().invoke(cli, ["route", "-r", "offline", str(tmp_path / "call.json")],
                                env={"SWITCHBOARD_DESTINATIONS": str(tmp_path / "destinations.json"),
                                     "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    answer = json.loads(result.stdout.splitlines()[0])
    assert "destination" in answer or "closed now" in answer["error"]


@pytest.mark.parametrize("at", ["9999-12-31T23:00", "0001-01-01T00:00+14:00", "9998-06-01T00:00"])
def test_route_at_a_time_outside_the_range_is_a_clear_error(at):
    from app.cli import cli

    request = str(ROOT / "examples/transfer-request.json")
    result = CliRunner().invoke(cli, ["route", "-r", "offline", request, "--at", at],
                                env={"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
                                     "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")})
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "give a time between years 2 and 9997" in result.stderr


def test_hours_at_datetime_min_and_max_never_raise():
    from app.catalogue.hours import parse

    for zone in ("America/Los_Angeles", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"):
        hours = parse({"timezone": zone, "open": {"mon": "09:00-09:01"}, "closed": ["9999-12-27"]}, None)
        for at in (dt.datetime.min.replace(tzinfo=dt.UTC), dt.datetime.max.replace(tzinfo=dt.UTC), dt.datetime.min,
                   dt.datetime.max, dt.datetime(9999, 12, 31, tzinfo=dt.timezone(dt.timedelta(hours=-23))),
                   dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=23)))):
            hours.is_open(at)
            assert hours.opens_text(at).startswith("it opens ")


# --- 4. Text log lines ---------------------------------------------------------------------------------------


def test_a_call_id_cannot_forge_a_text_log_line(edge):
    """Reported: with SWITCHBOARD_LOG_FORMAT=text, a call id with a newline wrote what looked like another event."""
    body = transfer_request([("user", "I was charged twice")], call_id="c-1\n" + FORGED)
    reply = httpx2.post(edge.url + "/webhook", json=body, headers={"x-vapi-secret": SECRET})
    assert reply.status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "c-1" not in edge.log_path.read_text():
        time.sleep(0.05)
    lines = edge.log_path.read_text().splitlines()
    assert not any(line.startswith(FORGED) for line in lines)
    line = next(line for line in lines if "c-1" in line)
    assert 'call_id="c-1\\n12:00:00 INFO    decision outcome=forged call_id=x"' in line
