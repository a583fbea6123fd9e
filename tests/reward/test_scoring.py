"""ChainScorer end to end on a real SmolLM2-135M: batching, debiasing, bookkeeping."""

from __future__ import annotations

from collections import Counter
from typing import Any

from infra.contracts import ChatMessage
from reward.backends.transformers_backend import TransformersBackend
from reward.parser import parse_chain
from reward.protocol import ChainParse, HistoryItem, ScoreRequest, ScoreResult
from reward.scoring import ChainScorer, aggregate, chain_orders, explain


def test_chain_orders_balance_slots() -> None:
    orders = chain_orders(4, samples=8, debias=True)
    for slot in range(4):
        assert Counter(o[slot] for o in orders) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert chain_orders(3, samples=1, debias=True) == [[0, 1, 2], [2, 1, 0]]
    assert chain_orders(3, samples=1, debias=False) == [[0, 1, 2]]


def test_aggregate_counts_ties_failures_and_means() -> None:
    chains = [
        ChainParse(ok=True, scores=[8.0, 6.0], order=[0, 1]),
        ChainParse(ok=True, scores=[6.0, 6.0], order=[1, 0]),  # a tie
        ChainParse(ok=False, failure="no_json", order=[0, 1]),
        ChainParse(ok=False, failure="no_json", order=[1, 0]),
        ChainParse(ok=False, failure="missing_candidate", order=[0, 1], warnings=["no_markers"]),
    ]
    r = aggregate(chains, 2, samples=5)
    assert r.scores == [7.0, 6.0] and r.std == [1.0, 0.0] and r.valid == [2, 2]
    assert r.parse_failures == 3 and r.failure_reasons == Counter(no_json=2, missing_candidate=1)
    assert r.ties == 1 and r.generations == 5 and r.warnings == Counter(no_markers=1)
    assert "chain 3 (order [1, 2]): failed (no_json" in explain(r)
    empty = aggregate([ChainParse(ok=False, failure="empty", order=[0, 1])], 2, samples=1)
    assert empty.scores == [None, None] and empty.valid == [0, 0] and empty.parse_failures == 1


def _check_result(result: ScoreResult, req: ScoreRequest, scorer: ChainScorer) -> None:
    n = len(req.candidates)
    orders = chain_orders(n, req.samples, req.debias)
    assert result.generations == len(orders) == len(result.chains)
    assert [c.order for c in result.chains] == orders
    ok = [c for c in result.chains if c.ok]
    assert result.parse_failures == len(result.chains) - len(ok)
    assert sum(result.failure_reasons.values()) == result.parse_failures
    assert result.valid == [len(ok)] * n
    for c in result.chains:
        # Each chain's verdict is exactly what the parser makes of its own text.
        again = parse_chain(c.text, n, c.order)
        assert (again.ok, again.scores, again.failure) == (c.ok, c.scores, c.failure)
    for i in range(n):
        vals = [c.scores[i] for c in ok if c.scores is not None]
        mean = result.scores[i]
        if vals:
            assert mean is not None and abs(mean - sum(vals) / len(vals)) < 1e-9
        else:
            assert result.scores[i] is None
    assert result.generated_tokens > 0 and result.latency_ms > 0
    assert result.model_id == scorer.backend.model_id


def test_score_end_to_end(
    smol_backend: TransformersBackend, request_with_history: ScoreRequest
) -> None:
    scorer = ChainScorer(smol_backend, max_new_tokens=24)
    req = request_with_history  # m = 2, debias: both orders
    result = scorer.score(req)
    _check_result(result, req, scorer)
    assert result.samples == 2


def test_score_with_prefill(
    smol_backend: TransformersBackend, request_with_history: ScoreRequest
) -> None:
    scorer = ChainScorer(smol_backend, max_new_tokens=24, prefill=True)
    req = request_with_history.model_copy(update={"samples": 1})
    result = scorer.score(req)
    _check_result(result, req, scorer)
    for c in result.chains:  # the prefilled opening is part of the parsed chain
        assert c.text.startswith("PART 2 - Scores\n<JSON_START>")


def test_score_many_one_generate_call(
    smol_backend: TransformersBackend, request_with_history: ScoreRequest
) -> None:
    other = request_with_history.model_copy(
        update={
            "history": [
                HistoryItem(
                    context=[ChatMessage(role="user", content="Tell a joke")],
                    chosen="A long, elaborate story-joke.",
                    rejected="Pun.",
                )
            ],
            "user_id": "neighbour",
        }
    )
    reqs = [request_with_history, other]  # different histories, 2 chains each
    calls: list[tuple[int, int]] = []
    real = smol_backend.generate

    def spy(prompts: Any, **kw: Any) -> Any:
        calls.append((len(prompts), kw["n"]))
        return real(prompts, **kw)

    smol_backend.generate = spy  # type: ignore[method-assign]
    try:
        scorer = ChainScorer(smol_backend, max_new_tokens=8)
        results = scorer.score_many(reqs)
    finally:
        del smol_backend.generate
    # 2 requests x 2 distinct orders, one sample each, in a single backend call.
    assert calls == [(4, 1)]
    for res, req in zip(results, reqs, strict=True):
        _check_result(res, req, scorer)


def test_uneven_samples_fall_back_to_n1(smol_backend: TransformersBackend) -> None:
    req = ScoreRequest(
        context=[ChatMessage(role="user", content="Hi")],
        candidates=["Hello", "Yo"],
        samples=3,
        history=[],
    )
    calls: list[tuple[int, int]] = []
    real = smol_backend.generate

    def spy(prompts: Any, **kw: Any) -> Any:
        calls.append((len(prompts), kw["n"]))
        return real(prompts, **kw)

    smol_backend.generate = spy  # type: ignore[method-assign]
    try:
        scorer = ChainScorer(smol_backend, max_new_tokens=4, history_size=0)
        res = scorer.score(req)
    finally:
        del smol_backend.generate
    assert calls == [(3, 1)]  # orders [0,1],[1,0],[0,1]: uneven, so one prompt per chain
    _check_result(res, req, scorer)


def test_a_prompt_repeated_across_chunks_gets_its_own_seed(
    smol_backend: TransformersBackend,
) -> None:
    # orders [0,1],[1,0],[0,1]: the first and last prompt are the same text
    req = ScoreRequest(
        context=[ChatMessage(role="user", content="Name a fruit.")],
        candidates=["Apple", "Pear"],
        samples=3,
        history=[],
        seed=7,
    )
    seeds: list[int | None] = []
    real = smol_backend.generate

    def spy(prompts: Any, **kw: Any) -> Any:
        seeds.append(kw["seed"])
        return real(prompts, **kw)

    smol_backend.generate = spy  # type: ignore[method-assign]
    try:
        scorer = ChainScorer(smol_backend, max_new_tokens=24, history_size=0, max_batch_prompts=1)
        res = scorer.score(req)
    finally:
        del smol_backend.generate
    assert seeds == [7, 8, 9]  # the seed of each prompt's place in the whole call
    first, _, third = res.chains
    assert first.order == third.order and first.text != third.text


def test_backend_failure_is_counted_not_raised(smollm2_path: str) -> None:
    from reward.backends.openai_backend import OpenAIBackend
    from reward.testing.openai_server import free_port

    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}", model="x", retries=0)
    req = ScoreRequest(context=[ChatMessage(role="user", content="Hi")], candidates=["a", "b"])
    res = ChainScorer(backend).score(req)
    assert res.scores == [None, None] and res.parse_failures == 2
    assert res.failure_reasons == Counter(backend_error=2)


def test_persona(smol_backend: TransformersBackend, request_with_history: ScoreRequest) -> None:
    scorer = ChainScorer(smol_backend, max_new_tokens=24)
    text, criteria = scorer.persona(request_with_history.history, "Short answers.")
    assert isinstance(text, str) and text
    assert all(0 <= c.weight <= 100 for c in criteria)
