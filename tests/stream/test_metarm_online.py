"""The MetaRM updated online from feedback critiques, on the service with the real embedder.

The fast tests serve prior-only rewards and then record, through the reward path's
own entry point (:meth:`OnlineMetaRM.record_served`), an evaluation chain written
by hand and parsed by the real parser, so that the label is known in advance. The
slow test serves real SmolLM2 chains end to end.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from infra.contracts import CandidateScore, ChatMessage, FeedbackEvent, RewardRequest, RewardResult
from infra.settings import MetaRMSettings, Settings
from reward.parser import parse_chain
from reward.prompts import format_query
from reward.protocol import ScoreResult
from stream.config import StreamConfig
from stream.metarm_online import OnlineMetaRM, event_examples, pair_verdict, served_chains
from stream.served import ServedChain
from stream.service import PgenrmService
from tests.stream.helpers import fb

QUERY = "What are some good hotels to stay at in Las Vegas?"
SPA = "The Westin Las Vegas offers a tranquil spa retreat away from the Strip."
PARTY = "The Palms is known for high-energy pool parties and nightlife events."
HUMAN = (
    "I'll go with the Westin, a tranquil spa retreat. "
    "The Palms seems far too loud and party-focused for my taste."
)
# A chain that prefers the spa (slot 1 = SPA) and says why: verdict right, F1 high -> 1.5.
GOOD_CHAIN = (
    "PART 1\nResponse 1 is a tranquil spa retreat, calm and quiet. "
    "Response 2 is a loud party hotel, too noisy for this user.\n"
    'PART 2 <JSON_START>{"better_response": {"response_1": 9, "response_2": 2}}<JSON_END>'
)
# A chain that prefers the party hotel: verdict wrong -> label 0.
BAD_CHAIN = (
    "PART 1\nResponse 2 is exciting nightlife with great pool parties. "
    "Response 1 is boring.\n"
    'PART 2 <JSON_START>{"better_response": {"response_1": 2, "response_2": 9}}<JSON_END>'
)


def hotel_request(rid: str, user: str) -> RewardRequest:
    return RewardRequest(
        request_id=rid,
        user_id=user,
        context=[ChatMessage(role="user", content=QUERY)],
        candidates=[SPA, PARTY],
    )


def hotel_feedback(eid: str, user: str, rid: str | None, critique: str | None) -> FeedbackEvent:
    return fb(eid, user, query=QUERY, chosen=SPA, rejected=PARTY, critique=critique, request_id=rid)


def serve_with_chain(svc: PgenrmService, rid: str, user: str, text: str) -> ServedChain:
    """Serve ``rid`` and record ``text`` as its one generated chain (slot order 0, 1)."""
    req = hotel_request(rid, user)
    result = svc.serve(req)
    assert result is not None
    parsed = parse_chain(text, 2, [0, 1])
    assert parsed.ok
    scored = ScoreResult(
        scores=list(parsed.scores or []),
        std=[None, None],
        valid=[1, 1],
        samples=1,
        parse_failures=0,
        chains=[parsed],
    )
    assert svc.metarm_online is not None
    svc.metarm_online.record_served(req, result, [("individual", scored)])
    rec = svc.metarm_online.chains.get(rid)
    assert rec is not None and len(rec.chains) == 1
    return rec.chains[0]


def predict(svc: PgenrmService, chain: ServedChain) -> float:
    assert svc.metarm_online is not None
    critique = pair_verdict(chain, 0, 1).critique
    return svc.metarm_online.predict(
        format_query(hotel_request("x", "x").context), SPA, PARTY, critique
    )


def metarm_counters(svc: PgenrmService) -> dict[str, int]:
    return {k: v for k, v in svc.counters.items() if k.startswith("metarm_")}


def test_critique_on_a_served_chain_updates_the_metarm_towards_its_label(
    service: PgenrmService,
) -> None:
    online = service.metarm_online
    assert online is not None
    service.apply_feedback([hotel_feedback("h0", "hana", None, None)])  # a known user
    good = serve_with_chain(service, "r-good", "hana", GOOD_CHAIN)
    bad = serve_with_chain(service, "r-bad", "hana", BAD_CHAIN)
    assert online.version == 0
    # the labels the matcher gives against the user's critique: right + matching, wrong
    for rid, label in (("r-good", 1.5), ("r-bad", 0.0)):
        rec, served = online.chains.get(rid), service.served.get(rid)
        assert rec is not None and served is not None
        exs, why = event_examples(
            hotel_feedback("-", "hana", rid, HUMAN), rec, served.candidates, online.matcher
        )
        assert why is None and [e.label for e in exs] == [label]
    good_before = predict(service, good)

    out = service.apply_feedback([hotel_feedback("h1", "hana", "r-good", HUMAN)])
    assert out[0].status == "applied"
    assert online.version == 1 and service.counters["metarm_version"] == 1
    assert service.counters["metarm_trained"] == 1 and service.counters["metarm_examples"] == 1
    good_after = predict(service, good)
    assert good_after > good_before  # label 1.5 (right verdict, matching arguments)
    assert online.model.last_loss is not None

    bad_before = predict(service, bad)
    service.apply_feedback([hotel_feedback("h2", "hana", "r-bad", HUMAN)])
    assert online.version == 2
    bad_after = predict(service, bad)
    assert bad_after < bad_before  # label 0: the chain chose the party hotel
    # update, then use: the next event is scored by version 2 and moves it again
    serve_with_chain(service, "r-bad2", "hana", BAD_CHAIN)
    service.apply_feedback([hotel_feedback("h3", "hana", "r-bad2", HUMAN)])
    assert predict(service, bad) < bad_after

    # persisted, versioned: CURRENT names the newest, older versions kept up to the limit
    root = service.settings.data_dir / "metarm"
    assert (root / "CURRENT").read_text() == "v00000003"
    meta = json.loads((root / "v00000003" / "metarm.json").read_text())
    assert meta["version"] == 3 and meta["examples_seen"] == 3
    assert online.versions() == [1, 2, 3]
    assert online.stats()["trained"] == 3


def test_no_critique_and_duplicates_change_nothing(service: PgenrmService) -> None:
    online = service.metarm_online
    assert online is not None
    service.apply_feedback([hotel_feedback("d0", "dora", None, None)])
    chain = serve_with_chain(service, "r-d", "dora", GOOD_CHAIN)

    before = predict(service, chain)
    counters = metarm_counters(service)
    out = service.apply_feedback([hotel_feedback("d1", "dora", "r-d", None)])
    assert out[0].status == "applied" and out[0].reward_outcome is not None
    assert online.version == 0 and predict(service, chain) == before
    assert metarm_counters(service) == counters
    assert not (service.settings.data_dir / "metarm" / "CURRENT").exists()

    service.apply_feedback([hotel_feedback("d2", "dora", "r-d", HUMAN)])
    assert online.version == 1
    after = predict(service, chain)
    # the same event again (re-sent, or twice in one batch): applied once in effect
    again = service.apply_feedback(
        [hotel_feedback("d2", "dora", "r-d", HUMAN), hotel_feedback("d2", "dora", "r-d", HUMAN)]
    )
    assert [o.status for o in again] == ["duplicate", "duplicate"]
    assert online.version == 1 and predict(service, chain) == after
    assert service.counters["metarm_trained"] == 1


@pytest.mark.parametrize(
    ("degraded_reason", "generative", "missing"),
    [
        ("deadline", True, "deadline"),
        ("generation_failed", True, "generation_failed"),
        ("backend_unavailable", False, "backend_unavailable"),
        (None, False, "generative_disabled"),
        (None, True, "not_requested"),
    ],
)
def test_why_a_served_reward_kept_no_chains_comes_from_the_result_not_its_notes(
    degraded_reason: Any, generative: bool, missing: str
) -> None:
    req = hotel_request("r-why", "wes")
    result = RewardResult(
        request_id="r-why",
        user_id="wes",
        scores=[
            CandidateScore(index=0, score=1.0, rank=1),
            CandidateScore(index=1, score=0.0, rank=2),
        ],
        mode="personal",
        degraded=degraded_reason is not None,
        degraded_reason=degraded_reason,
        model_id="m",
        latency_ms=1.0,
    )  # no notes: the reason is typed
    rec = served_chains(req, result, [], max_chains=4, generative=generative)
    assert rec.chains == [] and rec.missing == missing
    kept = served_chains(req, result, [("individual", _one_chain())], max_chains=4)
    assert len(kept.chains) == 1 and kept.missing is None


def _one_chain() -> ScoreResult:
    chain = parse_chain(GOOD_CHAIN, 2, [0, 1])
    return ScoreResult(
        scores=[9.0, 2.0], std=[0.0, 0.0], valid=[1, 1], samples=1, parse_failures=0, chains=[chain]
    )


def test_events_without_a_usable_chain_are_counted_by_reason(service: PgenrmService) -> None:
    online = service.metarm_online
    assert online is not None
    service.apply_feedback([hotel_feedback("n0", "nils", None, None)])
    assert service.serve(hotel_request("r-prior", "nils")) is not None  # prior only: no chain
    rec = online.chains.get("r-prior")
    assert rec is not None and rec.chains == [] and rec.missing == "generative_disabled"

    bad_parse = parse_chain("I like the first one.", 2, [0, 1])
    req = hotel_request("r-unparsed", "nils")
    res = service.serve(req)
    assert res is not None and not bad_parse.ok
    failed = ScoreResult(
        scores=[None, None], std=[None, None], valid=[0, 0], samples=1, parse_failures=1,
        chains=[bad_parse],
    )  # fmt: skip
    online.record_served(req, res, [("individual", failed)])

    service.apply_feedback(
        [
            hotel_feedback("n1", "nils", "r-prior", HUMAN),
            hotel_feedback("n2", "nils", "r-unparsed", HUMAN),
            hotel_feedback("n3", "nils", "never-served", HUMAN),
            hotel_feedback("n4", "nils", None, HUMAN),
            hotel_feedback("n5", "someone-else", "r-prior", HUMAN),
        ]
    )
    c = service.counters
    assert c["metarm_skipped_no_chain"] == 1 and c["metarm_no_chain_generative_disabled"] == 1
    assert c["metarm_skipped_invalid_chains"] == 1
    assert c["metarm_skipped_unknown_request"] == 2  # never served, or served to another user
    assert c["metarm_skipped_no_request_id"] == 1
    assert c["metarm_trained"] == 0 and online.version == 0


def test_a_reapplied_event_after_a_crash_is_not_trained_twice(
    service: PgenrmService, embedder: Any, svc_settings: Settings
) -> None:
    """Crash window: MetaRM saved, users not written -> the event comes back as fresh."""
    online = service.metarm_online
    assert online is not None
    service.apply_feedback([hotel_feedback("c0", "cleo", None, None)])
    serve_with_chain(service, "r-c", "cleo", GOOD_CHAIN)
    ev = hotel_feedback("c1", "cleo", "r-c", HUMAN)
    cleo = service.user("cleo")
    assert cleo is not None
    states = {"cleo": cleo}
    assert online.apply([ev], states, service.served) == 1
    # a second process on the same folder (the restarted worker) loads version 1 and its ids
    again = OnlineMetaRM(svc_settings.data_dir, embedder, MetaRMSettings(), service.counters)
    try:
        assert again.version == 1
        assert again.apply([ev], states, service.served) == 0
        assert service.counters["metarm_skipped_already_applied"] == 1
        assert again.version == 1
    finally:
        again.close()


def test_version_survives_a_restart_and_the_setting_switches_it_off(
    svc_settings: Settings, embedder: Any, stream_config: StreamConfig
) -> None:
    with PgenrmService.open(svc_settings, embedder=embedder, config=stream_config) as svc:
        svc.apply_feedback([hotel_feedback("v0", "vic", None, None)])
        serve_with_chain(svc, "r-v", "vic", GOOD_CHAIN)
        svc.apply_feedback([hotel_feedback("v1", "vic", "r-v", HUMAN)])
        assert svc.counters["metarm_version"] == 1
    with PgenrmService.open(svc_settings, embedder=embedder, config=stream_config) as svc:
        assert svc.counters["metarm_version"] == 1  # reported at start, before any event
        assert svc.metarm_online is not None and svc.metarm_online.model.examples_seen == 1
    off = svc_settings.model_copy(update={"metarm": MetaRMSettings(online=False)})
    with PgenrmService.open(off, embedder=embedder, config=stream_config) as svc:
        assert svc.metarm_online is None
        assert svc.serve(hotel_request("r-off", "vic")) is not None
        svc.apply_feedback([hotel_feedback("v2", "vic", "r-off", HUMAN)])
        assert metarm_counters(svc) == {}


@pytest.mark.slow
def test_real_smollm2_chains_feed_the_metarm(
    svc_settings: Settings, embedder: Any, smollm2: Any
) -> None:
    cfg = StreamConfig(max_history=100, persona_refresh=False)
    with PgenrmService.open(svc_settings, embedder=embedder, backend=smollm2, config=cfg) as svc:
        online = svc.metarm_online
        assert online is not None
        svc.apply_feedback([hotel_feedback("s0", "sol", None, HUMAN)])
        res = svc.serve(hotel_request("r-s", "sol"))
        assert res is not None
        rec = online.chains.get("r-s")
        assert rec is not None
        assert 1 <= len(rec.chains) <= svc.settings.metarm.max_chains
        assert all(c.text for c in rec.chains)
        svc.apply_feedback([hotel_feedback("s1", "sol", "r-s", HUMAN)])
        c = svc.counters
        # each chain that parsed is one example; a request whose chains all failed is counted
        parsed = sum(ch.ok for ch in rec.chains)
        if parsed:
            assert c["metarm_trained"] == 1 and online.version == 1
            assert c["metarm_examples"] == parsed
        else:
            assert c["metarm_skipped_invalid_chains"] == 1 and online.version == 0


def test_an_unreadable_saved_metarm_is_counted_and_replaced(
    svc_settings: Settings, embedder: Any
) -> None:
    root = svc_settings.data_dir / "metarm"
    (root / "v00000007").mkdir(parents=True)
    (root / "v00000007" / "metarm.json").write_text("{not json")
    (root / "CURRENT").write_text("v00000007")
    counters: Counter[str] = Counter()
    online = OnlineMetaRM(svc_settings.data_dir, embedder, MetaRMSettings(), counters)
    try:
        assert counters["metarm_load_failed"] == 1 and online.version == 0
    finally:
        online.close()


def test_metarm_weighted_scaling_follows_the_chain_the_metarm_trusts(
    service: PgenrmService,
) -> None:
    """``metarm.weighted``: own chains count with the MetaRM's predicted critique quality."""
    online = service.metarm_online
    assert online is not None
    service.apply_feedback([hotel_feedback("w0", "wren", None, None)])
    for i in range(6):  # teach it: the good chain's critique is worth 1.5, the bad one's 0
        serve_with_chain(service, f"rg{i}", "wren", GOOD_CHAIN)
        serve_with_chain(service, f"rb{i}", "wren", BAD_CHAIN)
        service.apply_feedback(
            [
                hotel_feedback(f"wg{i}", "wren", f"rg{i}", HUMAN),
                hotel_feedback(f"wb{i}", "wren", f"rb{i}", HUMAN),
            ]
        )
    assert online.version > 0
    chains = [parse_chain(GOOD_CHAIN, 2, [0, 1]), parse_chain(BAD_CHAIN, 2, [0, 1])]
    own = ScoreResult(
        scores=[5.5, 5.5], std=[3.5, 3.5], valid=[2, 2], samples=2, parse_failures=0, chains=chains
    )
    state = service.user("wren")
    req = hotel_request("rw", "wren")
    notes: list[str] = []
    assert service._own_chain_scores(req, state, own, notes) == [5.5, 5.5]  # off by default
    service.settings.metarm.weighted = True
    try:
        weighted = service._own_chain_scores(req, state, own, notes)
    finally:
        service.settings.metarm.weighted = False
    spa, party = weighted
    assert spa is not None and party is not None and spa > 5.5 > party
    assert notes == [f"metarm_weighted=v{online.version}"]
    assert service.counters["rewards_metarm_weighted"] == 1
