"""A throwaway PostgreSQL server for the tests: `initdb` and `pg_ctl` in a temporary folder, listening on a free
loopback port, stopped and deleted at the end.

The binaries are looked for under /usr/lib/postgresql/*/bin (Debian's layout; the newest version wins), then on
PATH. `initdb` and `postgres` refuse to run as root, so as root (CI) the folder is given to the `postgres` system
user and every command runs through `runuser -u postgres --`.

Where PostgreSQL is not installed the tests that need it are skipped, saying so; with CI set (CI=true), a missing
server fails them instead, so that CI can never pass without having run them.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL = "install it (Debian: apt-get install postgresql) to run them"
TIMEOUT = 120  # seconds for initdb, a start or a stop: generous, for a busy machine


def _version(bindir: str) -> tuple[int, ...]:
    name = Path(bindir).parent.name
    return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)


def find_bindir() -> Path | None:
    """The folder with initdb, pg_ctl and psql, or None."""
    found = [str(Path(p).parent) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if found:
        return Path(max(found, key=_version))
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def unavailable(reason: str) -> None:
    """Skip, or in CI fail: CI must run the PostgreSQL tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI=true, so the PostgreSQL tests must run: {INSTALL}", pytrace=False)
    pytest.skip(f"{reason}: the PostgreSQL tests need a local server; {INSTALL}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: its parents are private to root, and the server may run as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self.running = False
        self._names = itertools.count(1)
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bindir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}\n"
                               f"server log:\n{self.log_tail()}")
        return done.stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = subprocess.run(["tail", f"-n{lines}", str(self.logfile)], capture_output=True, text=True,
                                  check=False).stdout
        except OSError:
            return ""
        return text

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-sync", "--no-instructions")

    def start(self) -> None:
        """Start on the same port and data folder as before (a restart after stop() is the same server)."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t",
                  str(TIMEOUT), "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clients are disconnected at once and the server shuts down cleanly."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(TIMEOUT), "stop")
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def cleanup(self) -> None:
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def server() -> Iterator[PostgresServer]:
    """The body of a session fixture: `yield from server()`. Skips (or in CI fails) when it cannot run one."""
    bindir = find_bindir()
    if bindir is None:
        unavailable("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH)")
        return
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root, and there is no `postgres` user to run initdb as (it refuses root)")
            return
        if shutil.which("runuser") is None:
            unavailable("running as root, and there is no runuser to run initdb as the `postgres` user")
            return
    pg = PostgresServer(bindir)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.cleanup()
