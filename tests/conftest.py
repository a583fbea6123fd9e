"""Fixtures shared by every test package.

``broker``          session: a running tansu (memory storage, free port); ``.bootstrap``.
                    Set ``PGENRM_TEST_BOOTSTRAP=host:port`` to use an external broker instead.
``kafka_topics``    session: pgenrm's topics created on ``broker`` (``ensure_topics``);
                    the list of topic names.
``kafka_settings``  a Settings on ``broker`` (embedded=False, topics already created),
                    data_dir under tmp_path, models_dir the repo's ``models/``.
``unique_group``    a fresh consumer group id (tansu bug C: never reuse a group).
``tmp_settings``    a Settings with data_dir under tmp_path, the repo's ``models/``, and an
                    embedded broker on a free port (nothing started).
``shared_prefeval`` Path of ``<shared>/data/prefeval``; skips when absent
                    (``PGENRM_SHARED_DIR`` overrides ``<shared>``, default ``../shared``).
``models_dir``      session: Path of the repo's ``models/`` (may not exist yet).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.broker import EmbeddedBroker, free_port
from infra.exceptions import BrokerStartError
from infra.settings import BrokerSettings, Settings

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ExternalBroker:
    """A broker this test session did not start (``PGENRM_TEST_BOOTSTRAP``)."""

    bootstrap: str


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return REPO / "models"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker | ExternalBroker]:
    external = os.environ.get("PGENRM_TEST_BOOTSTRAP")
    if external:
        yield ExternalBroker(external)
        return
    data_dir = tmp_path_factory.mktemp("broker")
    last: BrokerStartError | None = None
    for _ in range(3):  # a free port can be taken between probing and binding
        b = EmbeddedBroker(port=free_port(), data_dir=data_dir, stop_timeout_s=3.0)
        try:
            b.start()
        except BrokerStartError as exc:
            last = exc
            continue
        try:
            yield b
        finally:
            b.stop()
        return
    raise RuntimeError(f"tansu did not start: {last}")


@pytest.fixture(scope="session")
def kafka_topics(broker: EmbeddedBroker | ExternalBroker) -> list[str]:
    from infra.kafka import ensure_topics
    from infra.topics import all_topics

    settings = Settings(broker=BrokerSettings(urls=broker.bootstrap, embedded=False))
    ensure_topics(settings)
    return [t.name for t in all_topics(settings.broker.partitions)]


@pytest.fixture
def unique_group(request: pytest.FixtureRequest) -> str:
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"test-{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tmp_settings(tmp_path: Path, models_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=models_dir,
        broker=BrokerSettings(urls=f"127.0.0.1:{free_port()}", embedded=True),
    )


@pytest.fixture
def kafka_settings(
    broker: EmbeddedBroker | ExternalBroker, kafka_topics: list[str], tmp_settings: Settings
) -> Settings:
    return tmp_settings.model_copy(
        update={"broker": BrokerSettings(urls=broker.bootstrap, embedded=False)}
    )


@pytest.fixture
def shared_prefeval() -> Path:
    root = Path(os.environ.get("PGENRM_SHARED_DIR", REPO.parent / "shared"))
    for candidate in (root / "data" / "prefeval", root / "prefeval"):
        if candidate.is_dir():
            return candidate
    pytest.skip(f"shared PrefEval data not found under {root}")
