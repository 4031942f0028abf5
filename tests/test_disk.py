"""The disk and the file system: a full or refusing disk under recording, named pipes and oversized files
where the catalogue, the prompt or a dataset should be, and readers of files cut off mid-line."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from app.dataset.labelling import _rows
from app.dataset.recording import Recorder
from app.decision.decider import Decision
from app.evaluation.run import iter_cases
from app.loading import load_catalogue as load
from tests.conftest import ROOT
from tests.service_process import ServiceProcess
from tests.vapi_payloads import transfer_request

TURNS = [("bot", "How can I help?"), ("user", "I was charged twice on my bill, call me on 415 555 0123")]
CATALOGUE = load(ROOT / "destinations.json")
ENV = {"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json"),
       "SWITCHBOARD_PROMPT": str(ROOT / "prompts/route.md")}


def decision() -> Decision:
    return Decision(outcome="routed", body={}, router="offline", chosen="billing", answered="billing")


def whole_lines(path: Path) -> list[dict]:
    """Every line of a recording, each a complete JSON object; the file ends with a line break."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "a partial line was left at the end"
    return [json.loads(line) for line in data.splitlines()]


def wait_until(check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def keep_alive_posts(url: str, bodies: list[dict], timeout: float = 10) -> list[int]:
    """POST each body in turn over ONE connection (http.client never reconnects on its own): a service that
    drops the connection after an answer fails the next request here."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    statuses = []
    try:
        for body in bodies:
            conn.request("POST", "/webhook", json.dumps(body), {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        conn.close()
    return statuses


# --- recording on a disk that refuses ---

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_costs_no_caller_an_answer(service_factory, tmp_path, log_records):
    """Reported: on a full disk 35 of 150 keep-alive callers lost their answer and every call logged a trace."""
    import socket

    record_dir = tmp_path / "rec"
    record_dir.mkdir()
    # the recording file this process will append to is /dev/full: every write fails with ENOSPC
    (record_dir / f"calls-{socket.gethostname()}-{os.getpid()}.jsonl").symlink_to("/dev/full")
    service = service_factory(router="offline", record_dir=record_dir)
    bodies = [transfer_request(TURNS, call_id=f"full-{i}") for i in range(30)]
    assert keep_alive_posts(service.thread.url, bodies) == [200] * 30
    recorder_counts = 'switchboard_recordings_total{result="failed"} 30.0'
    assert wait_until(lambda: recorder_counts in service.client.get("/metrics").text)
    failed = [r for r in log_records if r.getMessage() == "recording_failed"]
    assert len(failed) == 1, "failures are logged once per interval, not once per call"
    assert "No space left" in failed[0].fields["error"]
    assert not [r for r in log_records if r.exc_info or r.levelname == "ERROR"]


def test_a_short_write_is_taken_back(tmp_path):
    """A disk that fills mid-line left half a record, and the next one was glued onto it."""
    recorder = Recorder(tmp_path)
    message = transfer_request(TURNS)["message"]
    results = [recorder.record(dict(message, timestamp=1), decision(), CATALOGUE)]
    recorder.write = lambda fd, data: os.write(fd, data[: len(data) // 2])  # the disk takes half, then is full
    results.append(recorder.record(dict(message, timestamp=2), decision(), CATALOGUE))
    recorder.write = os.write
    results.append(recorder.record(dict(message, timestamp=3), decision(), CATALOGUE))
    rows = whole_lines(recorder.path)
    assert [r["id"].rsplit("-", 1)[1] for r in rows] == ["1", "3"]
    assert results == [True, False, True]
    assert recorder.counts == {"written": 2, "failed": 1, "dropped": 0}


CHILD = """
import os, resource, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from app.loading import load_catalogue as load
from app.decision.decider import Decision
from app.dataset.recording import Recorder
from tests.vapi_payloads import transfer_request
recorder = Recorder(Path({directory!r}))
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))  # no file of this process may grow past it
catalogue = load(Path({root!r}) / "destinations.json")
d = Decision(outcome="routed", body={{}}, router="offline", chosen="billing", answered="billing")
results = []
for i in range(30):
    try:
        results.append(recorder.record(transfer_request({turns!r}, call_id=f"c{{i}}")["message"], d, catalogue))
    except OSError as exc:  # (the code before the fix raised)
        results.append(False)
print(sum(results), len(results) - sum(results))
"""


def test_a_file_size_limit_leaves_only_whole_lines(tmp_path):
    """RLIMIT_FSIZE (ulimit -f) stands in for a full disk without mount privileges: writes past it are short."""
    limit = 6000
    script = CHILD.format(root=str(ROOT), directory=str(tmp_path), limit=limit, turns=TURNS)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    written, failed = map(int, done.stdout.split())
    assert written >= 1 and failed >= 1
    path = next(tmp_path.glob("calls-*.jsonl"))
    rows = whole_lines(path)
    assert len(rows) == written and path.stat().st_size <= limit


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 KiB file system (root only; CI runs as root). Unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()[:100]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_up_under_load(tmpfs, tmp_path):
    """The reported run, smaller: the real service recording onto 64 KiB until it is full."""
    service = ServiceProcess({"SWITCHBOARD_ROUTER": "offline", "SWITCHBOARD_RECORD_DIR": str(tmpfs)},
                             tmp_path / "log")
    turns = [*TURNS, ("user", "and my account number is 12345 " + "x" * 300)]
    statuses: list[int] = []
    errors: list[str] = []

    def caller(i: int) -> None:
        try:
            statuses.extend(keep_alive_posts(service.url, [transfer_request(turns, call_id=f"c{i}-{j}")
                                                           for j in range(4)]))
        except OSError as exc:
            errors.append(repr(exc))

    try:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        metrics = httpx2.get(service.url + "/metrics").text
    finally:
        service.stop()
    assert errors == [] and statuses == [200] * 120
    assert 'switchboard_recordings_total{result="failed"}' in metrics
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log and log.count('"recording_failed"') == 1
    path = next(tmpfs.glob("calls-*.jsonl"))
    rows = whole_lines(path)
    assert 0 < len(rows) < 120
    assert len(list(iter_cases([path]))) == len(rows) == len(_rows(path, print))  # eval and label read it all


def test_a_full_queue_drops_records_and_never_waits(tmp_path, log_records):
    recorder = Recorder(tmp_path, queue_size=2)
    release = threading.Event()

    def slow_disk(fd: int, data: bytes) -> int:
        release.wait(10)
        return os.write(fd, data)

    recorder.write = slow_disk
    message = transfer_request(TURNS)["message"]
    query = None
    started = time.monotonic()
    for i in range(20):
        recorder.submit(dict(message, timestamp=i), decision(), CATALOGUE, query)
    submitting = time.monotonic() - started
    release.set()
    recorder.close()
    assert submitting < 2.0  # twenty submits against a stuck disk; the writer's wait is never the caller's
    assert recorder.counts["dropped"] >= 17 and recorder.counts["written"] + recorder.counts["dropped"] == 20
    assert len(whole_lines(recorder.path)) == recorder.counts["written"]
    assert sum(r.getMessage() == "recording_failed" for r in log_records) == 1


# --- readers of a file cut off mid-line ---

def recorded_file(tmp_path: Path, cut: bool = True) -> Path:
    recorder = Recorder(tmp_path / "rec")
    for i in range(3):
        recorder.record(transfer_request(TURNS, call_id=f"c{i}")["message"], decision(), CATALOGUE)
    path = recorder.path
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["expected"] = rows[1]["expected"] = "billing"
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text[: -40] if cut else text)  # the last line lost its end: a write cut off by a full disk
    return path


def test_eval_skips_a_cut_off_last_line_with_a_warning(tmp_path):
    from app.cli import cli

    path = recorded_file(tmp_path)
    result = CliRunner().invoke(cli, ["eval", str(path), "-r", "offline", "-o", str(tmp_path / "out")], env=ENV)
    assert result.exit_code == 0, result.output
    assert f"Warning: {path}:3: skipped: the last line is cut off" in result.stderr
    calls = json.loads((tmp_path / "out/results.json").read_text())["combinations"][0]["calls"]
    assert sorted(c["id"].split("-")[0] for c in calls) == ["c0", "c1"]


def test_label_skips_a_cut_off_last_line_with_a_warning(tmp_path):
    from app.cli import cli

    path = recorded_file(tmp_path)
    result = CliRunner().invoke(cli, ["label", str(path)], input="\n", env=ENV)
    assert result.exit_code == 0, result.output
    assert f"Warning: {path}:3: skipped: the last line is cut off" in result.stderr
    assert "labelled 0, skipped 0, left 0" in result.output  # the two whole rows were labelled already
    assert path.read_text().count("\n") == 2  # the cut-off line is left as it was, last


def test_a_broken_line_in_the_middle_is_still_an_error(tmp_path):
    from app.cli import cli

    path = recorded_file(tmp_path, cut=False)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:50] + "\n"
    path.write_text("".join(lines))
    result = CliRunner().invoke(cli, ["eval", str(path), "-r", "offline"], env=ENV)
    assert result.exit_code == 2 and f"{path}:2:" in result.stderr


# --- named pipes and oversized files ---

@contextlib.contextmanager
def pipe_in_place_of(path: Path):
    """Swap `path` for a named pipe; afterwards open its writing end once, so that a reader stuck on it (the
    code before the fix) is let go, then put the file back."""
    saved = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        path.unlink()
        path.write_bytes(saved)


def test_a_named_pipe_at_reload_stops_no_caller(service_factory, catalogue_path, log_records):
    """Reported: a FIFO put where the catalogue was froze every caller (8.9 s waits, /healthz timed out)."""
    service = service_factory(router="offline", reload_interval=0.1)
    service.client.timeout = httpx2.Timeout(3.0)
    with pipe_in_place_of(catalogue_path):
        assert wait_until(lambda: any(r.getMessage() == "reload_failed" for r in log_records))
        failed = next(r for r in log_records if r.getMessage() == "reload_failed")
        assert "is a named pipe, not a regular file" in failed.fields["error"]
        for _ in range(5):
            response = service.post(transfer_request(TURNS))
            assert response.status_code == 200 and response.json()["destination"]["number"] == "+14155550142"
        assert service.client.get("/healthz").status_code == 200


def test_sighup_with_a_named_pipe_in_place_of_the_prompt(tmp_path, catalogue_path, prompt_path):
    service = ServiceProcess({"SWITCHBOARD_ROUTER": "offline", "SWITCHBOARD_DESTINATIONS": str(catalogue_path),
                              "SWITCHBOARD_PROMPT": str(prompt_path), "SWITCHBOARD_RELOAD_INTERVAL": "0"},
                             tmp_path / "log")
    try:
        with pipe_in_place_of(prompt_path):
            service.hup()
            assert wait_until(lambda: '"reload_failed"' in (tmp_path / "log").read_text())
            for _ in range(3):
                assert httpx2.post(service.url + "/webhook", json=transfer_request(TURNS), timeout=3).status_code == 200
            assert httpx2.get(service.url + "/healthz", timeout=3).status_code == 200
        assert "is a named pipe" in (tmp_path / "log").read_text()
    finally:
        service.stop()


def check_command(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`switchboard check` in a child process, so that a hang (the code before the fix) fails, not freezes."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OPENAI_"))}
    return subprocess.run([sys.executable, "-m", "app", "check"], env={**full, "SWITCHBOARD_ROUTER": "offline", **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_start_up_refuses_a_named_pipe_in_one_line(tmp_path):
    pipe = tmp_path / "destinations.json"
    os.mkfifo(pipe)
    try:
        done = check_command({"SWITCHBOARD_DESTINATIONS": str(pipe)})
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"Error: {pipe}: is a named pipe, not a regular file; set "
                                   "SWITCHBOARD_DESTINATIONS to a regular file of at most 8 MiB")


def test_an_oversized_catalogue_is_refused_at_start_and_at_reload(tmp_path, service_factory, catalogue_path,
                                                                  log_records):
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(9 * 1024 * 1024)  # sparse: nothing is written, and the old code read all 9 MiB of it
    done = check_command({"SWITCHBOARD_DESTINATIONS": str(big)})
    assert done.returncode == 2
    assert f"{big}: 9,437,184 bytes is over the limit of 8,388,608 bytes" in done.stderr
    service = service_factory(router="offline", reload_interval=0.1)
    os.replace(big, catalogue_path)
    assert wait_until(lambda: any(r.getMessage() == "reload_failed" for r in log_records))
    assert "over the limit" in next(r for r in log_records if r.getMessage() == "reload_failed").fields["error"]
    assert service.post(transfer_request(TURNS)).json()["destination"]["number"] == "+14155550142"


def test_a_named_pipe_as_a_dataset_is_refused(tmp_path):
    pipe = tmp_path / "calls.jsonl"
    os.mkfifo(pipe)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OPENAI_"))}
    try:
        runs = [subprocess.run([sys.executable, "-m", "app", *args], env={**full, **ENV}, cwd=ROOT,
                               capture_output=True, text=True, timeout=30, input="q\n")
                for args in (["eval", str(pipe), "-r", "offline"], ["label", str(pipe)])]
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    for done in runs:
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert f"Error: {pipe}: is a named pipe, not a regular file" in done.stderr


def test_files_refuse_what_is_not_a_regular_file(tmp_path):
    from app import files

    with pytest.raises(files.FileProblem, match="is a directory"):
        files.read_regular(tmp_path, 100)
    with pytest.raises(files.FileProblem, match="is a character device"):
        files.read_regular(Path("/dev/zero"), 100)
    (tmp_path / "f").write_bytes(b"x" * 101)
    with pytest.raises(files.FileProblem, match="101 bytes is over the limit of 100 bytes"):
        files.read_regular(tmp_path / "f", 100)


def test_a_file_rewritten_while_read_is_refused_not_spliced(tmp_path, monkeypatch):
    # chaos.py's reload-storm rewrote the catalogue in place while a reload read it in chunks: the start of one
    # version and the end of the next made valid JSON that nobody wrote, and its numbers were answered.
    from app import files

    path = tmp_path / "destinations.json"
    path.write_bytes(b"a" * (files.CHUNK * 2))
    real_read = files.os.read
    reads = []

    def read_then_rewrite(fd: int, n: int) -> bytes:
        chunk = real_read(fd, n)
        reads.append(len(chunk))
        if len(reads) == 1:  # another writer rewrites the file in place between two chunks
            with open(path, "r+b") as f:
                f.write(b"b" * (files.CHUNK * 3))
        return chunk

    monkeypatch.setattr(files.os, "read", read_then_rewrite)
    with pytest.raises(files.FileProblem, match="changed while it was being read"):
        files.read_regular(path, files.CHUNK * 10)
    monkeypatch.setattr(files.os, "read", real_read)
    assert files.read_regular(path, files.CHUNK * 10) == b"b" * (files.CHUNK * 3)  # whole, once it is still
