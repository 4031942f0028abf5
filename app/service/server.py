"""Running the service under uvicorn, with the limits a public endpoint needs.

- A connection must send its request headers within SWITCHBOARD_READ_TIMEOUT (uvicorn has no such timer:
  a client dribbling header bytes, or sending none, would hold its socket for ever), and within
  SWITCHBOARD_MAX_HEADER_BYTES and SWITCHBOARD_MAX_HEADERS (uvicorn has no such bound either). The body has
  the same time, enforced by the app.
- At most SWITCHBOARD_MAX_CONNECTIONS connections and requests at once (uvicorn's limit_concurrency answers
  503 beyond it), never more than the file-descriptor limit can hold: each request may also hold model
  connections. The soft descriptor limit is raised to the hard one at start-up, as Go and nginx do.
- With --workers N, metrics are shared through prometheus-client's multiprocess directory, and SIGHUP reloads
  every worker in place (app/service/supervisor.py; uvicorn's own supervisor would replace them all).
- Workers are new processes that read their settings from the environment (app/service/asgi.py): `serve`
  puts there what its flags gave, and says that it has already warned about unknown settings.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import UserError
from app.service.hangups import ignore_hangups, release_stops

if TYPE_CHECKING:
    from app.settings import Settings

FDS_PER_REQUEST = 3  # the caller's connection, the model request and a hedged one
FDS_RESERVED = 64  # files, the listening socket, the event loop, logs
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable, read when it is imported
# Set by `serve` for its workers: the unknown-setting warnings were printed once, by serve. Not SWITCHBOARD_*:
# it is no setting, and would be warned about as one.
WARNED_ENV = "_SWITCHBOARD_SETTINGS_CHECKED"
FILE_SETTINGS = {"destinations": "SWITCHBOARD_DESTINATIONS", "prompt": "SWITCHBOARD_PROMPT"}
APP = "app.service.asgi:build"


class ServeError(UserError):
    """The service cannot start as asked; the message says what to change."""


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard limit; returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limit(wanted: int, fd_limit: int) -> int:
    """The concurrency limit the descriptor limit can hold, at most `wanted`."""
    return max(16, min(wanted, (fd_limit - FDS_RESERVED) // FDS_PER_REQUEST))


def check_port_free(host: str, port: int) -> None:
    """Fail with a clear message, before uvicorn starts, when the port is taken or the host is wrong."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host!r}: {exc.strerror}; set --host or SWITCHBOARD_HOST "
                         "(127.0.0.1 for this machine only, 0.0.0.0 for all interfaces)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if sys.platform != "win32":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"port {port} on {host} is in use by another program; choose another with "
                                 "--port or SWITCHBOARD_PORT (or stop the other program)") from None
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def prepare_metrics_dir(workers: int) -> tuple[Path | None, bool]:
    """With several workers, give prometheus-client a directory to share counters through (the operator's
    PROMETHEUS_MULTIPROC_DIR, or a fresh one this run made: the bool). It must be set before
    prometheus-client is first imported, in this process and in every worker."""
    if workers <= 1:
        os.environ.pop(METRICS_DIR_ENV, None)
        return None, False
    given = os.environ.get(METRICS_DIR_ENV)
    if not given:
        directory = Path(tempfile.mkdtemp(prefix="switchboard-metrics-"))
        os.environ[METRICS_DIR_ENV] = str(directory)
        return directory, True
    directory = Path(given)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # counters of an earlier run would be added to this one's
            stale.unlink()
        with tempfile.TemporaryFile(dir=directory):  # every worker writes its counters here: prove it can
            pass
    except OSError as exc:
        # FileExistsError for a file of that name (mkdir's own words, "File exists", would mislead)
        problem = "it is a file, not a directory" if directory.is_file() else \
            f"cannot write there ({exc.strerror or exc})"
        raise ServeError(f"{METRICS_DIR_ENV}={given!r}: {problem}; it is where --workers share their metrics: "
                         f"set it to a writable directory, or unset it and serve makes one") from None
    return directory, False


def cleanup_metrics_dir(directory: Path | None, created: bool) -> None:
    """Remove the directory `serve` made for this run (one the operator named is theirs to keep)."""
    if directory is not None and created:
        shutil.rmtree(directory, ignore_errors=True)


def uvicorn_options(settings: Settings, fd_limit: int) -> dict[str, Any]:
    from app.service.protocol import GuardedHttpToolsProtocol

    GuardedHttpToolsProtocol.configure(settings)  # this process; each worker does the same (app.asgi)
    return {
        "http": f"{GuardedHttpToolsProtocol.__module__}:{GuardedHttpToolsProtocol.__name__}",
        "limit_concurrency": connection_limit(settings.max_connections, fd_limit),
        "backlog": 2048,
        "log_config": None,  # uvicorn's warnings go through the service's own log format (see logs.setup)
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
        # Longer than common load balancers' idle timeouts (60 s), so they never reuse a connection uvicorn has
        # just closed (its default of 5 s causes sporadic 502s behind one).
        "timeout_keep_alive": 75,
    }


def hand_to_workers(settings: Settings) -> None:
    """What the worker processes must read as this process did: the catalogue and prompt files (perhaps from
    --catalogue and --prompt), as absolute paths, and that the settings were checked and warned about here."""
    for name, variable in FILE_SETTINGS.items():
        if name == "prompt" and settings.prompt_is_default():
            continue  # unset, as here: each worker falls back (or not) at each load, as this process does
        # absolute(), not resolve(): a catalogue mounted through a symlink (a Kubernetes ConfigMap swaps its
        # target) must be read through the link on reload, not pinned to the target it had at start.
        os.environ[variable] = str(Path(getattr(settings, name)).absolute())
    os.environ[WARNED_ENV] = "1"


def listening_line(host: str, port: int, workers: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    processes = f" ({workers} worker processes)" if workers > 1 else ""
    return f"Switchboard listening on http://{shown}:{port}{processes} — POST /webhook, GET /healthz, GET /metrics"


def run(settings: Settings, workers: int, options: dict[str, Any], announce: Callable[[str], None]) -> bool:
    """Serve until stopped: bind the port, `announce` the address, then one server in this process, or a
    supervisor of `workers` processes. What uvicorn.run does, with SIGHUP reloading workers in place. False:
    the single server never started (the app failed at start-up; its log line says why)."""
    import uvicorn  # here: `switchboard check` imports this module too, and stays quick

    from app.service.supervisor import Supervisor

    config = uvicorn.Config(APP, factory=True, host=settings.host, port=settings.port, workers=workers, **options)
    sock = config.bind_socket()
    announce(listening_line(settings.host, settings.port, workers))
    release_stops()  # stopping is uvicorn's from here (serve held SIGTERM and SIGINT while it prepared)
    try:
        if workers > 1:
            Supervisor(config, [sock], os.environ.get(METRICS_DIR_ENV)).run()
            return True
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        return server.started
    except KeyboardInterrupt:
        return True
    finally:
        ignore_hangups()
        sock.close()
