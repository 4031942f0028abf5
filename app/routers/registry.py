"""The routers by name: the one place a router's name means anything.

`SWITCHBOARD_ROUTER`, `route -r` and `eval -r` choose from ROUTERS; everything else asks a router (or its
spec) for its capabilities (app.routers.base.Capabilities), never its name. A new router is a class that
meets app.routers.base.RouterClass, plus one entry here (and its name in Settings.router's choices).

Each router's module is imported only when its capabilities are asked for or one is built, so listing the
names (`switchboard route --help`) does not load the model client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.routers.base import Capabilities, Parts, Router, RouterClass

if TYPE_CHECKING:
    from app.routers.offline import OfflineRouter
    from app.settings import Settings


@dataclass(frozen=True, slots=True)
class RouterSpec:
    name: str
    summary: str  # one line, for help texts
    load: Callable[[], RouterClass]  # the router's class, imported on first use
    # The setting that thresholds its score, and its value in these settings (evaluation reports and fits it);
    # None when nothing does.
    threshold: Callable[[Settings], tuple[str, float]] | None = None

    @property
    def capabilities(self) -> Capabilities:
        return self.load().capabilities

    def build(self, parts: Parts) -> Router:
        return self.load().build(parts, self.name)


def _llm() -> RouterClass:
    from app.routers.llm import LLMRouter

    return LLMRouter


def _offline() -> RouterClass:
    from app.routers.offline import OfflineRouter

    return OfflineRouter


LLM = RouterSpec("llm", "one chat completion with structured output, over any OpenAI-compatible API", _llm,
                 lambda settings: ("SWITCHBOARD_MIN_CONFIDENCE", settings.min_confidence))
# Also the failure policy's rescue (SWITCHBOARD_ON_LLM_FAILURE=offline), so every engine builds one.
OFFLINE = RouterSpec("offline", "lexical ranking of the catalogue's descriptions and examples; no model", _offline,
                     lambda settings: ("SWITCHBOARD_OFFLINE_THRESHOLD", settings.offline_threshold))

ROUTERS: dict[str, RouterSpec] = {spec.name: spec for spec in (LLM, OFFLINE)}


class UnknownRouter(LookupError):
    pass


def spec_for(name: str) -> RouterSpec:
    spec = ROUTERS.get(name)
    if spec is None:
        raise UnknownRouter(f"there is no router called {name!r}; choose one of: {', '.join(ROUTERS)}")
    return spec


def build_routers(name: str, parts: Parts) -> tuple[Router, OfflineRouter]:
    """The router called `name`, and the offline router the failure policy rescues with: one object when
    `name` is the offline router, so its index is built once."""
    from app.routers.offline import OfflineRouter

    offline = OfflineRouter.build(parts, OFFLINE.name)
    spec = spec_for(name)
    return (offline if spec.load() is OfflineRouter else spec.build(parts)), offline
