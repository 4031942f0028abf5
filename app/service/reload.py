"""Reloading the catalogue and prompt while serving: on SIGHUP, and when polling sees a file change.

Files are read and compiled in a worker thread, and the new engine is swapped in on the event loop with one
assignment, so a request sees the old engine or the new one, never a mix, and never waits for a compile. A file
that cannot be used leaves the old ones in force, and /healthz says "degraded" with its error until a reload
succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from app.catalogue.destinations import CatalogueError
from app.engine import Engine, build_engine
from app.loading import load_routing
from app.logs import event
from app.routers.prompt import PromptError
from app.service.state import FailedFile, ReloadFailure, State, utc_now
from app.settings import Settings

ERROR_CHARS = 1000  # of a failed reload's error, in its log line (a catalogue's errors can be many)


def stamps(settings: Settings) -> tuple[float, float]:
    """The catalogue's and the prompt's modification times (0 for a file that cannot be looked at)."""
    def mtime(path: Path) -> float:
        try:
            return float(path.stat().st_mtime_ns)
        except OSError:
            return 0.0
    return mtime(settings.destinations), mtime(settings.prompt)


def _build(state: State) -> tuple[tuple[float, float], Engine | CatalogueError | PromptError | None]:
    """The files' stamps, and a new engine built from them (None: the files are as they were; or why not).
    Runs in a worker thread, so it creates nothing tied to an event loop: no task, future, lock or event. The
    model clients and the runtime (breaker, deadlines, hedging) belong to the process and are passed in as
    they are, not made here."""
    seen = stamps(state.settings)
    current = state.engine.routing if state.engine else None
    try:
        routing = load_routing(state.settings, current)  # regular files only, size-capped: a pipe cannot block
        if routing is current:
            return seen, None
        return seen, build_engine(state.settings, routing, state.clients, state.runtime)
    # Only the files can fail here: the settings and router a ConfigError speaks of are the ones start-up
    # checked, and a reload does not change them.
    except (CatalogueError, PromptError) as exc:  # the files as they are now cannot be used
        return seen, exc


def _swap(state: State, logger: logging.Logger, trigger: str, built: Engine | CatalogueError | PromptError | None,
          seconds: float) -> bool:
    if isinstance(built, (CatalogueError, PromptError)):
        error = bounded(str(built), ERROR_CHARS)
        kept = state.engine.routing if state.engine else None
        what, name = failed_file(built, state.settings)
        state.reload_failure = ReloadFailure(what, name, utc_now(), trigger)  # the error itself: the log's only
        state.metrics.reload_failures.inc()
        event(logger, "reload_failed", logging.ERROR, trigger=trigger, failed=what, error=error,
              kept_catalogue_hash=kept and kept.catalogue_hash, kept_prompt_hash=kept and kept.prompt.hash)
        return False
    state.reload_failure = None  # the files as they are now work (changed or not): no longer degraded
    if built is None:
        event(logger, "reloaded", trigger=trigger, unchanged=True, seconds=round(seconds, 3))
        return True
    state.engine = built  # one assignment: a request sees the old engine or the new one, never a mix
    event(logger, "reloaded", trigger=trigger, seconds=round(seconds, 3), **built.files(), **built.describe())
    return True


def failed_file(error: CatalogueError | PromptError, settings: Settings) -> tuple[FailedFile, str]:
    """Which file a reload could not use (catalogue or prompt) and its name, without its folders."""
    if isinstance(error, PromptError):
        return "prompt", Path(settings.prompt).name
    return "catalogue", Path(settings.destinations).name


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def reload(state: State, logger: logging.Logger, trigger: str) -> bool:
    """Swap in a freshly loaded catalogue and prompt, in the calling thread; a broken file leaves the old ones
    in force. The running service reloads through Reloads instead, off the event loop."""
    started = time.monotonic()
    state.stamps, built = _build(state)
    return _swap(state, logger, trigger, built, time.monotonic() - started)


class Reloads:
    """The service's reloads: files read and compiled in a worker thread, the new engine swapped in on the
    event loop once ready, so no caller waits for a whole compile (a 3,000-entry catalogue takes 0.3 s).
    One reload runs at a time and at most one more waits, whatever it was asked for: a burst of SIGHUPs costs
    two compiles, not one each. The thread still shares the GIL with the loop, so the waiting one starts only
    after a pause as long as the last compile took: compiling never takes more than half of the time."""

    def __init__(self, state: State, logger: logging.Logger) -> None:
        self.state, self.logger = state, logger
        self.task: asyncio.Task[None] | None = None
        self.queued: str | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def request(self, trigger: str) -> None:
        """On the event loop (a signal handler added with add_signal_handler runs there too)."""
        if self.busy:
            self.queued = trigger
            return
        self.task = asyncio.get_running_loop().create_task(self._run(trigger))

    async def _run(self, trigger: str) -> None:
        current: str | None = trigger
        while current is not None:
            started = time.monotonic()
            try:
                self.state.stamps, built = await asyncio.to_thread(_build, self.state)
                _swap(self.state, self.logger, current, built, time.monotonic() - started)
            except Exception:  # a bug here must not end reloading for the life of the process
                self.logger.exception("reload_crashed")
            current, self.queued = self.queued, None
            if current is not None:
                await asyncio.sleep(time.monotonic() - started)

    async def watch(self) -> None:
        """Poll the files' stamps every SWITCHBOARD_RELOAD_INTERVAL seconds; a change asks for a reload."""
        state = self.state
        while True:
            await asyncio.sleep(state.settings.reload_interval)
            if self.busy:
                continue  # its stamps are not known yet; the next look compares with them
            try:
                seen = await asyncio.to_thread(stamps, state.settings)  # a stat can hang on a stuck network mount
            except Exception:  # a bug here must not end reloading for the life of the process
                self.logger.exception("reload_crashed")
                continue
            if seen != state.stamps:
                self.request("file changed")
