"""An operator's own project folder (issue 17): installable anywhere (the prompts, sample catalogue and example
requests ship inside the package), `switchboard init`, one way to point at files (--catalogue, --prompt, relative
paths from the .env that set them), and a missing catalogue that says where it looked and how to fix it.

The last test is the issue's "done means": a wheel of this checkout, installed non-editable where the test's python
sees it instead of the checkout, run in an empty folder: init, check, route, serve."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner
from dotenv import dotenv_values

from app.cli import cli
from tests.conftest import ROOT, poll
from tests.service_process import ServiceProcess, free_port
from tests.vapi_payloads import transfer_request

BILLING = transfer_request([("user", "I was charged twice on my bill")])


def run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def empty(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


# --- the shipped files ------------------------------------------------------------------------------------------

def test_the_checkout_is_the_one_source_of_the_shipped_files():
    """In a checkout (the editable install the tests use) the files are read in place: no copy to drift."""
    from app import defaults

    assert defaults.folder() == ROOT
    assert defaults.sample_catalogue() == ROOT / "destinations.json"
    assert defaults.prompt("route.md") == ROOT / "prompts/route.md" and defaults.prompt("nothing.md") is None
    assert defaults.example("transfer-request.json").is_file()
    assert not (ROOT / "app/defaults/destinations.json").exists() and not (ROOT / "app/defaults/prompts").exists()


def test_check_in_a_folder_without_prompts_uses_the_packaged_prompt_and_says_so(empty):
    """Reported: `switchboard check destinations.json` outside the clone said `prompts/route.md: file not found`."""
    shutil.copy(ROOT / "destinations.json", empty)
    result = run(["check", "destinations.json"])
    assert result.exit_code == 0, result.output
    assert f"prompt in force: {ROOT / 'prompts/route.md'} (the packaged route.md: there is no " \
           f"{empty / 'prompts/route.md'}, the default of SWITCHBOARD_PROMPT, taken from {empty})" in result.stdout
    assert f"catalogue in force: {empty / 'destinations.json'}" in result.stdout


@pytest.mark.parametrize("how", ["flag", "environment", "dot-env", "dot-env in lowercase"])
def test_a_prompt_path_someone_wrote_never_falls_back(empty, how):
    """Reported: `check --prompt promts/route.md` (a typo) exited 0 routing with the packaged prompt, and so did
    SWITCHBOARD_PROMPT=nonexistent/route.md. Only an unset prompt setting falls back; a path written in a flag,
    the environment or a .env that names no file is an error saying where it looked. Reported too: a .env's
    `switchboard_prompt=promts/route.md` (pydantic-settings reads a .env's names in any case) read as unset, so
    it fell back to the packaged prompt and said "the default of SWITCHBOARD_PROMPT"."""
    shutil.copy(ROOT / "destinations.json", empty)
    args, env = ["check"], {}
    if how == "flag":
        args += ["--prompt", "promts/route.md"]
        where = f"looked for it at {empty / 'promts/route.md'}: --prompt, taken from {empty})"
    elif how == "environment":
        env = {"SWITCHBOARD_PROMPT": "nonexistent/route.md"}
        where = f"looked for it at {empty / 'nonexistent/route.md'}: SWITCHBOARD_PROMPT in the environment"
    elif how == "dot-env":
        (empty / ".env").write_text("SWITCHBOARD_PROMPT=prompts/route.md\n")  # the default's path, but written
        where = f"looked for it at {empty / 'prompts/route.md'}: SWITCHBOARD_PROMPT in {empty / '.env'}"
    else:
        (empty / ".env").write_text("switchboard_prompt=promts/route.md\n")
        where = f"looked for it at {empty / 'promts/route.md'}: SWITCHBOARD_PROMPT in {empty / '.env'}"
    result = run(args, env=env)
    assert result.exit_code == 2, result.output
    assert "file not found" in result.stderr and where in result.stderr, result.stderr
    assert "prompt in force" not in result.stdout


def test_the_prompt_fallback_is_decided_at_each_load(empty):
    """Reported: the fallback was decided once, when settings were read, so an operator's prompts/route.md
    created later was never read by a reload. load_routing decides it each time (a real serve: below); once the
    operator's file is in force, its absence is an error, not the packaged prompt."""
    from app.loading import load_routing
    from app.routers.prompt import PromptError
    from app.settings import Settings

    shutil.copy(ROOT / "destinations.json", empty)
    settings = Settings.from_env()
    first = load_routing(settings)
    assert (first.prompt.path, first.prompt.name) == (str(ROOT / "prompts/route.md"), "route")
    assert first.prompt_origin.startswith("the packaged route.md: there is no ")
    mine(empty)
    again = load_routing(settings, first)
    assert (again.prompt.path, again.prompt.name) == ("prompts/route.md", "mine")
    assert again.prompt_origin == f"the default of SWITCHBOARD_PROMPT, taken from {empty}"
    assert (first.prompt_packaged, again.prompt_packaged) == (True, False)
    (empty / "prompts/route.md").write_bytes((ROOT / "prompts/route.md").read_bytes())  # the packaged bytes
    assert load_routing(settings, again).prompt.path == "prompts/route.md"  # still the operator's file
    (empty / "prompts/route.md").unlink()
    with pytest.raises(PromptError, match="prompt in force is kept until it is back: restore the file, or restart"):
        load_routing(settings, again)  # the operator's file was in force: not silently the packaged one
    assert load_routing(settings).prompt_packaged  # a first load (a restart) falls back, as at the start


def test_the_operators_prompt_deleted_while_serving_is_kept_and_healthz_says_which(empty, log_records):
    """Reported: /healthz could not tell the packaged prompt from the operator's, and deleting prompts/route.md
    while serving (or an editor's save that removes it for a moment, seen by the file poll) switched silently to
    the packaged prompt at the next reload. Now the reload fails (degraded, the operator's prompt kept) until
    the file is back; /healthz says `packaged` (true or false), no path."""
    from app.settings import Settings
    from tests.conftest import Service

    shutil.copy(ROOT / "destinations.json", empty)
    service = Service(Settings.from_env(None, reload_interval=0.05, hedge_delay=0))
    try:
        health = lambda: service.client.get("/healthz").json()  # noqa: E731
        first = health()
        assert (first["prompt"]["name"], first["prompt"]["packaged"], first["status"]) == ("route", True, "ok")
        assert str(ROOT) not in json.dumps(first)
        mine(empty)
        poll(lambda: health()["prompt"]["name"] == "mine", "the operator's prompt in force")
        assert health()["prompt"]["packaged"] is False and health()["status"] == "ok"
        (empty / "prompts/route.md").unlink()
        degraded = poll(lambda: (h := health())["status"] == "degraded" and h, "a failed reload")
        assert degraded["reload_failed"]["what"] == "prompt" and degraded["reload_failed"]["file"] == "route.md"
        assert (degraded["prompt"]["name"], degraded["prompt"]["packaged"]) == ("mine", False)  # kept
        failed = [r.fields for r in log_records if r.getMessage() == "reload_failed"]  # type: ignore[attr-defined]
        assert "the prompt in force is kept until it is back" in failed[0]["error"], failed
        assert service.post(BILLING).status_code == 200
        mine(empty)  # back (the end of an editor's save): in force again, no longer degraded
        back = poll(lambda: (h := health())["status"] == "ok" and h, "the file back")
        assert (back["prompt"]["name"], back["prompt"]["packaged"]) == ("mine", False)
    finally:
        service.close()


def mine(folder: Path) -> Path:
    """The operator's own prompts/route.md in `folder`: the shipped one renamed `mine`, to tell them apart."""
    path = folder / "prompts/route.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text((ROOT / "prompts/route.md").read_text().replace('name = "route"', 'name = "mine"'))
    return path


def prompt_name(health: dict) -> str:
    return str(health["prompt"]["name"])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_prompt_created_after_start_wins_at_the_next_sighup(tmp_path, empty, workers):
    """serve started without prompts/route.md (the packaged one in force); the operator writes theirs and sends
    SIGHUP: it is in force after the reload, in every worker (polling off, so the signal is what reloads)."""
    shutil.copy(ROOT / "destinations.json", empty)
    service = ServiceProcess({"SWITCHBOARD_RELOAD_INTERVAL": "0"}, tmp_path / "serve.log", workers=workers,
                             cwd=empty)
    try:
        assert prompt_name(httpx2.get(service.url + "/healthz", timeout=5).json()) == "route"
        mine(empty)
        service.hup()
        deadline, in_a_row = time.monotonic() + 20, 0
        while in_a_row < 6:  # new connections, spread over the workers: each has reloaded
            health = httpx2.get(service.url + "/healthz", timeout=5, headers={"connection": "close"}).json()
            in_a_row = in_a_row + 1 if prompt_name(health) == "mine" else 0
            assert time.monotonic() < deadline, f"{health['prompt']}: {service.log_path.read_text()[-2000:]}"
            time.sleep(0.05)
    finally:
        service.stop()


def own_project(folder: Path) -> Path:
    """`switchboard init`'s project, with a catalogue and a prompt of its own (not the packaged bytes), and a .env
    that is .env.example as written: every line commented out."""
    assert run(["init", str(folder)]).exit_code == 0
    catalogue = json.loads((folder / "destinations.json").read_text())
    catalogue["destinations"][0]["description"] += " Also bill disputes."
    (folder / "destinations.json").write_text(json.dumps(catalogue))
    mine(folder)
    (folder / ".env").write_text((folder / ".env.example").read_text())
    return folder


def test_a_dot_env_in_use_also_takes_the_default_paths_from_its_folder(tmp_path, empty):
    """Reported: with SWITCHBOARD_ENV_FILE naming a project's .env whose lines are all commented out, check run
    elsewhere looked for destinations.json in the working directory; and with only SWITCHBOARD_DESTINATIONS in
    the .env, the project's own prompts/route.md was silently replaced by the packaged prompt."""
    project = own_project(tmp_path / "project")
    env = {"SWITCHBOARD_ENV_FILE": str(project / ".env")}
    result = run(["check"], env=env)
    assert result.exit_code == 0, result.output
    beside = f"the default of SWITCHBOARD_DESTINATIONS, taken from the folder of {project / '.env'}"
    assert f"catalogue in force: {project / 'destinations.json'}, hash " in result.stdout and beside in result.stdout
    assert "prompt 'mine'" in result.stdout and f"prompt in force: {project / 'prompts/route.md'}" in result.stdout

    (project / ".env").write_text("SWITCHBOARD_DESTINATIONS=destinations.json\n")
    result = run(["check"], env=env)
    assert result.exit_code == 0, result.output
    assert "prompt 'mine'" in result.stdout and f"prompt in force: {project / 'prompts/route.md'}" in result.stdout
    result = run(["check", "--prompt", "prompts/route.md"], env=env)  # a flag: from the working directory
    assert result.exit_code == 2 and f"looked for it at {empty / 'prompts/route.md'}: --prompt" in result.stderr


def test_worker_processes_read_the_same_env_file(tmp_path, empty):
    """`serve --workers 2` started elsewhere with SWITCHBOARD_ENV_FILE naming a project's .env (every line
    commented out): each worker process starts with the project's catalogue and prompt (its `started` line, by
    pid), and /healthz names the project's catalogue hash."""
    project = own_project(tmp_path / "project")
    digest = hashlib.sha256((project / "destinations.json").read_bytes()).hexdigest()[:12]
    assert digest != hashlib.sha256((ROOT / "destinations.json").read_bytes()).hexdigest()[:12]
    service = ServiceProcess({"SWITCHBOARD_ENV_FILE": str(project / ".env")}, tmp_path / "serve.log", workers=2,
                             cwd=empty)
    try:
        deadline = time.monotonic() + 30
        while len(started := [json.loads(line) for line in service.log_path.read_text().splitlines()
                              if '"event": "started"' in line]) < 2:
            assert time.monotonic() < deadline, service.log_path.read_text()[-2000:]
            time.sleep(0.1)
        assert len({line["pid"] for line in started}) == 2 and service.proc.pid not in {s["pid"] for s in started}
        assert {(s["catalogue_hash"], s["catalogue_file"], s["prompt"], s["prompt_file"]) for s in started} == {
            (digest, str(project / "destinations.json"), "mine", str(project / "prompts/route.md"))}
        for _ in range(4):
            health = httpx2.get(service.url + "/healthz", timeout=5, headers={"connection": "close"}).json()
            assert health["catalogue"]["hash"] == digest and prompt_name(health) == "mine", health
    finally:
        service.stop()


def test_check_takes_catalogue_and_prompt_flags(empty):
    result = run(["check", "--catalogue", str(ROOT / "destinations.json"), "--prompt",
                  str(ROOT / "prompts/route-with-reason.md")])
    assert result.exit_code == 0, result.output
    assert "prompt 'route-with-reason'" in result.stdout and "(--prompt)" in result.stdout
    result = run(["check", str(ROOT / "destinations.json"), "--catalogue", "other.json"])
    assert result.exit_code == 2 and "two catalogues given" in result.stderr


def test_eval_takes_a_catalogue_flag(empty):
    dataset = str(ROOT / "datasets/sample.jsonl")
    cache = ["--no-cache", "--cache", str(empty / "cache.sqlite")]
    result = run(["eval", dataset, "-r", "offline", "--catalogue", "missing.json", *cache],
                 env={"SWITCHBOARD_DESTINATIONS": str(ROOT / "destinations.json")})  # the flag wins
    assert result.exit_code == 2 and f"{empty / 'missing.json'}: --catalogue" in result.stderr, result.output
    result = run(["eval", dataset, "-r", "offline", "--catalogue", str(ROOT / "destinations.json"), *cache])
    assert result.exit_code == 0, result.output


# --- switchboard init -------------------------------------------------------------------------------------------

def test_init_writes_a_project_that_checks(tmp_path, monkeypatch):
    target = tmp_path / "a" / "new-project"  # created, parents too
    result = run(["init", str(target)])
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == [".env.example", "README.md", "destinations.json", "prompts/route.md",
                       "requests/transfer-request.json"]
    assert (target / "destinations.json").read_bytes() == (ROOT / "destinations.json").read_bytes()
    assert (target / "prompts/route.md").read_bytes() == (ROOT / "prompts/route.md").read_bytes()
    assert "switchboard check" in result.stdout and f"cd {target}" in result.stdout
    monkeypatch.chdir(target)
    checked = run(["check"])
    assert checked.exit_code == 0, checked.output
    assert f"prompt in force: {target / 'prompts/route.md'}" in checked.stdout
    routed = run(["route", "requests/transfer-request.json"])
    assert routed.exit_code == 0 and json.loads(routed.stdout.splitlines()[0])["destination"], routed.output


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts/route.md").write_text("mine")
    (tmp_path / "README.md").write_text("mine too")
    result = run(["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "already has README.md, prompts/route.md; nothing was written" in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["README.md", "prompts", "route.md"]
    assert (tmp_path / "prompts/route.md").read_text() == "mine"


def test_env_example_lists_settings_at_their_defaults(tmp_path, monkeypatch):
    """Uncommented, .env.example sets every setting it lists to its default: it cannot drift from the code."""
    from app.cli.init import COMMON_SETTINGS, env_example
    from app.settings import Settings

    monkeypatch.delenv("SWITCHBOARD_DATA_DIR")  # conftest's: the file's value must be read
    assigned = [line[2:] for line in env_example().splitlines() if line.startswith("# ") and "=" in line.split()[1]]
    assert [a.split("=", 1)[0] for a in assigned] == [Settings.env_names()[n] for n in COMMON_SETTINGS]
    env = tmp_path / ".env"
    env.write_text("\n".join(assigned) + "\n")
    assert set(dotenv_values(env)) == {a.split("=", 1)[0] for a in assigned}
    from_file, defaults = Settings(_env_file=env), Settings()  # as read, before paths are resolved
    for name in COMMON_SETTINGS:
        assert getattr(from_file, name) == getattr(defaults, name), name


def test_the_project_readme_explains_every_field_the_sample_catalogue_uses():
    from app import defaults

    readme = defaults.PROJECT_README.read_text()
    sample = json.loads(defaults.sample_catalogue().read_text())
    fields = set(sample) | {k for entry in sample["destinations"] for k in entry}
    missing = sorted(f for f in fields if f"`{f}`" not in readme)
    assert not missing, f"app/defaults/project-readme.md does not explain {missing}"


@contextmanager
def serving(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """`serve` on a free loopback port in `cwd`; yields its URL once /healthz answers 200 (or fails)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "serve", "--port", str(port)], cwd=cwd, env=env, stdout=out, stderr=out)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, f"serve exited: {log.read_text()[-2000:]}"
                try:
                    if httpx2.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"serve did not answer /healthz: {log.read_text()[-2000:]}"
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_serve_starts_in_a_new_project(tmp_path):
    assert run(["init", str(tmp_path / "p")]).exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with serving([sys.executable, "-m", "app"], tmp_path / "p", env, tmp_path / "serve.log") as url:
        health = httpx2.get(url + "/healthz", timeout=5).json()
        assert health["prompt"]["file"] == "route.md"  # no server path on /healthz; the start-up log has it
        body = (tmp_path / "p/requests/transfer-request.json").read_bytes()
        answer = httpx2.post(url + "/webhook", content=body, headers={"content-type": "application/json"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["destination"]["number"]
    assert str(tmp_path / "p/prompts/route.md") in (tmp_path / "serve.log").read_text()


# --- the done-means test ----------------------------------------------------------------------------------------

SOURCES = ["app", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "destinations.json", "prompts",
           "examples"]


@pytest.mark.slow
def test_a_wheel_installed_anywhere_inits_checks_routes_and_serves(tmp_path):
    """Build a wheel of this checkout (offline), install it non-editable into a folder the test's python puts
    first on its path, and use it in an empty folder as a new operator would."""
    source = tmp_path / "source"  # a copy, so the build's own build/ folder stays out of the checkout
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"),
                    str(source)], check=True, capture_output=True)
    wheel, = (tmp_path / "wheels").glob("switchboard-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True)
    shutil.rmtree(source)  # nothing may be read from a checkout
    work = tmp_path / "operator"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OPENAI_"))}
    env |= {"PYTHONPATH": str(site), "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    python = [sys.executable, "-m", "app"]

    def sb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)

    where = subprocess.run([sys.executable, "-c", "import app; print(app.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), where
    shipped = site / "app/defaults"
    assert (shipped / "destinations.json").read_bytes() == (ROOT / "destinations.json").read_bytes()
    assert {p.name for p in (shipped / "prompts").iterdir()} == {p.name for p in (ROOT / "prompts").glob("*.md")}

    checked = sb("check", "--catalogue", str(shipped / "destinations.json"))  # before init: the packaged prompt
    assert checked.returncode == 0 and f"prompt in force: {shipped / 'prompts/route.md'}" in checked.stdout, \
        checked.stderr
    assert "looked for it at" in sb("check").stderr  # no catalogue here: no silent sample
    init = sb("init")
    assert init.returncode == 0, init.stderr
    checked = sb("check")
    assert checked.returncode == 0, checked.stderr
    assert f"catalogue in force: {work / 'destinations.json'}" in checked.stdout
    assert f"prompt in force: {work / 'prompts/route.md'}" in checked.stdout
    routed = sb("route", "--text", "I was charged twice")
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout.splitlines()[0])["destination"]  # billing's, or its after-hours entry's
    assert "billing" in routed.stderr  # the decision line names what was chosen
    with serving(python, work, env, tmp_path / "serve.log") as url:
        assert httpx2.get(url + "/healthz", timeout=5).status_code == 200
