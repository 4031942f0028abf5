"""The routers: the contract every router meets (base), the registry of routers by name (registry), the LLM
and offline routers, prompts, confidence."""

from app.routers.base import Capabilities, Parts, Router, RouterClass
from app.routers.registry import ROUTERS, RouterSpec, UnknownRouter, build_routers, spec_for

__all__ = ["ROUTERS", "Capabilities", "Parts", "Router", "RouterClass", "RouterSpec", "UnknownRouter",
           "build_routers", "spec_for"]
