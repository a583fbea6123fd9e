"""Score readout on a real SmolLM2-135M: exact number probabilities, chains that always score."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from infra.contracts import ChatMessage
from reward.backends.transformers_backend import TransformersBackend
from reward.parser import parse_chain
from reward.protocol import Completion, HistoryItem, NumberReadoutBackend, ScoreRequest
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
