"""The service's life: at start, open the model clients, build the engine, say how it is set up, open the decision
store, warm up, and start watching for reloads; at the end, stop watching, write what recording has queued, close
the store (bounded) and the clients. Files are read and the model client is opened here, never per request."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from app import __version__
from app.dataset.recording import Recorder
from app.engine import Clients, Engine, build_engine, confidence_state
from app.loading import Routing
from app.logs import LOGGER, event
from app.routers.registry import spec_for
from app.service.hangups import held_hangup, ignore_hangups
from app.service.outcomes import Outcomes, stop
from app.service.reload import Reloads
from app.service.state import State
from app.settings import Settings
from app.store import open_store
from app.vapi.messages import DestinationRequest


class Lifespan:
    """Starlette's `lifespan`: `Starlette(lifespan=Lifespan(...))`."""

    def __init__(self, state: State, routing: Routing, *, auth_enabled: bool, recorder: Recorder | None) -> None:
        settings = state.settings
        self.state, self.routing, self.recorder = state, routing, recorder
        self.auth_enabled = auth_enabled
        self.calls_model = spec_for(settings.router_choice()[0]).capabilities.calls_model  # clients, warm-up
        self.logger = logging.getLogger(LOGGER)

    @contextlib.asynccontextmanager
    async def __call__(self, app: Starlette) -> AsyncIterator[None]:
        state, settings, logger = self.state, self.state.settings, self.logger
        state.clients = Clients.from_settings(settings) if self.calls_model else None
        if state.clients is not None:
            state.clients.on_learned = self.learned
        state.engine = build_engine(settings, self.routing, state.clients, state.runtime)
        event(logger, "started", **state.engine.files(), **state.engine.describe(), auth=auth_mode(settings),
              version=__version__)
        if not self.auth_enabled:
            event(logger, "no_secret", logging.WARNING,
                  hint="anyone who can reach this URL can ask for transfers; set SWITCHBOARD_SECRET")
        # A database that is down now is waited for by the store (rows wait in its buffer); a URL or a database
        # that can never work raises a UserError here.
        state.store = await open_store(settings.database_url, settings.data_dir, capacity=settings.store_buffer,
                                       retention_days=settings.retention_days, logger=logger)
        state.outcomes = Outcomes(state.store, state.metrics, lambda: state.engine.catalogue if state.engine else None,
                                  logger) if state.store.enabled else None
        keeping = asyncio.create_task(state.outcomes.run()) if state.outcomes is not None else None
        if settings.warmup and self.calls_model:
            await warm_up(state.engine, logger)
        reloads = Reloads(state, logger)
        watching = asyncio.create_task(reloads.watch()) if settings.reload_interval > 0 else None
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: reloads.request("SIGHUP"))
            if held_hangup():  # one came while starting (serve held it): the files may have changed since read
                reloads.request("SIGHUP")
        # Everything built so far lives as long as the process: move it out of the collector's way, so a full
        # collection under load walks only what requests create (it took 240-580 ms before).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)  # puts back the default: ...
            ignore_hangups()  # ... which would end this process mid-shutdown: stopping, there is nothing to reload
            if watching is not None:
                watching.cancel()
            if reloads.task is not None:
                reloads.task.cancel()
            if self.recorder is not None:
                await asyncio.to_thread(self.recorder.close)  # what is queued is written before the process ends
            await stop(keeping)
            if state.outcomes is not None:
                await state.outcomes.close()
            await state.store.close()  # writes what is buffered: CLOSE_TIMEOUT s at most while the database is down
            if state.clients is not None:
                await state.clients.close()
            state.metrics.process_exited()

    def learned(self, server: str, what: str, value: str) -> None:
        """A model server's trait, learned from its answers (output mode, log-probabilities): logged."""
        extra = {"confidence": confidence_state(value, self.state.settings.min_confidence)} if what == "logprobs" \
            else {}
        event(self.logger, "model_server", logging.INFO if value in ("given", "True") else logging.WARNING,
              server=server, **{what: value}, **extra)


def auth_mode(settings: Settings) -> str:
    modes = [m for m, on in (("secret", settings.secret), ("hmac", settings.hmac_secret)) if on]
    return "+".join(modes) or "none"


async def warm_up(engine: Engine, logger: logging.Logger) -> None:
    """One routing request at start-up, so the provider compiles the schema before the first caller."""
    sample = DestinationRequest.model_validate({"type": "transfer-destination-request", "artifact": {"messages": [
        {"role": "user", "message": "Hello, I have a question.", "time": 0, "endTime": 0, "secondsFromStart": 0}]}})
    decision = await engine.decide(sample)
    event(logger, "warmed_up", outcome=decision.outcome, total_ms=round(decision.total_ms, 1))
