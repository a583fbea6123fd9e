"""PgenrmService on the real store (Qdrant Edge) with the real embedder (MiniLM)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.contracts import ChatMessage, RewardOverrides, RewardRequest, RewardResult
from infra.settings import Settings
from stream.config import StreamConfig
from stream.exceptions import StreamError
from stream.service import PgenrmService, request_key
from tests.stream.helpers import CONCISE, VERBOSE, CountingEmbedder, fb


def request(rid: str, user: str, *, deadline_ms: int | None = None) -> RewardRequest:
    return RewardRequest(
        request_id=rid,
        user_id=user,
        context=[ChatMessage(role="user", content="How do I plan a weekend away?")],
        candidates=[VERBOSE + " (weekend)", CONCISE + " (weekend)"],
        overrides=RewardOverrides(deadline_ms=deadline_ms) if deadline_ms else None,
    )


def test_feedback_is_applied_once_across_batches_and_restarts(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    events = [fb(f"e{i}", f"u{i % 3}", critique="shorter" if i % 2 else None) for i in range(9)]
    pos = [(0, i) for i in range(9)]
    with PgenrmService.open(svc_settings, embedder=embedder, config=stream_config) as svc:
        out = svc.apply_feedback(events, pos)
        assert [o.status for o in out] == ["applied"] * 9
        # Kafka redelivers the same records (crash before commit): silent replays
        again = svc.apply_feedback(events, pos)
        assert {o.status for o in again} == {"replay"}
        # a producer re-sends the same events (new offsets): duplicates, for the DLQ
        resent = svc.apply_feedback(events, [(0, 100 + i) for i in range(9)])
        assert {o.status for o in resent} == {"duplicate"}
        u0 = svc.user("u0")
        assert u0 is not None and u0.events_applied == 3 and u0.history_size == 3
        assert u0.critiques == 1  # e3 only (e0, e6 carry none)
        assert u0.offsets == {0: 6}
        assert u0.prototype_id is not None
    with PgenrmService.open(svc_settings, embedder=embedder, config=stream_config) as svc2:
        out = svc2.apply_feedback(events[:2], [(1, 0), (1, 1)])
        assert {o.status for o in out} == {"duplicate"}
        assert [o.status for o in svc2.apply_feedback(events[:1])] == ["duplicate"]
        assert {svc2.user(f"u{k}").events_applied for k in range(3)} == {3}  # type: ignore[union-attr]


def test_replay_after_crash_is_skipped_by_the_offset_guard_and_marked(
    service: PgenrmService,
) -> None:
    # the worker wrote u1 up to offset 10 and died before marking the ledger / committing;
    # after restart Kafka redelivers offsets 9 and 10 with ids the ledger has not seen
    # (simulated with fresh ids: only the offset guard can recognise them)
    service.apply_feedback([fb("a9", "u1"), fb("a10", "u1")], [(2, 9), (2, 10)])
    replayed = [fb("r9", "u1"), fb("r10", "u1"), fb("r11", "u1")]
    out = service.apply_feedback(replayed, [(2, 9), (2, 10), (2, 11)])
    assert [o.status for o in out] == ["replay", "replay", "applied"]
    st = service.user("u1")
    assert st is not None and st.events_applied == 3 and st.offsets[2] == 11
    assert service.stores.ledger.seen(["r9", "r10", "r11"]) == {"r9", "r10", "r11"}
    # another partition's offsets are independent
    out = service.apply_feedback([fb("p0", "u1")], [(0, 0)])
    assert out[0].status == "applied"


def test_one_embedder_call_per_batch_and_in_batch_duplicates(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    spy = CountingEmbedder(embedder)
    with PgenrmService.open(svc_settings, embedder=spy, config=stream_config) as svc:
        svc.apply_feedback([fb("x0", "u0")], [(0, 0)])
        spy.calls.clear()
        batch = [fb(f"x{i}", f"u{i % 4}", query=f"question {i % 5}") for i in range(20)]
        batch.append(fb("x5", "u1"))
        pos = [(0, 100 + i) for i in range(21)]
        out = svc.apply_feedback(batch, pos)
        statuses = [o.status for o in out]
        assert statuses.count("duplicate") == 2  # x0 (ledger) and the second x5 (same batch)
        # one call for the 19 new events; repeated texts are embedded once
        # (5 distinct queries + the shared chosen and rejected answers)
        assert spy.calls == [7]


def test_candidates_embed_beside_routing_and_the_prior_is_unchanged(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    spy = CountingEmbedder(embedder)
    with PgenrmService.open(svc_settings, embedder=spy, config=stream_config) as svc:
        svc.apply_feedback([fb(f"a{i}", "u", query=f"question {i}") for i in range(3)])
        spy.calls.clear()
        spy.threads.clear()
        cold = svc.score(request("side-0", "stranger"), signals={"prior"})
        assert cold.mode == "cold_start"
        req = request("side-1", "u")
        k = len(req.candidates)
        # a cold start routes by its query, embedded in this thread, the candidates beside;
        # a personal request routes by the user's vector, so its query embeds beside too
        assert sorted(zip(spy.threads, spy.calls, strict=True)) == [
            ("MainThread", 1),
            ("pgenrm-embed-aside", k),
        ]
        spy.calls.clear()
        spy.threads.clear()
        res = svc.score(req, signals={"prior"})
        assert res.mode == "personal"
        assert list(zip(spy.threads, spy.calls, strict=True)) == [("pgenrm-embed-aside", 1 + k)]
        st = svc.user("u")
        assert st is not None
        from prototypes.embedder import context_text
        from prototypes.prior import prior_scores, user_prior

        e = embedder.embed([context_text(req.context), *req.candidates])
        z = user_prior(st, e[0], svc.refiner)
        assert z is not None
        expected = prior_scores(z, e[1:])
        assert np.allclose(res.components["prior"], expected, atol=1e-3)
        assert any(n.startswith("embed_ms=") for n in res.explanation.notes)
    # closed: no side thread is started again, the candidates embed in the caller
    spy.threads.clear()
    assert svc._embed_aside(["late"]).result().shape == (1, embedder.dim)
    assert spy.threads == ["MainThread"]


def test_prior_only_reward_cold_start_then_personal(service: PgenrmService) -> None:
    cold = service.score(request("q1", "newcomer"), signals={"prior"})
    assert cold.mode == "cold_start"
    assert cold.samples_used == 0 and set(cold.components) <= {"prior"}
    # teach two users opposite tastes; the newcomer becomes concise-minded
    service.apply_feedback(
        [fb(f"c{i}", "concise", query=f"question {i}") for i in range(4)]
        + [
            fb(f"v{i}", "verbose", query=f"question {i}", chosen=VERBOSE, rejected=CONCISE)
            for i in range(4)
        ]
        + [fb("n0", "newcomer", critique="too long")]
    )
    personal = service.score(request("q2", "newcomer"), signals={"prior"})
    assert personal.mode == "personal"
    assert personal.prototype_id is not None
    best = min(personal.scores, key=lambda c: c.rank).index
    assert best == 1  # the concise candidate
    assert personal.components["prior"][1] > personal.components["prior"][0]
    assert personal.explanation.critique_summary == "too long"
    verbose = service.score(request("q3", "verbose"), signals={"prior"})
    assert min(verbose.scores, key=lambda c: c.rank).index == 0
    RewardResult.model_validate_json(personal.model_dump_json())  # the contract holds
    with pytest.raises(ValueError):
        service.score(request("q4", "x"), signals={"vibes"})


TRIP = [
    "How do I plan a trip to Rome?",
    "What should I pack for a weekend away?",
    "Which train pass is best for Europe?",
    "How early should I book flights?",
]
COOK = [
    "How do I make a risotto?",
    "What spices go with lentils?",
    "How long should I roast vegetables?",
    "How do I bake sourdough bread?",
]


def _two_tastes(service: PgenrmService) -> tuple[int, int]:
    """Concise travellers and verbose cooks; returns their prototype ids (distinct)."""
    evs = []
    for u in range(3):
        evs += [fb(f"c{u}-{i}", f"concise{u}", query=q) for i, q in enumerate(TRIP)]
        evs += [
            fb(f"v{u}-{i}", f"verbose{u}", query=q, chosen=VERBOSE, rejected=CONCISE)
            for i, q in enumerate(COOK)
        ]
    service.apply_feedback(evs)
    concise, verbose = service.user("concise0"), service.user("verbose0")
    assert concise is not None and verbose is not None
    assert concise.prototype_id is not None and verbose.prototype_id is not None
    assert concise.prototype_id != verbose.prototype_id
    return concise.prototype_id, verbose.prototype_id


def test_prototype_mode_for_a_known_user_without_history(service: PgenrmService) -> None:
    from prototypes.embedder import context_text
    from prototypes.prior import prior_scores

    p_concise, p_verbose = _two_tastes(service)
    # a stranger asking about a weekend away is routed by the query: the travellers
    stranger = service.score(request("s1", "stranger"), signals={"prior"})
    assert (stranger.mode, stranger.prototype_id) == ("cold_start", p_concise)
    assert min(stranger.scores, key=lambda c: c.rank).index == 1  # concise
    # a user onboarded into the cooks' prototype gets the cooks' reward for the same request
    st = service.register_user("onboarded", prototype_id=p_verbose)
    assert st.history_size == 0 and st.prototype_id == p_verbose
    res = service.serve(request("o1", "onboarded"))
    assert res is not None
    assert (res.mode, res.prototype_id, res.samples_used) == ("prototype", p_verbose, 0)
    assert "prototype assigned to the user" in res.explanation.notes
    assert min(res.scores, key=lambda c: c.rank).index == 0  # verbose
    proto = service.stores.prototypes.get(p_verbose)
    assert proto is not None and proto.size == 3  # the assignment counts nothing
    # embedded in the service's own batch (query first): bf16 rounding follows the batch shape
    req = request("o1", "onboarded")
    cand = service.embedder.embed([context_text(req.context), *req.candidates])[1:]
    expected = prior_scores(np.asarray(proto.z), cand)
    assert np.allclose(res.components["prior"], expected, atol=1e-5)
    # stated preferences alone route to the prototype whose members ask such things
    service.register_user(
        "home-cook", stated_preferences="I cook at home: recipes, spices, baking and roasting."
    )
    cook = service.score(request("h1", "home-cook"), signals={"prior"})
    assert (cook.mode, cook.prototype_id) == ("prototype", p_verbose)
    assert "prototype routed by the user's stated preferences" in cook.explanation.notes
    # known with neither history nor profile: the query routes, as for a stranger
    service.register_user("blank")
    blank = service.score(request("b1", "blank"), signals={"prior"})
    assert (blank.mode, blank.prototype_id) == ("cold_start", p_concise)
    # the served prototype-mode reward is judged by the user's first feedback, which
    # makes the user personal
    out = service.apply_feedback(
        [
            fb(
                "o-fb",
                "onboarded",
                chosen=request("o1", "x").candidates[0],
                rejected=request("o1", "x").candidates[1],
                request_id="o1",
            )
        ]
    )
    assert (out[0].reward_outcome, out[0].reward_mode) == ("correct", "prototype")
    after = service.score(request("o2", "onboarded"), signals={"prior"})
    assert after.mode == "personal"
    with pytest.raises(StreamError):
        service.register_user("onboarded", prototype_id=p_concise)  # has history now
    with pytest.raises(StreamError):
        service.register_user("nobody", prototype_id=9999)
    assert service.counters["rewards_prototype"] == 2


def test_new_stated_preferences_make_the_persona_stale(service: PgenrmService) -> None:
    service.apply_feedback([fb("sp0", "stan")])
    st = service.user("stan")
    assert st is not None
    fresh = service.set_persona("stan", "Likes detail.", [], None, st.version)
    assert fresh is not None and fresh.persona_version == fresh.version  # up to date
    same = service.register_user("stan", stated_preferences=None)
    assert same.version == fresh.version  # nothing the persona reads changed
    told = service.register_user("stan", stated_preferences="Vegetarian, short answers.")
    assert told.version == fresh.version + 1 and told.persona_version < told.version
    again = service.register_user("stan", stated_preferences="Vegetarian, short answers.")
    assert again.version == told.version  # the same words again change nothing
    assert again.history_size == 1 and again.events_applied == 1


def test_answer_once_and_outcome_recorded_per_prototype(service: PgenrmService) -> None:
    service.apply_feedback([fb(f"s{i}", "sam", query=f"q{i}") for i in range(3)])
    req = request("r-1", "sam")
    first = service.serve(req)
    assert first is not None and first.mode == "personal"
    assert service.serve(req) is None
    assert service.counters["requests_repeated"] == 1
    pid = first.prototype_id
    assert pid is not None
    before = service.stores.prototypes.get(pid)
    assert before is not None
    # the user picks the concise candidate for this request
    out = service.apply_feedback(
        [fb("s-out", "sam", chosen=req.candidates[1], rejected=req.candidates[0], request_id="r-1")]
    )
    assert out[0].reward_outcome == "correct"
    assert service.counters["outcomes_correct"] == 1
    assert service.signal_outcomes["prior:correct"] == 1
    after = service.stores.prototypes.get(pid)
    assert after is not None and after.outcomes == before.outcomes + 1
    assert after.correct == before.correct + 1
    assert service.blender.updates == 1
    # feedback naming an unknown request is counted, not fatal
    service.apply_feedback([fb("s-x", "sam", request_id="nope")])
    assert service.counters["outcomes_unknown_request"] == 1


def test_a_failed_batch_retried_event_by_event_counts_each_event_once(
    service: PgenrmService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.apply_feedback([fb("s0", "sam")], [(0, 0)])
    req = request("r-1", "sam")
    assert service.serve(req) is not None
    real_get = service.served.get

    def get(request_id: str) -> Any:
        if request_id == "corrupt":
            raise RuntimeError("unreadable served row")
        return real_get(request_id)

    monkeypatch.setattr(service.served, "get", get)
    batch = [
        fb("s1", "sam", chosen=req.candidates[1], rejected=req.candidates[0], request_id="r-1"),
        fb("t0", "tom", query="Which laptop should I buy?"),
        fb("u0", "uma", request_id="corrupt"),
    ]
    with pytest.raises(RuntimeError):
        service.apply_feedback(batch, [(0, 1), (0, 2), (0, 3)])
    failed = []
    for i, ev in enumerate(batch):  # what the stream does after a failed batch
        try:
            service.apply_feedback([ev], [(0, 1 + i)])
        except RuntimeError:
            failed.append(ev.event_id)
    assert failed == ["u0"]
    users = {s.user_id: s for s, _ in service.stores.users.scan()}
    assert set(users) == {"sam", "tom"}
    protos = service.prototypes()
    assert sum(p.size for p in protos) == 2
    for p in protos:
        assert p.size == sum(1 for s in users.values() if s.prototype_id == p.prototype_id)
    assert sum(p.outcomes for p in protos) == 1
    assert service.counters["outcomes_correct"] + service.counters["outcomes_incorrect"] == 1
    assert service.counters["feedback_applied"] == 3  # s0, s1, t0
    assert service.blender.updates == 1
    assert service.counters["feedback_batches_rolled_back"] == 2


def test_a_served_request_is_refused_before_and_after_its_ledger_write(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    with PgenrmService.open(svc_settings, embedder=embedder, config=stream_config) as svc:
        req = request("n-1", "nora")
        assert svc.serve(req, mark=False) is not None
        assert svc.serve(req, mark=False) is None  # reserved, not written yet
        assert not svc.stores.ledger.seen([request_key("n-1")])
        svc.mark_answered("n-1")  # the ledger write, off the request path
        assert svc.serve(req, mark=False) is None
        assert svc.counters["requests_repeated"] == 2
        other = request("n-2", "nora")
        assert svc.serve(other, mark=False) is not None
        svc.release("n-2")  # its answer could not be published
        assert svc.serve(other, mark=False) is not None
    with PgenrmService.open(svc_settings, embedder=embedder, config=stream_config) as again:
        assert again.serve(request("n-1", "nora")) is None  # durable across a restart


def test_a_ledger_failure_while_serving_leaves_the_request_answerable(
    service: PgenrmService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prototypes.exceptions import StoreError

    ledger = service.stores.ledger
    real_seen, real_mark = ledger.seen, ledger.mark

    def down(*_: Any) -> Any:
        raise StoreError("ledger down")

    monkeypatch.setattr(ledger, "seen", down)
    with pytest.raises(StoreError):
        service.serve(request("lf-1", "lou"))
    monkeypatch.setattr(ledger, "seen", real_seen)
    monkeypatch.setattr(ledger, "mark", down)
    with pytest.raises(StoreError):  # scored, but not recorded: nothing was handed out
        service.serve(request("lf-2", "lou"))
    monkeypatch.setattr(ledger, "mark", real_mark)
    assert service.serve(request("lf-1", "lou")) is not None
    assert service.serve(request("lf-2", "lou")) is not None
    assert service.serve(request("lf-2", "lou")) is None  # and then only once
    assert service._answering == set()


def test_deadline_without_time_for_generation_answers_prior_only(
    svc_settings: Settings, embedder: Any
) -> None:
    cfg = StreamConfig(persona_refresh=False, load_backend=True)
    with PgenrmService.open(svc_settings, embedder=embedder, config=cfg) as service:
        service.apply_feedback([fb("d0", "dee")])
        res = service.score(request("dl", "dee", deadline_ms=1))
        assert res.degraded is True and res.degraded_reason == "deadline"
        assert set(res.components) == {"prior"}
        assert any("deadline" in n for n in res.explanation.notes)
        assert service.counters["deadline_skipped"] == 1
        assert service._backend is None  # the model was never loaded for it


def test_a_feedback_id_shaped_like_a_request_key_blocks_no_request(
    service: PgenrmService,
) -> None:
    odd = [fb("req:r-x", "ida"), fb("profile:p-x", "ida"), fb("req", "ida")]
    assert [o.status for o in service.apply_feedback(odd)] == ["applied"] * 3
    assert service.serve(request("r-x", "ida")) is not None
    assert service.serve(request(odd[0].event_id, "ida")) is not None
    assert service.serve(request("r-x", "ida")) is None
    again = service.apply_feedback([fb("req:r-x", "ida")])
    assert again[0].status == "duplicate"  # feedback ids still de-duplicate among themselves


def test_the_same_request_arriving_twice_at_once_is_answered_once(
    service: PgenrmService,
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    service.apply_feedback([fb("p0", "pia")])
    req = request("twice", "pia")
    start = threading.Barrier(4)

    def serve() -> RewardResult | None:
        start.wait()
        return service.serve(req)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: serve(), range(4)))
    assert sum(a is not None for a in answers) == 1
    assert service.counters["requests_repeated"] == 3
    assert service.counters["requests_answered"] == 1


@contextmanager
def scripted_service(
    settings: Settings, embedder: Any, config: StreamConfig, backend: Any, user: str
) -> Iterator[PgenrmService]:
    """A service whose backend is ``backend`` (a ScriptedBackend), ``user`` with one event."""
    with PgenrmService.open(settings, embedder=embedder, backend=backend, config=config) as svc:
        svc.apply_feedback([fb(f"{user}-0", user)])
        yield svc


def test_a_backend_that_cannot_load_answers_prior_only_and_says_why(
    svc_settings: Settings, embedder: Any
) -> None:
    models = svc_settings.models.model_copy(update={"backend": "openai"})  # no base URL
    settings = svc_settings.model_copy(update={"models": models})
    cfg = StreamConfig(persona_refresh=False, load_backend=True)
    with PgenrmService.open(settings, embedder=embedder, config=cfg) as service:
        service.apply_feedback([fb("b0", "bea")])
        first = service.score(request("b-1", "bea"))
        assert first.degraded and set(first.components) == {"prior"}
        assert first.degraded_reason == "backend_unavailable"
        assert "generative backend unavailable: answered with the prior only" in (
            first.explanation.notes
        )
        assert service.generative is False and service.counters["backend_unavailable"] == 1
        later = service.score(request("b-2", "bea"))  # no second load attempt
        assert service.counters["backend_unavailable"] == 1
        assert later.degraded and later.degraded_reason == "backend_unavailable"
        assert any(
            n.startswith("generative backend disabled (BackendError")
            for n in later.explanation.notes
        )


def test_a_generation_error_answers_prior_only_and_is_counted(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    from tests.api.conftest import ScriptedBackend

    class FailingBackend(ScriptedBackend):
        def generate(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("CUDA error: device-side assert")

    with scripted_service(
        svc_settings, embedder, stream_config, FailingBackend(), "fay"
    ) as service:
        res = service.serve(request("f-1", "fay"))
        assert res is not None and res.degraded and set(res.components) == {"prior"}
        assert res.degraded_reason == "generation_failed"
        assert "generation failed (RuntimeError): answered with the prior only" in (
            res.explanation.notes
        )
        assert service.counters["generation_errors"] == 1
        assert service.generative  # a failed generation does not switch chains off


def test_chains_abandoned_at_the_deadline_do_not_run_later(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    import threading

    from stream.gen_queue import PERSONA
    from tests.api.conftest import ScriptedBackend

    backend = ScriptedBackend()
    with scripted_service(svc_settings, embedder, stream_config, backend, "cy") as service:
        gate = threading.Event()
        busy = service._gen.submit(PERSONA, gate.wait, 30)  # the generation thread is busy
        late = service.score(request("c-1", "cy", deadline_ms=300))
        assert late.degraded and service.counters["deadline_abandoned"] == 1
        assert late.degraded_reason == "deadline"
        gate.set()
        busy.result(timeout=30)
        service._gen.submit(PERSONA, lambda: None).result(timeout=30)  # the queue drained
        assert backend.calls == 0  # the abandoned chains were cancelled, not run
        on_time = service.score(request("c-2", "cy", deadline_ms=30_000))
        assert not on_time.degraded and backend.calls > 0


def test_a_slow_run_does_not_make_every_later_deadline_skip(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    from tests.api.conftest import ScriptedBackend

    backend = ScriptedBackend()
    with scripted_service(svc_settings, embedder, stream_config, backend, "wu") as service:
        service._ms_per_chain = 10_000.0  # one cold, slow run measured earlier
        results = [service.score(request(f"w-{i}", "wu", deadline_ms=2_000)) for i in range(60)]
        skipped = service.counters["deadline_skipped"]
        assert 0 < skipped < 60
        assert all(r.degraded_reason == "deadline" for r in results[:skipped])
        assert not results[skipped].degraded and results[skipped].degraded_reason is None
        assert backend.calls > 0
        assert service._ms_per_chain < 100.0  # re-measured from the run


def test_feedback_publishes_every_prototype_it_changed(service: PgenrmService) -> None:
    from infra.topics import PROTOTYPES
    from stream.runtime import StreamRuntime

    code = dict(
        query="How do I fix a segfault in my C program?",
        chosen="Run it under gdb and check the backtrace.",
        rejected="Computers are complicated; maybe restart.",
    )
    cook = dict(
        query="What should I cook for a vegan dinner party?",
        chosen="A chickpea curry with rice and a mango salad.",
        rejected="Steak is always a crowd pleaser.",
    )
    outs = service.apply_feedback(
        [fb(f"a{i}", f"coder{i}", **code) for i in range(3)]
        + [fb(f"b{i}", f"cook{i}", **cook) for i in range(3)]
    )
    coders, cooks = {o.prototype_id for o in outs[:3]}, {o.prototype_id for o in outs[3:]}
    assert len(coders) == len(cooks) == 1 and coders != cooks
    req = RewardRequest(
        request_id="served-by-cooks",
        user_id="newbie",
        context=[ChatMessage(role="user", content=cook["query"])],
        candidates=["Lentil stew with bread.", "Grilled ribs."],
    )
    served = service.serve(req)
    assert served is not None and served.mode == "cold_start" and {served.prototype_id} == cooks
    before = service.stores.prototypes.get(served.prototype_id)
    out = service.apply_feedback(
        [
            fb(
                "n0",
                "newbie",
                query=code["query"],
                chosen=req.candidates[0],
                rejected=req.candidates[1],
                request_id=req.request_id,
            )
        ]
    )[0]
    assert out.prototype_id != served.prototype_id  # the newbie joined another prototype
    assert set(out.touched) == {out.prototype_id, served.prototype_id}
    after = service.stores.prototypes.get(served.prototype_id)
    assert before is not None and after is not None and after.outcomes == before.outcomes + 1
    msgs = StreamRuntime._state_messages(service, [out])
    published = {int(k) for t, k, _ in msgs if t == PROTOTYPES}
    assert published == {out.prototype_id, served.prototype_id}


def test_state_messages(service: PgenrmService) -> None:
    out = service.apply_feedback([fb("m0", "mo", critique="nice")])
    st = out[0].state
    assert st is not None
    ps = service.persona_state(st)
    assert (ps.user_id, ps.history_size, ps.events_applied, ps.critiques) == ("mo", 1, 1, 1)
    proto = service.prototype_state(st.prototype_id)  # type: ignore[arg-type]
    assert proto is not None and proto.size >= 1


@pytest.mark.slow
def test_generative_reward_with_smollm2(
    svc_settings: Settings, embedder: Any, smollm2: Any, tmp_path: Path
) -> None:
    cfg = StreamConfig(max_history=100, persona_refresh=False)
    with PgenrmService.open(svc_settings, embedder=embedder, backend=smollm2, config=cfg) as svc:
        svc.apply_feedback(
            [fb(f"g{i}", f"g{i % 2}", query=f"question {i}", critique="short") for i in range(4)]
        )
        known = svc.score(request("gen-1", "g0"))
        assert known.mode == "personal"
        assert known.samples_used == 1
        # m=1 with debiasing = 2 chains for the user, 2 per neighbour; every chain is either
        # a valid score or a counted parse failure
        chains = 2 + 2 * 1
        valid_chains = max(c.valid_samples for c in known.scores)
        assert known.parse_failures + valid_chains >= 2
        assert known.parse_failures <= chains
        for side in ("individual", "prototype"):  # chains off the 1-10 scale are failures
            assert all(1.0 <= x <= 10.0 for x in known.components.get(side, [])), known.components
        assert any(n.startswith("model_ms=") for n in known.explanation.notes)
        cold = svc.score(request("gen-2", "stranger"))
        assert cold.mode == "cold_start" and cold.samples_used == 0
        assert "individual" not in cold.components
        # an onboarded user: the prototype's neighbours' chains, no own chains
        svc.register_user("onboarded", prototype_id=known.prototype_id)
        onb = svc.score(request("gen-4", "onboarded"))
        assert (onb.mode, onb.prototype_id, onb.samples_used) == (
            "prototype",
            known.prototype_id,
            0,
        )
        assert "individual" not in onb.components
        assert onb.neighbours_used == 1 or onb.parse_failures > 0  # a neighbour's chain ran
        # persona for the refresher
        st = svc.refresh_persona("g0")
        assert st is not None and st.persona and st.persona_version == st.version
        assert len(st.persona_embedding) == embedder.dim
        assert svc.refresh_persona("g0") is None  # fresh: nothing to do
        # a deadline shorter than generation: the chains are abandoned, prior answers
        svc._ms_per_chain = None
        late = svc.score(request("gen-3", "g0", deadline_ms=60))
        assert late.degraded and set(late.components) == {"prior"}
        assert svc.counters["deadline_abandoned"] + svc.counters["deadline_skipped"] == 1


def test_user_cache_changes_no_result_and_is_forgotten_on_demand(
    tmp_path: Path, svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    from prototypes.stores.cache import CachedUserStore

    events = [fb(f"e{i}", f"u{i % 4}", critique="shorter" if i % 3 else None) for i in range(12)]
    batches = [events[:5], events[5:9], events[9:]]
    states: dict[int, dict[str, Any]] = {}
    for size in (0, 100):
        settings = svc_settings.model_copy(update={"data_dir": tmp_path / f"cache{size}"})
        config = stream_config.model_copy(update={"user_cache": size})
        with PgenrmService.open(settings, embedder=embedder, config=config) as svc:
            off = 0
            for batch in batches:
                svc.apply_feedback(batch, [(0, off + i) for i in range(len(batch))])
                off += len(batch)
            users = svc.stores.users
            assert isinstance(users, CachedUserStore) == (size > 0)
            if size:  # batches 2 and 3 read their users (4, then 3) from memory
                assert (users.hits, users.misses, len(users)) == (7, 4, 4)
            states[size] = {
                u: svc.user(u).model_dump(exclude={"updated_at"})  # type: ignore[union-attr]
                for u in ("u0", "u1", "u2", "u3")
            }
            if size:
                # another owner rewrote u0 while this worker did not own it
                moved = svc.user("u0").model_copy(update={"events_applied": 99})  # type: ignore[union-attr]
                users.store.put(moved, None)
                assert svc.user("u0").events_applied == 3  # type: ignore[union-attr]
                svc.forget_users()
                assert svc.user("u0").events_applied == 99  # type: ignore[union-attr]
    assert states[0] == states[100]
