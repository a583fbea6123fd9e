"""Score readout on a real SmolLM2-135M: exact number probabilities, chains that always score."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from infra.contracts import ChatMessage
from reward.backends.transformers_backend import TransformersBackend, TransformersReadoutSession
from reward.parser import parse_chain
from reward.protocol import (
    Completion,
    HistoryItem,
    NumberReadoutBackend,
    ReadoutSession,
    ReadoutSessionBackend,
    ScoreRequest,
)
from reward.readout import SCALE
from reward.scoring import ChainScorer


def _msgs(user: str, assistant: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="user", content=user),
        ChatMessage(role="assistant", content=assistant),
    ]


@pytest.fixture(scope="module")
def fp32_backend(smollm2_path: str) -> TransformersBackend:
    return TransformersBackend(smollm2_path, dtype="float32")


def _reference(backend: TransformersBackend, msgs: list[ChatMessage], k: int) -> float:
    """log P(exactly k) from one unbatched, uncached forward pass over prompt + k."""
    text = backend.render(msgs)
    tok = backend.tokenizer
    base = len(tok(text, add_special_tokens=False).input_ids)
    ids = tok(text + str(k), add_special_tokens=False).input_ids
    with torch.inference_mode():
        logp = torch.log_softmax(backend.model(torch.tensor([ids])).logits[0].float(), -1)
    total = sum(float(logp[i - 1, ids[i]]) for i in range(base, len(ids)))
    assert backend._digit_ids is not None
    more = float(logp[-1, backend._digit_ids].exp().sum())
    return total + math.log1p(-more)


def test_number_logprobs_match_an_unbatched_forward_pass(fp32_backend: TransformersBackend) -> None:
    prompts = [
        _msgs("Rate this film from 1 to 10. It was perfect.", "Rating (1-10): "),
        _msgs("Short", "Score: "),  # shorter: left-padded in the batch
    ]
    got = fp32_backend.number_logprobs(prompts, SCALE)
    assert [len(r) for r in got] == [10, 10]
    for p, row in zip(prompts, got, strict=True):
        assert sum(math.exp(v) for v in row) <= 1.0 + 1e-6
        for k in (1, 7, 10):
            assert row[k - 1] == pytest.approx(_reference(fp32_backend, p, k), abs=1e-3)


def test_ten_is_not_counted_as_one(smol_backend: TransformersBackend) -> None:
    row = smol_backend.number_logprobs([_msgs("Repeat: 10 10 10 10", "10 10 10 ")], SCALE)[0]
    probs = [math.exp(v) for v in row]
    assert probs[9] > 0.5 and probs[0] < 0.1


_SLOT_USERS = [
    "Rate this film from 1 to 10. It was long, moving and beautifully shot, with a score "
    "that stayed with me for days; the acting was uneven but the ending was perfect.",
    "Short",
    "Rate the hotel: quiet, near the river, small rooms.",
]


def _slots(openings: list[str], n: int) -> list[list[str]]:
    """Per slot, the assistant texts as score readout writes them (a score, then the next key)."""
    out, texts = [], list(openings)
    for slot in range(1, n + 1):
        out.append(list(texts))
        texts = [
            f'{t}{slot + r}.{7 * slot % 10}5, "response_{slot + 1}": ' for r, t in enumerate(texts)
        ]
    return out


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def test_session_matches_a_fresh_prefill_per_slot(fp32_backend: TransformersBackend) -> None:
    openings = ['{"scores": {"response_1": ', "Score: ", 'JSON: {"response_1": ']
    fresh_tokens = []
    with fp32_backend.readout_session() as session:
        assert isinstance(session, ReadoutSession)
        for slot, texts in enumerate(_slots(openings, 3)):
            prompts = [_msgs(u, t) for u, t in zip(_SLOT_USERS, texts, strict=True)]
            got = session.number_logprobs(prompts, SCALE)
            ref = fp32_backend.number_logprobs(prompts, SCALE)  # full prefill, no session
            assert _max_diff(got, ref) < 1e-3
            stats = session.stats
            fresh_tokens.append(stats["computed"] + stats["reused"])
            if slot == 0:
                assert stats["reused"] == 0
            else:  # only the score and the next key were run, the rest came from the cache
                assert stats["reused"] > 0.8 * fresh_tokens[-1]
                # At most the new tokens and one boundary token per row were run.
                assert stats["computed"] <= fresh_tokens[-1] - fresh_tokens[-2] + len(prompts)
        # Exact also against one unbatched forward pass per number (last slot, shortest row).
        for k in (1, 10):
            assert got[1][k - 1] == pytest.approx(_reference(fp32_backend, prompts[1], k), abs=1e-3)
        assert session.stats["bytes"] > 0
    assert session.caches == []  # closed: nothing kept


def test_session_reads_changed_prompts_over_chunks_exactly(smollm2_path: str) -> None:
    # Two prompts per forward pass (2 chunks for 3 prompts); row 1 changes its prompt at slot 2.
    backend = TransformersBackend(smollm2_path, dtype="float32", max_batch=20)
    openings = ['{"scores": {"response_1": ', "Score: ", 'JSON: {"response_1": ']
    with backend.readout_session() as session:
        for slot, texts in enumerate(_slots(openings, 2)):
            users = list(_SLOT_USERS)
            if slot == 1:
                users[1] = "A different question entirely, about trains."
            prompts = [_msgs(u, t) for u, t in zip(users, texts, strict=True)]
            got = session.number_logprobs(prompts, SCALE)
            assert len(session.caches) == 2
            assert _max_diff(got, backend.number_logprobs(prompts, SCALE)) < 1e-3
        assert session.caches[0].reused > 0 and session.caches[1].reused > 0
    # No room to keep anything: every slot prefills again, with the same results.
    with TransformersReadoutSession(backend, max_bytes=0) as session:
        for texts in _slots(openings, 2):
            prompts = [_msgs(u, t) for u, t in zip(_SLOT_USERS, texts, strict=True)]
            got = session.number_logprobs(prompts, SCALE)
            assert session.stats["reused"] == 0 and session.stats["bytes"] == 0
            assert _max_diff(got, backend.number_logprobs(prompts, SCALE)) < 1e-3


class _Wrapped:
    """A real backend seen through ``number_logprobs`` only, or with sessions recorded."""

    def __init__(self, backend: TransformersBackend, sessions: bool) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        self.opened: list[TransformersReadoutSession] = []
        if sessions:
            self.readout_session = self._session

    def generate(
        self, prompts: Sequence[list[ChatMessage]], **kw: object
    ) -> list[list[Completion]]:
        return self.backend.generate(prompts, **kw)  # type: ignore[arg-type]

    def number_logprobs(
        self, prompts: Sequence[list[ChatMessage]], numbers: Sequence[int]
    ) -> list[list[float]]:
        return self.backend.number_logprobs(prompts, numbers)

    def _session(self) -> TransformersReadoutSession:
        self.opened.append(self.backend.readout_session())
        return self.opened[-1]


def test_scorer_reads_through_a_session_with_the_same_scores(
    fp32_backend: TransformersBackend,
) -> None:
    # Prompts of different lengths in one batch (one order each to keep the test short).
    reqs = [_pair().model_copy(update={"debias": False}), _pair(history=True)]
    plain = _Wrapped(fp32_backend, sessions=False)
    cached = _Wrapped(fp32_backend, sessions=True)
    assert not isinstance(plain, ReadoutSessionBackend)
    assert isinstance(cached, ReadoutSessionBackend)
    a = ChainScorer(plain, readout=True, prefill=True).score_many(reqs)
    b = ChainScorer(cached, readout=True, prefill=True).score_many(reqs)
    assert len(cached.opened) == 1 and cached.opened[0].caches == []  # opened once, released
    for ra, rb in zip(a, b, strict=True):
        assert rb.parse_failures == 0
        for ca, cb in zip(ra.chains, rb.chains, strict=True):
            assert cb.scores == pytest.approx(ca.scores, abs=0.011)


def _pair(history: bool = False) -> ScoreRequest:
    return ScoreRequest(
        stated_preferences="I am vegetarian." if not history else None,
        history=[
            HistoryItem(
                context=[ChatMessage(role="user", content="Suggest a dinner.")],
                chosen="Lentil curry.",
                rejected="Steak frites.",
                critique="I don't eat meat.",
            )
        ]
        if history
        else [],
        context=[ChatMessage(role="user", content="Suggest a quick lunch.")],
        candidates=["A chickpea salad wrap.", "A ham and cheese sandwich."],
        samples=1,
    )


def test_readout_chains_always_score_and_debiasing_cancels_order(
    smol_backend: TransformersBackend,
) -> None:
    scorer = ChainScorer(smol_backend, readout=True, prefill=True)
    assert scorer.readout_active
    req = _pair()
    swapped = req.model_copy(update={"candidates": req.candidates[::-1]})
    ab, ba = scorer.score_many([req, swapped])
    for r in (ab, ba):
        assert r.parse_failures == 0 and r.valid == [2, 2] and r.warnings["readout"] == 2
        assert all(s is not None and 1.0 <= s <= 10.0 for s in r.scores)
        for c in r.chains:  # the chain text parses to the scores it reports
            assert parse_chain(c.text, 2, c.order).scores == c.scores
    # Both presentations are scored in both orders, so the means do not depend on input order.
    assert ab.scores == pytest.approx(ba.scores[::-1], abs=0.02)
    # Without debiasing, the two single-order verdicts come from different prompts.
    single = scorer.score_many([req.model_copy(update={"debias": False})])[0]
    assert single.generations == 1 and single.valid == [1, 1]


def test_readout_after_a_generated_part1_keeps_the_persona(
    smol_backend: TransformersBackend,
) -> None:
    scorer = ChainScorer(
        smol_backend, readout=True, prefill=False, max_new_tokens=24, temperature=0.0
    )
    r = scorer.score(_pair(history=True))
    assert r.parse_failures == 0 and r.generated_tokens > 0
    assert all("PART 2 - Scores" in c.text and "<JSON_END>" in c.text for c in r.chains)
    assert r.chains[0].text.split("PART 2")[0].strip()  # PART 1 text precedes the scores


class _Flat:
    """A readout backend whose distribution puts (almost) nothing on 1..10."""

    model_id = "flat"

    def __init__(self, logprob: float) -> None:
        self.logprob = logprob
        self.calls = 0

    def generate(self, prompts: Sequence[list[ChatMessage]], **_: object) -> list[list[Completion]]:
        raise AssertionError("prefill + readout must not generate")

    def number_logprobs(
        self, prompts: Sequence[list[ChatMessage]], numbers: Sequence[int]
    ) -> list[list[float]]:
        self.calls += 1
        return [[self.logprob] * len(numbers) for _ in prompts]


def test_readout_without_mass_on_the_scale_is_a_counted_failure() -> None:
    backend = _Flat(logprob=math.log(1e-6))
    assert isinstance(backend, NumberReadoutBackend)
    r = ChainScorer(backend, readout=True, prefill=True).score(_pair())
    assert r.scores == [None, None] and r.failure_reasons == {"readout_no_mass": 2}
    low = ChainScorer(_Flat(math.log(0.02)), readout=True, prefill=True).score(_pair())
    assert low.parse_failures == 0 and low.warnings["readout_low_mass"] == 2
    assert low.scores == [pytest.approx(5.5), pytest.approx(5.5)] and low.ties == 2


def test_readout_is_off_for_backends_that_cannot_read_numbers() -> None:
    from reward.backends.openai_backend import OpenAIBackend
    from reward.backends.vllm_backend import VllmBackend

    # The real adapters: only transformers reads numbers; the others parse sampled JSON.
    assert issubclass(TransformersBackend, NumberReadoutBackend)
    assert issubclass(TransformersBackend, ReadoutSessionBackend)
    assert not issubclass(OpenAIBackend, NumberReadoutBackend)
    assert not issubclass(VllmBackend, NumberReadoutBackend)

    class GenerateOnly:
        model_id = "g"

        def generate(
            self, prompts: Sequence[list[ChatMessage]], **_: object
        ) -> list[list[Completion]]:
            # The prefill already opened PART 2's JSON up to the first score.
            return [[Completion(text='3, "response_2": 4}}\n<JSON_END>')]]

    scorer = ChainScorer(GenerateOnly(), readout=True, prefill=True)
    assert not scorer.readout_active
    r = scorer.score(_pair().model_copy(update={"debias": False}))
    assert r.scores == [3.0, 4.0] and "readout" not in r.warnings
