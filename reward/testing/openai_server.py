"""A small real OpenAI-compatible chat-completions server over any backend.

Serves ``POST /v1/chat/completions`` (``n``, ``temperature``, ``max_tokens``,
``stop``, ``seed``, ``logprobs``, and vLLM's ``continue_final_message``),
``GET /v1/models`` and ``GET /health``. The test suite runs it on a free
127.0.0.1 port in front of :class:`~reward.backends.TransformersBackend`; users
can use it to put a local model behind the ``openai`` backend::

    python -m reward.testing.openai_server models/smollm2 --port 8001

``fail_first`` makes the first k requests answer HTTP 503, to exercise client
retries against real HTTP.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.contracts import ChatMessage
from reward.protocol import GenerationBackend


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=64)
    temperature: float = Field(default=1.0, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1, le=4096)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool = False
    continue_final_message: bool = False


def create_app(backend: GenerationBackend, *, fail_first: int = 0) -> Any:
    """The FastAPI application (imported lazily: fastapi is only needed here)."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="pgenrm OpenAI-compatible test server")
    state = {"failures_left": fail_first, "requests": 0}
    app.state.counters = state
    lock = threading.Lock()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": backend.model_id, "object": "model"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> dict[str, Any]:
        with lock:
            state["requests"] += 1
            if state["failures_left"] > 0:
                state["failures_left"] -= 1
                raise HTTPException(status_code=503, detail="injected failure")
        msgs = list(req.messages)
        if msgs[-1].role == "assistant" and not req.continue_final_message:
            raise HTTPException(
                400, "last message is from the assistant; set continue_final_message"
            )
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        out = backend.generate(
            [msgs],
            n=req.n,
            temperature=req.temperature,
            max_tokens=req.max_tokens,
            stop=stop,
            logprobs=req.logprobs,
            seed=req.seed,
        )[0]
        choices = []
        for i, c in enumerate(out):
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": "length" if c.tokens >= req.max_tokens else "stop",
            }
            if req.logprobs and c.logprob is not None:
                # Per-token values are not kept by every backend: one entry per token,
                # the sequence logprob spread evenly (sums match the backend's).
                per = c.logprob / max(1, c.tokens)
                choice["logprobs"] = {"content": [{"token": "", "logprob": per}] * max(1, c.tokens)}
            choices.append(choice)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": backend.model_id,
            "choices": choices,
            "usage": {"completion_tokens": sum(c.tokens for c in out)},
        }

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    url: str
    server: Any
    thread: threading.Thread
    app: Any

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve(
    backend: GenerationBackend, *, port: int | None = None, fail_first: int = 0
) -> Iterator[ServerHandle]:
    """Run the server in a background thread on 127.0.0.1; yields its handle (``.url``)."""
    import httpx
    import uvicorn

    port = port or free_port()
    app = create_app(backend, fail_first=fail_first)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="openai-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        server.should_exit = True
        raise RuntimeError("test server did not start")
    handle = ServerHandle(url=url, server=server, thread=thread, app=app)
    try:
        yield handle
    finally:
        handle.stop()


def main() -> None:  # pragma: no cover - manual use
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("model", help="model folder or alias installed under --models-dir")
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args()
    from pathlib import Path

    import uvicorn

    from reward.backends.transformers_backend import TransformersBackend
    from reward.models import resolve_model

    backend = TransformersBackend(resolve_model(args.model, Path(args.models_dir)))
    uvicorn.run(create_app(backend), host="127.0.0.1", port=args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
