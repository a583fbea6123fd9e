"""Process reward gating, the human-critique flag, and the LLM-judge matcher."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from infra.contracts import ChatMessage
from reward.nlhf.llm_judge import LLMJudgeMatcher
from reward.nlhf.process import process_reward
from reward.nlhf.rows import HUMAN_CRITIQUE_FLAG, NlhfRow, has_human_critique
from reward.nlhf.verdict import Verdict, parse_grm_output, verdict_from_chain
from reward.parser import parse_chain
from reward.protocol import Completion
from reward.training.data import synthetic_chain
from reward.training.rollout_rewards import RewardComputer

GOOD = (
    "Response A is a tranquil spa retreat, ideal for a calm stay. "
    "Response B is too loud and party-focused."
)


def test_gating(hotel_row: NlhfRow, matcher) -> None:
    calls = []

    class Spy:
        name = "spy"

        def score(self, *a, **k):
            calls.append(a)
            return matcher.score(*a, **k)

    assert (
        process_reward(hotel_row, Verdict(False, "A", GOOD, "no_json"), Spy()).reason
        == "format_error"
    )
    assert process_reward(hotel_row, Verdict(True, "B", GOOD), Spy()).reason == "wrong_verdict"
    no_crit = NlhfRow(hotel_row.context, hotel_row.response_a, hotel_row.response_b, "A", None)
    assert process_reward(no_crit, Verdict(True, "A", GOOD), Spy()).reason == "no_human_critique"
    assert calls == []  # the matcher is never asked when q cannot count
    pr = process_reward(hotel_row, Verdict(True, "A", GOOD), Spy())
    assert pr.computed and pr.q == 1 and len(calls) == 1


def test_critique_rows_really_yield_nonzero_process_reward(hotel_row: NlhfRow, matcher) -> None:
    """The released RM-NLHF code gave q = 0 on every row through a flag mismatch."""
    assert has_human_critique(hotel_row) and hotel_row.to_dict()[HUMAN_CRITIQUE_FLAG] is True
    computer = RewardComputer("nlhf", matcher)
    texts, orders = [], []
    for order in ([0, 1], [1, 0]):
        texts.append(
            synthetic_chain(hotel_row, order).replace(
                "the user explains",
                "Response A is a tranquil spa retreat and Response B is too loud; "
                "the user explains",
            )
        )
        orders.append(order)
    out = computer([hotel_row, hotel_row], texts, orders)
    assert [r.format_ok and r.correct for r in out] == [True, True]
    assert all(r.q == 1 and r.reward == 1.5 for r in out), out
    assert computer.counts["q"] == 2


def test_verdict_parsing() -> None:
    v = parse_grm_output("<critics>a\nb\nc\nd\ne</critics><choice>[[B]]</choice>")
    assert not v.format_ok and v.failure == "critique_too_many_lines"
    assert (
        parse_grm_output("<critics>" + "x" * 1501 + "</critics>[[A]]").failure
        == "critique_too_long"
    )
    assert parse_grm_output("<critics>ok</critics> so [[B]]").choice == "B"
    ch = parse_chain(
        'PART 1\nResponse 1 is calm.\n<JSON_START>{"better_response": '
        '{"response_1": 8, "response_2": 3}}<JSON_END>',
        2,
        [1, 0],
    )
    v2 = verdict_from_chain(ch)
    assert v2.format_ok and v2.choice == "B" and v2.critique == "Response B is calm."
    tie = parse_chain(
        '<JSON_START>{"better_response": {"response_1": 5, "response_2": 5}}', 2, [0, 1]
    )
    assert verdict_from_chain(tie).choice is None and not verdict_from_chain(tie).correct("A")


class ScriptedJudge:
    """A GenerationBackend that answers from a script (stands in for a remote judge model)."""

    model_id = "scripted"

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.prompts: list[list[ChatMessage]] = []

    def generate(
        self,
        prompts,
        *,
        n=1,
        temperature=1.0,
        max_tokens=384,
        stop=None,
        logprobs=False,
        seed=None,
    ):
        self.prompts.extend(prompts)
        return [[Completion(text=self.answers.pop(0))] for _ in prompts]


JUDGED = (
    '{"human_arguments": [{"text": "calm", "response": "A", "stance": "for"},'
    ' {"text": "loud", "response": "B", "stance": "against"}],'
    ' "generated_arguments": [{"text": "tranquil", "response": "A", "stance": "for"},'
    ' {"text": "B is nice", "response": "B", "stance": "for"}],'
    ' "fatal_error": false, "repetition": false, "matches": [[0, 0], [1, 1]]}'
)


def test_llm_judge_retries_and_checks_stance(hotel_row: NlhfRow) -> None:
    be = ScriptedJudge(["no json here", JUDGED])
    judge = LLMJudgeMatcher(be, retries=3)
    r = judge.score(
        GOOD,
        hotel_row.human_critique or "",
        context=hotel_row.context,
        response_a=hotel_row.response_a,
        response_b=hotel_row.response_b,
    )
    # The judge matched (1, 1) but the stances differ (for B vs against B): only one TP.
    assert judge.calls == 2 and r.tp == 1 and r.f1 == 0.5
    assert "[Human critique]" in be.prompts[0][1].content


def test_llm_judge_gives_up_with_zero_and_counts(hotel_row: NlhfRow) -> None:
    judge = LLMJudgeMatcher(ScriptedJudge(["x", "y", "z"]), retries=3)
    r = judge.score(GOOD, "h", context="c", response_a="a", response_b="b")
    assert (
        r.f1 == 0.0 and r.reason.startswith("judge_failed") and judge.failures["judge_failed"] == 1
    )


def test_llm_judge_with_real_small_model(smollm2_path: str, hotel_row: NlhfRow) -> None:
    """The judge path runs end to end on a real backend; a 135M model rarely answers in JSON,
    so the outcome is either a parsed F1 or a counted failure, never an exception."""
    from reward.backends.transformers_backend import TransformersBackend

    judge = LLMJudgeMatcher(TransformersBackend(smollm2_path), retries=1, max_tokens=24)
    r = judge.score(
        GOOD,
        hotel_row.human_critique or "",
        context=hotel_row.context,
        response_a=hotel_row.response_a,
        response_b=hotel_row.response_b,
    )
    assert 0.0 <= r.f1 <= 1.0
    assert judge.calls == 1 and (r.reason == "ok" or judge.failures["judge_failed"] == 1)


def test_llm_judge_fatal_error_is_the_argument_the_judge_names(hotel_row: NlhfRow) -> None:
    """The fatal argument is the sole reference, wherever the judge lists it."""
    second_is_fatal = (
        '{"human_arguments": [{"text": "B is more concise", "response": "B", "stance": "for"},'
        ' {"text": "A gives a wrong dosage", "response": "A", "stance": "against"}],'
        ' "generated_arguments": [{"text": "A is wrong", "response": "A", "stance": "against"}],'
        ' "fatal_error": 1, "repetition": false, "matches": [[0, 1]]}'
    )
    judge = LLMJudgeMatcher(ScriptedJudge([second_is_fatal]), retries=1)
    r = judge.score(GOOD, "h", context="c", response_a="a", response_b="b")
    assert r.fatal and r.n_ref == 1 and r.tp == 1 and r.f1 == 1.0


def test_llm_judge_retries_an_unplaced_fatal_error(hotel_row: NlhfRow) -> None:
    """``fatal_error: true`` over several human arguments does not say which is fatal."""
    unplaced = JUDGED.replace('"fatal_error": false', '"fatal_error": true')
    out_of_range = JUDGED.replace('"fatal_error": false', '"fatal_error": 5')
    judge = LLMJudgeMatcher(ScriptedJudge([unplaced, out_of_range, JUDGED]), retries=3)
    r = judge.score(GOOD, "h", context="c", response_a="a", response_b="b")
    assert judge.calls == 3 and not r.fatal and r.n_ref == 2


def test_cre_process_reward_does_not_depend_on_the_verdict(hotel_row: NlhfRow, matcher) -> None:
    """P-GenRM's PR judges the chain apart from the outcome; RM-NLHF's q needs a right verdict."""
    right = synthetic_chain(hotel_row, [0, 1]).replace(
        "the user explains",
        "Response A is a tranquil spa retreat and Response B is too loud; the user explains",
    )
    wrong = right.replace("8.0", "TMP").replace("3.0", "8.0").replace("TMP", "3.0")
    cre = RewardComputer("cre", matcher)
    nlhf = RewardComputer("nlhf", matcher)
    c_right, c_wrong = cre([hotel_row, hotel_row], [right, wrong], [[0, 1], [0, 1]])
    n_wrong = nlhf([hotel_row], [wrong], [[0, 1]])[0]
    assert c_right.correct and not c_wrong.correct and c_wrong.format_ok
    assert c_wrong.f1 is not None and c_wrong.f1 > 0
    assert c_wrong.reward == pytest.approx(0.5 * c_wrong.f1)  # PR counts, OR = 0
    assert c_right.reward == pytest.approx(1.0 + 0.5 * (c_right.f1 or 0.0))
    assert n_wrong.reward == 0.0 and n_wrong.f1 is None  # RM-NLHF: no q on a wrong verdict


def test_llm_judge_retries_malformed_match_indices_and_reads_worded_flags() -> None:
    """A bad index is a parse failure (retried, then counted), never an exception."""
    bad_index = JUDGED.replace("[[0, 0], [1, 1]]", '[["first", 0]]')
    null_index = JUDGED.replace("[[0, 0], [1, 1]]", "[[null, 0]]")
    judge = LLMJudgeMatcher(ScriptedJudge([bad_index, null_index, bad_index]), retries=3)
    r = judge.score(GOOD, "h", context="c", response_a="a", response_b="b")
    assert judge.calls == 3 and r.f1 == 0.0 and judge.failures["judge_failed"] == 1
    assert "not a pair of indices" in r.reason

    worded = JUDGED.replace('"repetition": false', '"repetition": "false"')
    unclear = JUDGED.replace('"repetition": false', '"repetition": "maybe"')
    judge = LLMJudgeMatcher(ScriptedJudge([unclear, worded]), retries=3)
    r = judge.score(GOOD, "h", context="c", response_a="a", response_b="b")
    assert judge.calls == 2 and not r.repetition and r.tp == 1
