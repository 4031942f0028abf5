"""The signals `serve` gets before uvicorn's handlers (or the lifespan's SIGHUP handler) exist, and once serving
is over. Until then each signal has its default action, which ends the process on the spot:

- SIGHUP (reload) is held from serve's first line and becomes one reload once the service can reload
  (app/service/lifespan.py asks held_hangup()); once stopping it is ignored, as there is nothing left to reload.
- SIGTERM and SIGINT (stop) during serve's own preparation end it through an exception instead, so its clean-up
  (the metrics folder it made) runs; a SIGTERM then still ends the process by the signal, as before. They are
  given back (release_stops) right before uvicorn or the supervisor installs its own handlers, so the way a
  serving process stops is uvicorn's, unchanged.

Before serve's first line runs (Python's start and the command's imports, about 0.1 s) the defaults still apply;
nothing has been made yet that a stop would leave behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

_HELD_HANGUPS: list[int] = []  # SIGHUPs that came before the service could reload: see hold_hangups
STOPS = ("SIGINT", "SIGTERM")
_given_back: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}  # the handlers held stops replace
_stopping: list[int] = []  # the held stop that was raised (at most one: the clean-up is not interrupted again)


class Stopped(SystemExit):
    """A SIGTERM during serve's preparation: a SystemExit (so code that lets SystemExit through lets it through,
    and `finally` blocks run), which `ended_by_held_stop` turns back into the signal once they have."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def hold_hangups() -> None:
    """From serve's first line until the service has a SIGHUP handler of its own (the lifespan's, once it has
    opened the store and warmed up; or the supervisor's), a SIGHUP would end `serve` (the signal's default): note
    it instead. The lifespan reloads once ready if one came, since the files may have changed after they were
    read; a supervisor's workers read them after it anyway."""
    with contextlib.suppress(ValueError, AttributeError):  # not the main thread; no SIGHUP (Windows)
        signal.signal(signal.SIGHUP, lambda signum, frame: _HELD_HANGUPS.append(signum))


def held_hangup() -> bool:
    """Whether a SIGHUP came while it was held (and forget it: it asks for one reload)."""
    came = bool(_HELD_HANGUPS)
    _HELD_HANGUPS.clear()
    return came


def ignore_hangups() -> None:
    """Serving is over (or stopping): a SIGHUP has nothing left to reload, and once the event loop has closed (or
    at the interpreter's exit) the signal's default is back, which would end the process mid-shutdown."""
    with contextlib.suppress(ValueError, AttributeError):  # not the main thread; no SIGHUP (Windows)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _stop(signum: int, frame: FrameType | None) -> None:
    if _stopping:
        return  # already stopping: let the clean-up finish (a second Ctrl-C would interrupt its rmtree)
    _stopping.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt  # what Python's own SIGINT handler does: the CLI says "Aborted!"
    raise Stopped(signum)


def hold_stops() -> None:
    """During serve's preparation: SIGTERM and SIGINT raise (Stopped, KeyboardInterrupt) instead of ending the
    process where it stands, so `finally` clean-ups run. A signal the process was started ignoring (`nohup`, a
    background job's SIGINT) stays ignored."""
    _stopping.clear()
    for name in STOPS:
        number = getattr(signal, name)
        with contextlib.suppress(ValueError):  # not the main thread
            if signal.getsignal(number) is not signal.SIG_IGN:
                _given_back[number] = signal.signal(number, _stop)


def release_stops() -> None:
    """Give SIGTERM and SIGINT back the handlers they had (the defaults), right before uvicorn or its supervisor
    installs its own: stopping a serving process is theirs, as it was."""
    for number, handler in _given_back.items():
        with contextlib.suppress(ValueError, TypeError):  # not the main thread; a handler not set from Python
            signal.signal(number, handler)
    _given_back.clear()


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """A stop that comes inside waits until its end (blocked, then raised as it leaves): for making something
    and recording it for a clean-up, which a stop between the two would leak (Python may run a handler after
    any bytecode). Inside a `try` whose `finally` cleans up, the raise lands inside it."""
    blocked = {getattr(signal, name) for name in STOPS}
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a pending stop's handler runs (and raises) here


@contextlib.contextmanager
def ended_by_held_stop() -> Iterator[None]:
    """Around serve's body: a SIGTERM held during its preparation, once the clean-ups have run, ends the process
    by that signal, as it would have without the hold (a service manager reads that as a clean stop). However
    serve ends (an error, Ctrl-C), the stops are given back: the CLI may run in a process that goes on (tests)."""
    try:
        yield
    except Stopped as stopped:
        _end_by(stopped.signum)
    finally:
        release_stops()  # (already done if serve got as far as serving)


def _end_by(signum: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # only if the signal did not end the process (it is blocked)
