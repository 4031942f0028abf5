"""What the running service holds, shared by its parts: the webhook, the health and metrics pages, the lifespan and
reloads. `engine` is replaced as a whole on reload; everything else lives as long as the process."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from app.engine import Clients, Engine, Runtime
from app.service.metrics import Metrics
from app.settings import Settings
from app.store import Store

if TYPE_CHECKING:
    from app.service.outcomes import Outcomes


def utc_now() -> str:
    """Now, as /healthz gives times: UTC, ISO 8601, to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


FailedFile = Literal["catalogue", "prompt"]  # what a reload can fail on: the settings are not reloaded


@dataclass(frozen=True)
class ReloadFailure:
    """The last reload's failure, while it is the last word on the files (a good reload clears it). What /healthz
    shows of it: which file, not the error, which quotes the file (a SIP URI's password, say) and its full path,
    and /healthz needs no credentials; the error is on the reload_failed log line."""

    what: FailedFile
    file: str  # the file's name, without its folders
    at: str  # UTC, ISO 8601
    trigger: str  # SIGHUP, file changed


@dataclass
class State:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    runtime: Runtime = field(default_factory=Runtime)  # breaker, deadlines, hedging: kept across reloads
    clients: Clients | None = None  # the model clients, opened in the lifespan (None for the offline router)
    stamps: tuple[float, float] = (0.0, 0.0)  # the catalogue's and prompt's modification times, last seen
    store: Store | None = None  # the decision store, opened in the lifespan (a store that is off when `none`)
    outcomes: Outcomes | None = None  # decisions kept and outcome messages joined; None until the lifespan
    loaded_at: str | None = None  # when the catalogue and prompt in force were read (UTC, ISO 8601)
    reload_failure: ReloadFailure | None = None  # /healthz says "degraded" while this is set
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine | None:
        """None until the lifespan builds it: /healthz answers 503 "starting"."""
        return self._engine

    @engine.setter
    def engine(self, engine: Engine | None) -> None:
        # Every place that puts an engine in force (start-up, reload, tests) comes through here, so /healthz's
        # `loaded` and the catalogue metric cannot disagree with what answers.
        previous = self._engine
        self._engine = engine
        if engine is not None and (previous is None or engine.routing is not previous.routing):
            self.loaded_at = utc_now()
            self.metrics.catalogue_in_force(engine.routing.catalogue_hash)
