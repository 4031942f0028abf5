"""The routers: the contract every router meets (base), the LLM and offline routers, prompts, confidence."""
