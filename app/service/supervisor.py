"""`serve --workers N`: uvicorn's supervisor, with SIGHUP passed on to every worker to reload in place."""

from __future__ import annotations

import contextlib
import os
import signal
import socket

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

STOPPING = frozenset({signal.SIGINT, signal.SIGTERM})  # uvicorn's supervisor stops on these


class Supervisor(Multiprocess):
    """uvicorn's supervisor of --workers N (it restarts dead workers, stops them all on Ctrl-C and SIGTERM),
    but SIGHUP is passed on to each worker, which reloads its catalogue and prompt in place (app/service/
    lifespan.py), instead of uvicorn's restart of every worker (which lost the worker's breaker, learned model
    traits and warm connections, and logged `started` twice, never `reloaded`)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], metrics_dir: str | None) -> None:
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir  # where the workers share their metrics (serve's PROMETHEUS_MULTIPROC_DIR)
        self.hup_pending: set[int] = set()  # workers owed a SIGHUP: not serving yet when it came

    def handle_signals(self) -> None:
        if STOPPING.intersection(self.signal_queue):
            # Ctrl-C (or SIGTERM) and a SIGHUP come together, as when both are pending the kernel hands over the
            # lower number, SIGHUP, first: stopping wins, and no worker that is stopping gets a SIGHUP.
            self.signal_queue[:] = [sig for sig in self.signal_queue if sig != signal.SIGHUP]
        super().handle_signals()

    def handle_hup(self) -> None:
        if self.should_exit.is_set():
            return  # the workers are stopping: a SIGHUP now would end one mid-shutdown, requests in flight lost
        self.hup_pending = {p.pid for p in self.processes if p.pid is not None}
        self.forward_hup()

    def keep_subprocess_alive(self) -> None:  # every half second, from the supervisor's loop
        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        gone = before - {p.pid for p in self.processes}
        for pid in gone:
            if pid is not None:
                mark_dead(pid, self.metrics_dir)
        if self.hup_pending:
            self.forward_hup()

    def forward_hup(self) -> None:
        if self.should_exit.is_set():
            self.hup_pending.clear()
            return
        for process in self.processes:
            # A worker installs its SIGHUP handler before it reports ready; before that the signal would end it.
            if process.pid in self.hup_pending and process.is_ready(timeout=1):
                with contextlib.suppress(OSError):  # it has just exited: its replacement reads the files afresh
                    os.kill(process.pid, signal.SIGHUP)
                self.hup_pending.discard(process.pid)
        self.hup_pending &= {p.pid for p in self.processes}  # a replaced worker reads the files as they are now


def mark_dead(pid: int, metrics_dir: str | None) -> None:
    """A worker that died without closing (kill -9, out of memory) never removed its gauges' files from the
    shared metrics folder: its catalogue hash, breaker state and store connection would be reported as a live
    worker's for ever (a second switchboard_catalogue_info hash after the next reload). Remove them for it."""
    if not metrics_dir:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
