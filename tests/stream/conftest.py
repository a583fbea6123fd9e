"""Fixtures of the stream tests: real embedder, real Qdrant Edge store, real SmolLM2.

Shared fixtures (``broker``, ``kafka_settings``, ``unique_group``, ``tmp_settings``,
``models_dir``) come from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.settings import ModelSettings, Settings
from stream.config import StreamConfig


@pytest.fixture(scope="session")
def embedder() -> Any:
    from prototypes.embedder import load_embedder

    return load_embedder("minilm")


@pytest.fixture(scope="session")
def smollm2(models_dir: Path) -> Any:
    """The real SmolLM2-135M backend; skips when ``pgenrm models install smollm2`` was not run."""
    from reward.backends import load_backend
    from reward.exceptions import ModelInstallError

    try:
        return load_backend(ModelSettings(model="smollm2"), models_dir)
    except ModelInstallError as exc:
        pytest.skip(f"smollm2 not installed ({exc}); run `pgenrm models install smollm2`")


@pytest.fixture
def svc_settings(tmp_path: Path, models_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        models=ModelSettings(samples=1, neighbours=1, max_new_tokens=32, history_size=3),
    )


@pytest.fixture
def stream_config() -> StreamConfig:
    return StreamConfig(max_history=1000, persona_refresh=False, load_backend=False)


@pytest.fixture
def service(svc_settings: Settings, embedder: Any, stream_config: StreamConfig) -> Iterator[Any]:
    from stream.service import PgenrmService

    svc = PgenrmService.open(svc_settings, embedder=embedder, config=stream_config)
    try:
        yield svc
    finally:
        svc.close()
