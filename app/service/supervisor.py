"""`serve --workers N`: uvicorn's supervisor, with SIGHUP passed on to every worker to reload in place."""

from __future__ import annotations

import contextlib
import os
import signal
import socket

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess


class Supervisor(Multiprocess):
    """uvicorn's supervisor of --workers N (it restarts dead workers, stops them all on Ctrl-C and SIGTERM),
    but SIGHUP is passed on to each worker, which reloads its catalogue and prompt in place (app/service/
    lifespan.py), instead of uvicorn's restart of every worker (which lost the worker's breaker, learned model
    traits and warm connections, and logged `started` twice, never `reloaded`)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.hup_pending: set[int] = set()  # workers owed a SIGHUP: not serving yet when it came

    def handle_hup(self) -> None:
        self.hup_pending = {p.pid for p in self.processes if p.pid is not None}
        self.forward_hup()

    def keep_subprocess_alive(self) -> None:  # every half second, from the supervisor's loop
        super().keep_subprocess_alive()
        if self.hup_pending:
            self.forward_hup()

    def forward_hup(self) -> None:
        for process in self.processes:
            # A worker installs its SIGHUP handler before it reports ready; before that the signal would end it.
            if process.pid in self.hup_pending and process.is_ready(timeout=1):
                with contextlib.suppress(OSError):  # it has just exited: its replacement reads the files afresh
                    os.kill(process.pid, signal.SIGHUP)
                self.hup_pending.discard(process.pid)
        self.hup_pending &= {p.pid for p in self.processes}  # a replaced worker reads the files as they are now
