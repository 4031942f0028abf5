"""What the running service holds, shared by its parts: the webhook, the health and metrics pages, the lifespan and
reloads. `engine` is replaced as a whole on reload; everything else lives as long as the process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.engine import Clients, Engine, Runtime
from app.service.metrics import Metrics
from app.settings import Settings
from app.store import Store

if TYPE_CHECKING:
    from app.service.outcomes import Outcomes


@dataclass
class State:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    runtime: Runtime = field(default_factory=Runtime)  # breaker, deadlines, hedging: kept across reloads
    clients: Clients | None = None  # the model clients, opened in the lifespan (None for the offline router)
    engine: Engine | None = None  # None until the lifespan builds it: /healthz answers 503 "starting"
    stamps: tuple[float, float] = (0.0, 0.0)  # the catalogue's and prompt's modification times, last seen
    store: Store | None = None  # the decision store, opened in the lifespan (a store that is off when `none`)
    outcomes: Outcomes | None = None  # decisions kept and outcome messages joined; None until the lifespan
