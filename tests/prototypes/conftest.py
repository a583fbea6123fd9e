"""Fixtures of the prototype-layer tests: stores on both adapters, small items."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from infra.contracts import ChatMessage
from infra.settings import QdrantSettings, Settings
from prototypes.stores import Stores, open_stores
from prototypes.stores.cache import CachedUserStore
from reward.protocol import HistoryItem

DIM = 8


def item(i: int, critique: str | None = None) -> HistoryItem:
    return HistoryItem(
        context=[ChatMessage(role="user", content=f"question {i}")],
        chosen=f"good answer {i}",
        rejected=f"bad answer {i}",
        critique=critique,
    )


def unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) / np.linalg.norm(v)


@pytest.fixture(params=["edge", "memory", "edge+cache"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_settings(tmp_path: Path, kind: str) -> Settings:
    mode: Literal["embedded", "memory"] = "memory" if kind == "memory" else "embedded"
    return Settings(data_dir=tmp_path, qdrant=QdrantSettings(mode=mode))


@pytest.fixture
def stores(tmp_path: Path, store_kind: str) -> Iterator[Stores]:
    s = open_stores(make_settings(tmp_path, store_kind), dim=DIM)
    if store_kind == "edge+cache":  # the write-through cache must keep the same contract
        s.users = CachedUserStore(s.users, size=4)  # smaller than some tests' user counts
    yield s
    s.close()


@pytest.fixture(scope="session")
def minilm() -> Any:
    from prototypes.embedder import load_embedder

    return load_embedder("minilm")
