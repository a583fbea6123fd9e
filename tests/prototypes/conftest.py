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


@pytest.fixture(params=["edge", "memory"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_settings(tmp_path: Path, kind: str) -> Settings:
    mode: Literal["embedded", "memory"] = "embedded" if kind == "edge" else "memory"
    return Settings(data_dir=tmp_path, qdrant=QdrantSettings(mode=mode))


@pytest.fixture
def stores(tmp_path: Path, store_kind: str) -> Iterator[Stores]:
    s = open_stores(make_settings(tmp_path, store_kind), dim=DIM)
    yield s
    s.close()


@pytest.fixture(scope="session")
def minilm() -> Any:
    from prototypes.embedder import load_embedder

    return load_embedder("minilm")
