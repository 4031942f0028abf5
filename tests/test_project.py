"""An operator's own project folder (issue 17): installable anywhere (the prompts, sample catalogue and example
requests ship inside the package), `switchboard init`, one way to point at files (--catalogue, --prompt, relative
paths from the .env that set them), and a missing catalogue that says where it looked and how to fix it.

The last test is the issue's "done means": a wheel of this checkout, installed non-editable where the test's python
sees it instead of the checkout, run in an empty folder: init, check, route, serve."""

from __future__ import annotations

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
from tests.conftest import ROOT
from tests.service_process import free_port


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
    assert f"prompt in force: {ROOT / 'prompts/route.md'} (the packaged route.md: prompts/route.md" in result.stdout
    assert f"catalogue in force: {empty / 'destinations.json'}" in result.stdout


def test_the_operators_own_prompt_comes_first(empty):
    shutil.copy(ROOT / "destinations.json", empty)
    (empty / "prompts").mkdir()
    (empty / "prompts/route.md").write_text((ROOT / "prompts/route.md").read_text().replace('name = "route"',
                                                                                           'name = "mine"'))
    result = run(["check"])
    assert result.exit_code == 0, result.output
    assert "prompt 'mine'" in result.stdout and f"prompt in force: {empty / 'prompts/route.md'}" in result.stdout


def test_a_missing_catalogue_is_never_the_sample_and_the_error_says_where_and_how(empty):
    result = run(["check"])
    assert result.exit_code == 2
    error = result.stderr
    assert f"looked for it at {empty / 'destinations.json'}" in error
    assert "the default of SWITCHBOARD_DESTINATIONS" in error
    assert "switchboard init" in error and "--catalogue FILE" in error and "SWITCHBOARD_DESTINATIONS" in error
    result = run(["check", "--catalogue", "mine.json"])
    assert result.exit_code == 2 and f"{empty / 'mine.json'}: --catalogue, taken from {empty}" in result.stderr


def test_relative_paths_in_a_dot_env_are_taken_from_its_folder(tmp_path, empty):
    """SWITCHBOARD_ENV_FILE names a .env elsewhere; its relative paths are from its own folder, flags' from here."""
    project = tmp_path / "project"
    (project / "catalogues").mkdir(parents=True)
    shutil.copy(ROOT / "destinations.json", project / "catalogues/mine.json")
    (project / ".env").write_text("SWITCHBOARD_DESTINATIONS=catalogues/mine.json\nSWITCHBOARD_ROUTER=offline\n")
    env = {"SWITCHBOARD_ENV_FILE": str(project / ".env")}
    result = run(["check"], env=env)
    assert result.exit_code == 0, result.output
    assert "SWITCHBOARD_ENV_FILE" not in result.stderr  # not an unknown setting
    assert f"catalogue in force: {project / 'catalogues/mine.json'}" in result.stdout
    assert f"SWITCHBOARD_DESTINATIONS in {project / '.env'}, taken from {project}" in result.stdout
    assert "router: offline" in result.stdout
    shutil.copy(ROOT / "destinations.json", empty / "here.json")
    result = run(["check", "--catalogue", "here.json"], env=env)  # a flag: from the working directory
    assert result.exit_code == 0 and f"catalogue in force: {empty / 'here.json'}" in result.stdout, result.output
    result = run(["check"], env={"SWITCHBOARD_ENV_FILE": str(project / "missing.env")})
    assert result.exit_code == 2 and "SWITCHBOARD_ENV_FILE=" in result.stderr and "no such file" in result.stderr


def test_worker_processes_read_the_same_env_file(tmp_path, empty):
    """`serve --workers N` workers build their settings from the environment (app/service/asgi.py): the
    variable naming the .env is inherited, so they resolve the same files."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("SWITCHBOARD_DESTINATIONS=mine.json\n")
    code = "from app.settings import Settings; print(Settings.from_env().destinations)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=empty, check=True,
                         env={**os.environ, "SWITCHBOARD_ENV_FILE": str(project / ".env"),
                              "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == str(project / "mine.json")


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
