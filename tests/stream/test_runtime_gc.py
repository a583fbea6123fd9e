"""The worker freezes what it loaded out of the garbage collector's reach, and times collections."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from infra.kafka import encode_value
from infra.metrics import GC_PAUSES
from infra.settings import Settings
from infra.topics import FEEDBACK
from stream.config import StreamConfig
from stream.runtime import MemoryPublisher, Record, StreamRuntime
from tests.stream.helpers import fb


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session keeps a normal collector


@pytest.mark.parametrize("freeze", [True, False])
def test_opening_the_service_freezes_the_loaded_objects_only_when_configured(
    svc_settings: Settings, service: Any, unfrozen: None, freeze: bool
) -> None:
    cfg = StreamConfig(gc_freeze=freeze, persona_refresh=False, load_backend=False, api=False)
    rt = StreamRuntime(
        svc_settings, publisher=MemoryPublisher(), config=cfg, open_service=lambda: service
    )
    assert gc.get_freeze_count() == 0

    async def main() -> tuple[int, bool]:
        try:
            svc = await rt.service()
            frozen = gc.get_freeze_count()
            # the service opened is alive, so (when frozen) it is among the frozen objects
            return frozen, svc is service
        finally:
            await rt.stop()

    frozen, same = asyncio.run(main())
    assert same
    if freeze:
        assert frozen > 10_000  # the loaded embedder and store, not a handful of objects
    else:
        assert frozen == 0


def test_the_default_is_to_freeze() -> None:
    assert StreamConfig().gc_freeze is True


def _collections_counted(generation: int) -> float:
    for metric in GC_PAUSES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["generation"] == str(generation):
                return sample.value
    return 0.0


def test_collections_while_started_reach_the_metrics_stage_ms_and_the_trace(
    svc_settings: Settings,
    service: Any,
    unfrozen: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = StreamConfig(
        gc_freeze=False, persona_refresh=False, load_backend=False, api=False, trace=True
    )
    rt = StreamRuntime(
        svc_settings, publisher=MemoryPublisher(), config=cfg, open_service=lambda: service
    )
    ev = fb("gc-e1", "gc-u1")
    record = Record(FEEDBACK, 0, 0, ev.user_id.encode(), encode_value(ev))
    before = _collections_counted(2)

    async def main() -> None:
        await rt.start()
        try:
            gc.collect(2)
            gc.collect(2)
            await rt.handle_feedback([record])
        finally:
            await rt.stop()

    with caplog.at_level(logging.INFO, logger="stream.runtime"):
        asyncio.run(main())
    counted = _collections_counted(2) - before
    assert counted >= 2  # the two above, and any the batch triggered
    gc.collect(2)
    assert _collections_counted(2) - before == counted  # stopped: no longer recorded
    assert rt.stage_ms["gc2.pause"] > 0
    traced = [
        json.loads(r.getMessage().split("pgenrm trace ", 1)[1])
        for r in caplog.records
        if "pgenrm trace " in r.getMessage()
    ]
    gc2 = [t for t in traced if t["path"] == "gc2"]
    assert sum(t["n"] for t in gc2) == counted
    assert all(0 < t["max_ms"] <= t["total_ms"] for t in gc2)
    assert any(t["path"] == "feedback" for t in traced)
    assert rt.counters["feedback_applied"] == 1


def test_an_idle_started_runtime_still_reports_its_collections(
    svc_settings: Settings, service: Any, unfrozen: None
) -> None:
    cfg = StreamConfig(gc_freeze=False, persona_refresh=False, load_backend=False, api=False)
    rt = StreamRuntime(
        svc_settings, publisher=MemoryPublisher(), config=cfg, open_service=lambda: service
    )
    rt.gc_report_every_s = 0.05
    before = _collections_counted(2)

    async def main() -> float:
        await rt.start()
        try:
            gc.collect(2)  # and no feedback or request after it
            for _ in range(100):
                await asyncio.sleep(0.05)
                if _collections_counted(2) > before:
                    break
            return _collections_counted(2) - before
        finally:
            await rt.stop()

    assert asyncio.run(main()) >= 1
    assert rt.stage_ms["gc2.pause"] > 0
