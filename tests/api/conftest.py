"""Fixtures of the API tests: a real PgenrmService on a temporary store.

The service is the real one (Qdrant Edge store, real MiniLM embedder). Its
generative backend is :class:`ScriptedBackend`, a labelled stand-in for the LLM
used where many requests are generated (schemathesis, the dashboard): it
returns fixed, parseable evaluation chains so chains, parse accounting and
explanations are exercised without minutes of CPU generation. The real SmolLM2
backend is driven by ``test_real_model.py``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from infra.contracts import ChatMessage, FeedbackEvent, RewardRequest
from infra.settings import ApiSettings, ModelSettings, Settings
from reward.protocol import Completion

_RESPONSE = re.compile(r"response[_ ](\d+)", re.IGNORECASE)


class ScriptedBackend:
    """LLM stand-in: one fixed evaluation chain per prompt (scores 9, 8, 7 ... by slot).

    Every ``unparseable``-th call returns text without JSON, so parse failures
    are counted as with a real model.
    """

    model_id = "scripted-test-backend"

    def __init__(self, unparseable: int = 0) -> None:
        self.calls = 0
        self.unparseable = unparseable

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
        out = []
        for prompt in prompts:
            text = "\n".join(m.content for m in prompt)
            k = max((int(x) for x in _RESPONSE.findall(text)), default=2)
            outs = []
            for _ in range(n):
                self.calls += 1
                if self.unparseable and self.calls % self.unparseable == 0:
                    outs.append(Completion(text="I cannot decide.", tokens=4))
                    continue
                scores = ", ".join(f'"response_{i}": {max(1, 10 - i)}' for i in range(1, k + 1))
                body = (
                    "PART 1\nPersona: prefers concise, concrete answers.\n"
                    "- Concision: 60%\n- Accuracy: 40%\n"
                    f'PART 2 <JSON_START>{{"better_response": {{{scores}}}}}<JSON_END>'
                )
                outs.append(Completion(text=body, tokens=40))
            out.append(outs)
        return out


def make_settings(
    tmp: Path,
    models_dir: Path,
    *,
    token: str | None = None,
    samples: int = 1,
    neighbours: int = 1,
    max_body: int = 64_000,
) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        models_dir=models_dir,
        models=ModelSettings(samples=samples, neighbours=neighbours, max_new_tokens=64),
        api=ApiSettings(token=SecretStr(token) if token else None, max_body_bytes=max_body),
    )


def feedback(
    user: str,
    i: int,
    *,
    request_id: str | None = None,
    chosen: str | None = None,
    rejected: str | None = None,
) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=f"{user}-e{i}-{uuid.uuid4().hex[:6]}",
        user_id=user,
        context=[ChatMessage(role="user", content=f"Suggest a weekend trip number {i}")],
        chosen=chosen or f"A short, concrete plan {i}: train at 9, museum, early dinner.",
        rejected=rejected or f"A long rambling list of every possible option {i}.",
        request_id=request_id,
    )


def reward_request(user: str, rid: str | None = None) -> RewardRequest:
    return RewardRequest(
        request_id=rid or f"r-{uuid.uuid4().hex[:12]}",
        user_id=user,
        context=[ChatMessage(role="user", content="Plan my Saturday in Lyon")],
        candidates=[
            "Croissant at 9, Fourvière, bouchon lunch.",
            "Here are 40 things you could possibly consider doing in Lyon...",
        ],
    )


@pytest.fixture
def api_settings(tmp_path: Path, models_dir: Path) -> Settings:
    return make_settings(tmp_path, models_dir)


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


def open_service(settings: Settings, backend: ScriptedBackend) -> tuple[Any, str]:
    """The real PgenrmService, or the FAKE one while the real one cannot be imported."""
    try:
        from stream.service import PgenrmService

        return PgenrmService.open(settings, backend=backend), "real"
    except ImportError as exc:
        import warnings

        from tests.api.fakes import FakeService

        warnings.warn(f"API tests use FakeService: real service unavailable ({exc})", stacklevel=2)
        return FakeService(), "fake"


@pytest.fixture
def service(api_settings: Settings, backend: ScriptedBackend) -> Iterator[Any]:
    svc, _kind = open_service(api_settings, backend)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def live() -> Any:
    from stream.api.live import LiveStats

    return LiveStats()
