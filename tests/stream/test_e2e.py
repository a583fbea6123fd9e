"""End to end on the real tansu broker, with the worker as a child process (``pgenrm up``).

The real store (Qdrant Edge on disk) and the real embedder run inside the worker;
after the worker stops, the test opens the same store and checks it exactly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from infra.contracts import ChatMessage, FeedbackEvent, PersonaState, RewardRequest
from infra.kafka import encode_value, make_consumer, make_producer, produce
from infra.settings import Settings
from infra.topics import FEEDBACK, PERSONAS, REWARD_REQUESTS, dlq
from stream.demo import worker_process

FEEDBACK_ONLY = {
    "PGENRM_STREAM_LOAD_BACKEND": "false",
    "PGENRM_STREAM_PERSONA_REFRESH": "false",
    "PGENRM_STREAM_MAX_HISTORY": "100000",
    "PGENRM_STREAM_TORCH_THREADS": "1",
}


def worker(
    settings: Settings, group: str, env_extra: dict[str, str], log: Path
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The feedback worker as ``pgenrm up`` in a child process, without the HTTP API."""
    return worker_process(settings, {"PGENRM_STREAM_API": "false", **env_extra}, log, group)


class States:
    """Follows pgenrm.personas.v1 from the start: highest events_applied per user."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        from kafka import TopicPartition

        self.prefix = prefix
        self.applied: dict[str, int] = {}
        self.versions: dict[str, list[int]] = {}
        self.c = make_consumer(settings, group_id=None, max_poll_records=5000)
        parts = self.c.partitions_for_topic(PERSONAS) or set()
        self.c.assign([TopicPartition(PERSONAS, p) for p in sorted(parts)])
        self.c.seek_to_beginning()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for recs in self.c.poll(timeout_ms=100).values():
                for r in recs:
                    st = PersonaState.model_validate_json(r.value)
                    if not st.user_id.startswith(self.prefix):
                        continue
                    with self.lock:
                        self.applied[st.user_id] = max(
                            self.applied.get(st.user_id, 0), st.events_applied
                        )
                        self.versions.setdefault(st.user_id, []).append(st.version)

    def total(self) -> int:
        with self.lock:
            return sum(self.applied.values())

    def wait_total(
        self, n: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float
    ) -> None:
        end = time.monotonic() + timeout_s
        while self.total() < n:
            if proc.poll() is not None:
                raise AssertionError(f"worker died: {log.read_text()[-3000:]}")
            if time.monotonic() > end:
                raise AssertionError(
                    f"only {self.total()}/{n} applied after {timeout_s}s: {log.read_text()[-3000:]}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self.stop.set()
        self.t.join(5)
        self.c.close()


def events_for(prefix: str, n: int, users: int) -> list[FeedbackEvent]:
    return [
        FeedbackEvent(
            event_id=f"{prefix}-e{i}",
            user_id=f"{prefix}-u{i % users}",
            context=[ChatMessage(role="user", content=f"question {i % 37} about topic {i % 11}")],
            chosen=f"short answer {i}",
            rejected=f"a much longer and more winding answer number {i}",
            critique="shorter please" if i % 7 == 0 else None,
        )
        for i in range(n)
    ]


def open_store(settings: Settings) -> Any:
    from prototypes.stores import open_stores

    return open_stores(settings)


def test_bad_inputs_are_dead_lettered_while_processing_continues(
    kafka_settings: Settings, unique_group: str, tmp_path: Path
) -> None:
    s = kafka_settings
    prefix = unique_group[-10:]
    good = events_for(prefix, 40, 4)
    req_ok = RewardRequest(
        request_id=f"{prefix}-r1",
        user_id=f"{prefix}-u0",
        context=[ChatMessage(role="user", content="q")],
        candidates=["a b c", "d e f"],
    )
    bad_fb = [
        b"{oops",
        json.dumps({"event_id": f"{prefix}-x", "user_id": "u"}).encode(),
        json.dumps({**json.loads(encode_value(good[0])), "schema_version": 7}).encode(),
        b'{"pad": "' + b"x" * (s.broker.max_message_bytes + 10) + b'"}',
    ]
    one = json.loads(encode_value(req_ok))
    one.update(request_id=f"{prefix}-r2", candidates=["lonely"])
    bad_req = [json.dumps(one).encode()]  # candidate_count
    prod = make_producer(s, max_request_size=4 * s.broker.max_message_bytes)
    key = f"{prefix}-bad".encode()
    for i, ev in enumerate(good):
        produce(prod, FEEDBACK, ev)
        if i % 8 == 0 and i // 8 < len(bad_fb):
            prod.send(FEEDBACK, key=key, value=bad_fb[i // 8])
    produce(prod, REWARD_REQUESTS, req_ok)
    for v in bad_req:
        prod.send(REWARD_REQUESTS, key=key, value=v)
    # Duplicates go under the original's key: same partition, so they arrive after the
    # original (under another key the copy can win the race and be the one applied).
    dup_keys = {good[3].user_id.encode(), req_ok.user_id.encode()}
    produce(prod, FEEDBACK, good[3])  # duplicate event_id
    produce(prod, REWARD_REQUESTS, req_ok)  # duplicate request_id
    prod.flush()
    states = States(s, prefix)
    log = tmp_path / "worker.log"
    try:
        with worker(s, unique_group, FEEDBACK_ONLY, log) as proc:
            states.wait_total(40, proc, log, 180)
            reasons = _dlq_reasons(s, {key, *dup_keys}, expected=7, timeout_s=120)
    finally:
        states.close()
    assert sorted(reasons[dlq(FEEDBACK)]) == sorted(
        ["invalid_json", "schema_violation", "unknown_schema_version", "oversize", "duplicate_id"]
    )
    assert sorted(reasons[dlq(REWARD_REQUESTS)]) == ["candidate_count", "duplicate_id"]
    stores = open_store(s)
    try:
        for u in range(4):
            st = stores.users.get(f"{prefix}-u{u}")
            assert st is not None and st.events_applied == 10
            # per-user order: the history is the produced order of that user's events
            assert [h.chosen for h in st.history] == [
                e.chosen for e in good if e.user_id == f"{prefix}-u{u}"
            ]
    finally:
        stores.close()
    for vs in states.versions.values():
        assert vs == sorted(vs)  # states of one user are published in order


def _dlq_reasons(
    s: Settings, keys: set[bytes], *, expected: int, timeout_s: float
) -> dict[str, list[str]]:
    from kafka import TopicPartition

    c = make_consumer(s, group_id=None)
    tps = []
    for t in (dlq(FEEDBACK), dlq(REWARD_REQUESTS)):
        tps += [TopicPartition(t, p) for p in sorted(c.partitions_for_topic(t) or [])]
    c.assign(tps)
    c.seek_to_beginning()
    out: dict[str, list[str]] = {dlq(FEEDBACK): [], dlq(REWARD_REQUESTS): []}
    end = time.monotonic() + timeout_s
    while sum(len(v) for v in out.values()) < expected and time.monotonic() < end:
        for tp, recs in c.poll(timeout_ms=200).items():
            for r in recs:
                if r.key in keys:
                    out[tp.topic].append(dict(r.headers)["pgenrm-error-reason"].decode())
    c.close()
    return out


def _dlq_keys_and_reasons(
    s: Settings, key_prefix: bytes, *, timeout_s: float, expected: int
) -> list[tuple[str, str]]:
    """(event_id, reason) of feedback dead letters whose key starts with ``key_prefix``."""
    from kafka import TopicPartition

    c = make_consumer(s, group_id=None, max_poll_records=5000)
    t = dlq(FEEDBACK)
    c.assign([TopicPartition(t, p) for p in sorted(c.partitions_for_topic(t) or [])])
    c.seek_to_beginning()
    out: list[tuple[str, str]] = []
    end = time.monotonic() + timeout_s
    idle = 0
    while time.monotonic() < end and (len(out) < expected or idle < 5):
        batches = c.poll(timeout_ms=200)
        idle = 0 if batches else idle + 1
        for recs in batches.values():
            for r in recs:
                if r.key and r.key.startswith(key_prefix):
                    eid = json.loads(r.value)["event_id"]
                    out.append((eid, dict(r.headers)["pgenrm-error-reason"].decode()))
    c.close()
    return out


@pytest.mark.slow
def test_sigkill_midway_loses_nothing_and_double_counts_nothing(
    kafka_settings: Settings, unique_group: str, tmp_path: Path
) -> None:
    s = kafka_settings
    prefix = unique_group[-10:]
    n, users = 10_000, 200
    events = events_for(prefix, n, users)
    dups = events[:: n // 100]  # 100 re-sent events (same ids, new offsets)
    prod = make_producer(s, linger_ms=20, batch_size=256 * 1024)
    for ev in events:
        produce(prod, FEEDBACK, ev)
    for ev in dups:
        produce(prod, FEEDBACK, ev)
    prod.flush()
    prod.close()
    states = States(s, prefix)
    log = tmp_path / "worker.log"
    env = {**FEEDBACK_ONLY, "PGENRM_STREAM_FEEDBACK_BATCH": "128"}
    try:
        with worker(s, unique_group, env, log) as proc:
            states.wait_total(n // 4, proc, log, 400)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        killed_at = states.total()
        assert killed_at < n, "the worker finished before the kill; nothing was tested"
        with worker(s, unique_group, env, log) as proc:
            states.wait_total(n, proc, log, 420)
            time.sleep(3)  # give any double-count time to show up
    finally:
        states.close()
    stores = open_store(s)
    try:
        expected = {f"{prefix}-u{u}": n // users for u in range(users)}
        got = stores.users.get_many(sorted(expected))
        assert {u: st.events_applied for u, st in got.items()} == expected
        assert {u: st.history_size for u, st in got.items()} == expected
        assert all(
            st.critiques == sum(1 for e in events if e.user_id == u and e.critique)
            for u, st in got.items()
        )
        assert stores.ledger.seen([e.event_id for e in events]) == {e.event_id for e in events}
    finally:
        stores.close()
    # the re-sent events were dead-lettered as duplicates (at least once each), and
    # nothing else: replays after the kill are skipped silently
    dl = _dlq_keys_and_reasons(s, f"{prefix}-u".encode(), timeout_s=30, expected=len(dups))
    assert {reason for _, reason in dl} == {"duplicate_id"}
    assert {eid for eid, _ in dl} == {e.event_id for e in dups}
    assert max(states.applied.values()) == n // users  # never over-counted on the way


@pytest.mark.slow
def test_demo_scenario(kafka_settings: Settings, models_dir: Path) -> None:
    pytest.importorskip("transformers")
    if not (models_dir / "smollm2" / ".pgenrm-model.json").exists():
        pytest.skip("smollm2 not installed; run `pgenrm models install smollm2`")
    from rich.console import Console

    from stream.demo import run_demo

    first, second = run_demo(
        kafka_settings,
        max_new_tokens=48,
        samples=1,
        neighbours=1,
        timeout_s=600,
        console=Console(quiet=True),
    )
    assert first.mode == "cold_start" and first.samples_used == 0
    assert second.mode == "personal" and second.samples_used == 1
    assert second.prototype_id is not None
    assert "prior" in second.components
    assert second.explanation.critique_summary  # Alice's critiques are part of the explanation
