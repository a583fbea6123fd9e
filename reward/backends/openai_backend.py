"""Generation over HTTP from any OpenAI-compatible server (``vllm serve``, ...).

One ``POST /v1/chat/completions`` per prompt with ``n`` = m, sent concurrently
over a pooled ``httpx.Client``; 5xx answers, timeouts and connection errors are
retried with exponential backoff. A trailing assistant message is sent with
``continue_final_message`` (vLLM's extension; our test server honours it too).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from infra.contracts import ChatMessage
from reward.exceptions import BackendError
from reward.protocol import Completion


class OpenAIBackend:
    """Client of an OpenAI-compatible chat-completions endpoint.

    Parameters
    ----------
    base_url:
        Server root, with or without the trailing ``/v1``.
    model:
        The server's model id.
    retries:
        Extra attempts after a retryable failure (5xx, 429, timeout, connect error).
    backoff_s:
        First backoff; doubles on every retry.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_connections: int = 16,
    ) -> None:
        root = base_url.rstrip("/")
        if not root.endswith("/v1"):
            root += "/v1"
        self.base_url = root
        self.model_id = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_connections = max_connections
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=root,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self.attempts = 0
        """Total HTTP attempts made (retries included); useful in tests and metrics."""

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _body(
        self,
        messages: Sequence[ChatMessage],
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        stop: Sequence[str] | None,
        logprobs: bool,
        seed: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "n": n,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if stop:
            body["stop"] = list(stop)
        if logprobs:
            body["logprobs"] = True
        if seed is not None:
            body["seed"] = seed
        if messages and messages[-1].role == "assistant":
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        delay = self.backoff_s
        last: str = ""
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                resp = self.client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    try:
                        data: dict[str, Any] = resp.json()
                    except ValueError as exc:
                        raise BackendError(f"non-JSON answer from {self.base_url}") from exc
                    return data
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code < 500 and resp.status_code != 429:
                    raise BackendError(f"{self.base_url}/chat/completions: {last}")
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise BackendError(
            f"{self.base_url}/chat/completions failed after {self.retries + 1} attempts: {last}"
        )

    @staticmethod
    def _completions(data: dict[str, Any], n: int) -> list[Completion]:
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        total = int(usage.get("completion_tokens", 0) or 0)
        out = []
        for ch in choices:
            text = (ch.get("message") or {}).get("content") or ""
            lp_items = ((ch.get("logprobs") or {}).get("content")) or []
            logprob = sum(float(t.get("logprob", 0.0)) for t in lp_items) if lp_items else None
            tokens = len(lp_items) if lp_items else (total // max(1, len(choices)))
            out.append(Completion(text=text, tokens=tokens, logprob=logprob))
        if len(out) != n:
            raise BackendError(f"server returned {len(out)} choices, asked for {n}")
        return out

    def generate(
        self,
        prompts: Sequence[list[ChatMessage]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 384,
        stop: Sequence[str] | None = None,
        logprobs: bool = False,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt; prompts are sent concurrently."""
        bodies = [
            self._body(
                p,
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                stop=stop,
                logprobs=logprobs,
                # one seed per request: a server samples a seeded request deterministically,
                # so identical prompts with one seed would all get the same text
                seed=None if seed is None else seed + i,
            )
            for i, p in enumerate(prompts)
        ]
        if not bodies:
            return []
        workers = min(self.max_connections, len(bodies))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            datas = list(pool.map(self._post, bodies))
        return [self._completions(d, n) for d in datas]
