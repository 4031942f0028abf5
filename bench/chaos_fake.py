"""The fake OpenAI-compatible model server for `bench/chaos.py`, in its own process, steerable mid-run.

    python bench/chaos_fake.py [--port 0]

Prints its port on the first line of stdout and runs until its stdin is closed. It reuses
`tests/fake_openai.py` (FakeOpenAI, ServerThread) and adds one endpoint:

    POST /control {"mode": "ok" | "hang" | "500", "latency": 1.5}   change behaviour (both keys optional)
    GET  /control                                                  {"mode", "latency", "requests"}

`requests` counts the chat-completion requests received since start, whatever the mode.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tests.fake_openai import (  # noqa: E402
    HANG,
    Behaviour,
    FakeOpenAI,
    answer,
    serve_until_stdin_closes,
    status,
)

MODES = ("ok", "hang", "500")


class ControlledFake(FakeOpenAI):
    """FakeOpenAI whose behaviour for every request is the current mode, changed over HTTP."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.latency = 0.0
        self.count = 0
        self._count_lock = threading.Lock()
        super().__init__()
        self.keep_history = False
        self.policy = self._behaviour

    def _behaviour(self, request: dict[str, Any]) -> Behaviour:
        with self._count_lock:
            self.count += 1
        if self.mode == "hang":
            return HANG
        if self.mode == "500":
            return status(500, latency=self.latency)
        return answer(latency=self.latency)

    def snapshot(self) -> dict[str, Any]:
        return {"mode": self.mode, "latency": self.latency, "requests": self.count}

    def app(self) -> Starlette:
        inner = super().app()

        async def control(request: Request) -> Response:
            if request.method == "POST":
                body = await request.json()
                mode = body.get("mode", self.mode)
                if mode not in MODES:
                    return JSONResponse({"error": f"mode must be one of {MODES}"}, status_code=400)
                self.mode = mode
                self.latency = float(body.get("latency", self.latency))
            return JSONResponse(self.snapshot())

        inner.router.routes.append(Route("/control", control, methods=["GET", "POST"]))
        return inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # hang storms leave many sockets open here
    serve_until_stdin_closes(ControlledFake(), args.port)


if __name__ == "__main__":
    main()
