"""Onboarding profiles: ``PgenrmService.apply_profile`` and the route HTTP -> topic -> agent.

The end-to-end test runs ``pgenrm up`` (worker and API, prior-only rewards) as a
child process on the real tansu broker over a store seeded with two prototypes,
then checks that a profile turns the same reward request from ``cold_start``
into ``prototype`` mode, that a duplicate is applied once, and that each kind of
bad profile is dead-lettered with its reason while a good one after it applies.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.broker import free_port
from infra.clients import request_reward
from infra.contracts import UserProfile
from infra.kafka import make_consumer, make_producer
from infra.settings import Settings
from infra.topics import PROFILES, dlq
from stream.config import StreamConfig
from stream.demo import worker_process
from stream.exceptions import ProfileRejectedError
from stream.service import PgenrmService
from tests.stream.test_service import _two_tastes, request

WORKER_ENV = {
    "PGENRM_STREAM_LOAD_BACKEND": "false",
    "PGENRM_STREAM_PERSONA_REFRESH": "false",
    "PGENRM_STREAM_TORCH_THREADS": "1",
    "PGENRM_STREAM_API": "true",
}
COOK_PREFS = "I cook at home: recipes, spices, baking and roasting."


def test_apply_profile_once_per_event_id(service: PgenrmService) -> None:
    p_concise, p_verbose = _two_tastes(service)
    prof = UserProfile(event_id="pe-1", user_id="newbie", prototype_id=p_verbose)
    st = service.apply_profile(prof)
    assert st is not None and (st.prototype_id, st.history_size) == (p_verbose, 0)
    assert service.apply_profile(prof) is None  # the same event again: nothing
    # the event id decides, not the content: a re-sent id with other content changes nothing
    assert service.apply_profile(prof.model_copy(update={"prototype_id": p_concise})) is None
    again = service.user("newbie")
    assert again is not None and again.prototype_id == p_verbose
    res = service.score(request("n1", "newbie"), signals={"prior"})
    assert (res.mode, res.prototype_id) == ("prototype", p_verbose)
    for bad, reason in [
        (
            UserProfile(event_id="pe-2", user_id="concise0", prototype_id=p_verbose),
            "user_has_history",
        ),
        (UserProfile(event_id="pe-3", user_id="ghost", prototype_id=99_999), "unknown_prototype"),
    ]:
        with pytest.raises(ProfileRejectedError) as info:
            service.apply_profile(bad)
        assert info.value.reason == reason
    assert service.user("ghost") is None  # nothing was written for a rejected profile
    concise0 = service.user("concise0")
    assert concise0 is not None and concise0.prototype_id == p_concise
    # a rejected id is not marked: the same id applies once its problem is gone
    fixed = UserProfile(event_id="pe-3", user_id="ghost", prototype_id=p_concise)
    assert service.apply_profile(fixed) is not None
    assert service.counters["profiles_applied"] == 2
    assert service.counters["profiles_duplicate"] == 2


def _seed_prototypes(settings: Settings, embedder: Any, config: StreamConfig) -> tuple[int, int]:
    svc = PgenrmService.open(settings, embedder=embedder, config=config)
    try:
        return _two_tastes(svc)
    finally:
        svc.close()


def _wait_ready(url: str, proc: Any, log: Path, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited {proc.returncode}: {log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"API not ready after {timeout_s}s: {log.read_text()[-3000:]}")


def _dead_letters(
    s: Settings, keys: set[bytes], *, expected: int, timeout_s: float
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """(key, value, headers) of profile dead letters under ``keys``."""
    from kafka import TopicPartition

    c = make_consumer(s, group_id=None)
    t = dlq(PROFILES)
    c.assign([TopicPartition(t, p) for p in sorted(c.partitions_for_topic(t) or [])])
    c.seek_to_beginning()
    out: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
    end = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < end:
            for recs in c.poll(timeout_ms=200).values():
                out += [(r.key, r.value, dict(r.headers)) for r in recs if r.key in keys]
    finally:
        c.close()
    return out


def _user(url: str, user_id: str, timeout_s: float) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        r = httpx.get(f"{url}/v1/users/{user_id}", timeout=10)
        if r.status_code == 200:
            return dict(r.json())
        time.sleep(0.2)
    raise AssertionError(f"user {user_id} never registered")


def _metric(text: str, name: str, labels: dict[str, str]) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


PROCESSED, DEAD = "pgenrm_events_processed_total", "pgenrm_events_dead_lettered_total"
ON_PROFILES = {"topic": PROFILES}


def _quiet_metrics(s: Settings, url: str, timeout_s: float) -> str:
    """/metrics once the worker has handled every record on the profiles topic so far.

    The topic is shared by the test session (other tests produce to it), so the
    counts this test checks are deltas from this point.
    """
    from kafka import TopicPartition

    from infra.kafka import seek_to_highwater

    c = make_consumer(s, group_id=None)
    try:
        c.assign(
            [TopicPartition(PROFILES, p) for p in sorted(c.partitions_for_topic(PROFILES) or [])]
        )
        records = sum(seek_to_highwater(c).values())
    finally:
        c.close()
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        handled = _metric(text, PROCESSED, ON_PROFILES) + _metric(text, DEAD, ON_PROFILES)
        if handled >= records:
            return text
        time.sleep(0.2)
    raise AssertionError(f"the worker did not handle the {records} earlier profile records")


def test_profile_route_turns_cold_start_into_prototype_mode(
    kafka_settings: Settings,
    unique_group: str,
    tmp_path: Path,
    embedder: Any,
    stream_config: StreamConfig,
) -> None:
    s = kafka_settings
    p_concise, p_verbose = _seed_prototypes(s, embedder, stream_config)
    prefix = uuid.uuid4().hex[:8]
    newcomer, cook = f"{prefix}-newcomer", f"{prefix}-cook"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "worker.log"
    env = {**WORKER_ENV, "PGENRM_API_PORT": str(port)}
    with worker_process(s, env, log, unique_group) as proc:
        _wait_ready(url, proc, log, 300)
        # without a profile the request is routed by its query (on the shared session
        # broker the worker also applies other tests' feedback, so which prototype that
        # is depends on the test order; the mode does not)
        cold = request_reward(s, request(f"{prefix}-r1", newcomer), timeout_s=240)
        assert cold.mode == "cold_start" and cold.samples_used == 0
        before = _quiet_metrics(s, url, 60)

        good = UserProfile(event_id=f"{prefix}-p1", user_id=newcomer, prototype_id=p_verbose)
        for _ in range(2):  # the second is a duplicate (same event_id, same partition)
            r = httpx.post(f"{url}/v1/profiles", json=good.model_dump(mode="json"), timeout=30)
            assert r.status_code == 202, r.text
            assert (r.json()["topic"], r.json()["event_id"]) == (PROFILES, good.event_id)
        invalid = httpx.post(
            f"{url}/v1/profiles", json={"event_id": f"{prefix}-p0", "user_id": newcomer}, timeout=30
        )
        assert invalid.status_code == 422, invalid.text

        key = f"{prefix}-bad".encode()
        bad = {
            "invalid_json": b"{oops",
            "schema_violation": json.dumps({"event_id": f"{prefix}-b1", "user_id": cook}).encode(),
            "unknown_prototype": UserProfile(
                event_id=f"{prefix}-b2", user_id=cook, prototype_id=99_999
            )
            .model_dump_json()
            .encode(),
            "user_has_history": UserProfile(
                event_id=f"{prefix}-b3", user_id="verbose0", prototype_id=p_concise
            )
            .model_dump_json()
            .encode(),
        }
        after = UserProfile(event_id=f"{prefix}-p2", user_id=cook, stated_preferences=COOK_PREFS)
        prod = make_producer(s)
        try:
            for value in [*bad.values(), after.model_dump_json().encode()]:
                prod.send(PROFILES, key=key, value=value)  # one partition: this order
            prod.flush()
        finally:
            prod.close()

        letters = _dead_letters(s, {key, newcomer.encode()}, expected=5, timeout_s=120)
        by_reason = {h["pgenrm-error-reason"].decode(): (k, v, h) for k, v, h in letters}
        assert sorted(h["pgenrm-error-reason"].decode() for _, _, h in letters) == sorted(
            [*bad, "duplicate_id"]
        )
        for reason, value in bad.items():
            assert by_reason[reason][1] == value  # the original bytes
        assert by_reason["duplicate_id"][1] == good.model_dump_json().encode()
        assert by_reason["duplicate_id"][0] == newcomer.encode()
        assert b"no prototype 99999" in by_reason["unknown_prototype"][2]["pgenrm-error-detail"]
        assert b"has history" in by_reason["user_has_history"][2]["pgenrm-error-detail"]

        # the good profile after the bad ones was applied, and so was the first one
        assert _user(url, cook, 60)["stated_preferences"] == COOK_PREFS
        onboarded = _user(url, newcomer, 60)
        assert (onboarded["prototype_id"], onboarded["history_size"]) == (p_verbose, 0)
        veteran = _user(url, "verbose0", 10)
        assert veteran["prototype_id"] == p_verbose  # the rejected profile changed nothing

        # the same request, now with the profile: the prototype the user was assigned to
        warm = request_reward(s, request(f"{prefix}-r2", newcomer), timeout_s=120)
        assert (warm.mode, warm.prototype_id, warm.samples_used) == ("prototype", p_verbose, 0)
        assert "prototype assigned to the user" in warm.explanation.notes
        routed = request_reward(s, request(f"{prefix}-r3", cook), timeout_s=120)
        assert routed.mode == "prototype" and routed.prototype_id is not None
        assert "prototype routed by the user's stated preferences" in routed.explanation.notes

        after_all = httpx.get(f"{url}/metrics", timeout=30).text

    def delta(name: str, **labels: str) -> float:
        return _metric(after_all, name, {**ON_PROFILES, **labels}) - _metric(
            before, name, {**ON_PROFILES, **labels}
        )

    assert delta(PROCESSED) == 2.0  # the first profile and the good one after the bad ones
    for reason in [*bad, "duplicate_id"]:  # the duplicate is counted once, as a duplicate
        assert delta(DEAD, reason=reason) == 1.0, reason
    assert delta(DEAD) == 5.0
