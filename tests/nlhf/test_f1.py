"""Core-argument F1 rules on hand-written cases (repetition, fatal error, stance, one-to-one)."""

from __future__ import annotations

import numpy as np
import pytest

from reward.nlhf.arguments import Argument, explicit_target, is_fatal, polarity
from reward.nlhf.f1 import core_f1


def test_rules_on_extracted_arguments() -> None:
    ref = [Argument("calm", "A", 1), Argument("B is loud", "B", -1)]
    gen = [Argument("quiet", "A", 1), Argument("B noisy", "B", -1), Argument("A cheap", "A", 1)]
    sim = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.2]])
    r = core_f1(gen, ref, sim, tau=0.5)
    assert (r.tp, r.n_gen, r.n_ref) == (2, 3, 2)
    assert r.precision == pytest.approx(2 / 3) and r.recall == 1.0
    assert r.f1 == pytest.approx(0.8) and r.q == 1


def test_repetition_gives_zero_even_when_everything_matches() -> None:
    ref = [Argument("calm", "A", 1)]
    gen = [Argument("quiet", "A", 1)]
    r = core_f1(gen, ref, np.array([[0.99]]), tau=0.5, repetition=True)
    assert r.f1 == 0.0 and r.repetition and r.q == 0


def test_stance_mismatch_is_not_a_match() -> None:
    ref = [Argument("A is calm", "A", 1)]
    # Same meaning, but argued for B (praise of B) and as criticism of A (argues for B).
    for g in (Argument("B is calm", "B", 1), Argument("A is not calm", "A", -1)):
        r = core_f1([g], ref, np.array([[0.95]]), tau=0.5)
        assert r.tp == 0 and r.f1 == 0.0
    # Criticising B argues for A: that stance agrees.
    r = core_f1([Argument("B is loud", "B", -1)], ref, np.array([[0.95]]), tau=0.5)
    assert r.tp == 1 and r.f1 == 1.0


def test_fatal_error_makes_it_the_only_reference() -> None:
    ref = [
        Argument("A is well formatted", "A", 1),
        Argument("B gives an incorrect date", "B", -1, fatal=True),
        Argument("A is friendly", "A", 1),
    ]
    gen = [Argument("B's date is wrong", "B", -1)]
    sim = np.array([[0.1, 0.9, 0.1]])
    r = core_f1(gen, ref, sim, tau=0.5)
    assert r.fatal and r.n_ref == 1 and r.f1 == 1.0
    # Without the fatal flag the same critique only recalls 1 of 3 arguments.
    plain = [Argument(a.text, a.target, a.polarity) for a in ref]
    assert core_f1(gen, plain, sim, tau=0.5).f1 == pytest.approx(0.5)
    # Matching a non-fatal argument earns nothing when a fatal one exists.
    gen2 = [Argument("A is well formatted", "A", 1)]
    assert core_f1(gen2, ref, np.array([[0.95, 0.1, 0.2]]), tau=0.5).f1 == 0.0


def test_matching_is_one_to_one() -> None:
    ref = [Argument("calm", "A", 1)]
    gen = [Argument("quiet", "A", 1), Argument("peaceful", "A", 1)]
    r = core_f1(gen, ref, np.array([[0.9], [0.8]]), tau=0.5)
    assert r.tp == 1 and r.precision == 0.5 and r.recall == 1.0


def test_matching_takes_the_most_matches_before_the_best_similarity() -> None:
    # three perfect pairs on the diagonal, or four pairs just above tau off it
    sim = np.zeros((4, 4))
    sim[0, 0] = sim[1, 1] = sim[2, 2] = 1.0
    sim[3, 0] = sim[0, 1] = sim[1, 2] = sim[2, 3] = 0.46
    gen = [Argument(f"g{i}", "A", 1) for i in range(4)]
    ref = [Argument(f"h{i}", "A", 1) for i in range(4)]
    r = core_f1(gen, ref, sim, tau=0.45)
    assert r.tp == 4 and r.f1 == 1.0


def test_undefined_cases_are_zero() -> None:
    assert core_f1([], [Argument("x", "A")], np.zeros((0, 1)), tau=0.5).f1 == 0.0
    assert core_f1([Argument("x", "A")], [], np.zeros((1, 0)), tau=0.5).f1 == 0.0
    assert core_f1([Argument("x", None)], [Argument("x", "A")], np.ones((1, 1)), tau=0.5).f1 == 0.0


def test_a_lowercase_article_is_not_a_reference() -> None:
    assert explicit_target("This is the response a busy parent would want.") is None
    assert explicit_target("I prefer response A here.") == "A"
    assert explicit_target("Option 2 is too loud.") == "B"


def test_lexical_cues() -> None:
    assert polarity("Response B is too loud") == -1 and polarity("Response A is calm") == 1
    assert is_fatal("Response B is factually incorrect") and not is_fatal("A is nice")
    assert explicit_target("Response A is calm") == "A"
    assert explicit_target("the second one is loud") == "B"
    assert explicit_target("the other options are loud") == "other"


# -- the embedding matcher on hand-written critiques -------------------------

A = "The Westin Las Vegas offers a tranquil spa retreat away from the Strip."
B = "The Palms is known for high-energy pool parties and nightlife events."
HUMAN = (
    "I'll go with the Westin, a tranquil spa retreat. "
    "The Palms is too loud and party-focused for me."
)


def score(matcher, gen: str, human: str = HUMAN):
    return matcher.score(gen, human, context="Hotels in Las Vegas?", response_a=A, response_b=B)


def test_embedding_matcher_good_critique(matcher) -> None:
    r = score(
        matcher,
        "Response A is a tranquil spa retreat, which suits a quiet stay. "
        "Response B is too focused on loud pool parties and nightlife.",
    )
    assert r.q == 1 and r.tp == 2


def test_embedding_matcher_repetition(matcher) -> None:
    r = score(
        matcher, "Response A is a tranquil spa retreat. Response A is a tranquil spa retreat."
    )
    assert r.repetition and r.f1 == 0.0


def test_the_same_words_about_both_responses_are_not_a_repetition(matcher) -> None:
    # with the references stripped both read "It is too long for me", but they argue
    # opposite ways; the third argument is the human's own point
    r = score(
        matcher,
        "Response A is too long for me. Response B is too long for me. "
        "Response B is too focused on loud pool parties.",
    )
    assert not r.repetition and r.tp >= 1 and r.f1 > 0.0


def test_embedding_matcher_stance_mismatch(matcher) -> None:
    # Talks about the same things but argues for B.
    r = score(
        matcher,
        "Response B offers exciting pool parties and great nightlife. "
        "Response A is a boring spa retreat, not fun at all.",
    )
    assert r.tp == 0 and r.f1 == 0.0


def test_embedding_matcher_unrelated_critique(matcher) -> None:
    r = score(matcher, "Response A uses correct grammar and complete sentences throughout.")
    assert r.q == 0


def test_embedding_matcher_fatal_error(matcher) -> None:
    human = (
        "Response B is factually incorrect: the Palms closed years ago. "
        "Response A is also nicely written."
    )
    hit = score(matcher, "Response B is factually wrong, since the Palms closed years ago.", human)
    assert hit.fatal and hit.n_ref == 1 and hit.q == 1
    miss = score(matcher, "Response A is nicely written.", human)
    assert miss.fatal and miss.q == 0
