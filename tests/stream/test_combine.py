"""Signal scaling and the paper / learned-blend combinations (real river)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from stream.combine import (
    PAPER_WEIGHTS,
    Blender,
    SignalScaler,
    combine,
    combine_paper,
    ranks,
    top_tied,
)


def test_paper_is_eq9_renormalised_over_available_sides() -> None:
    s = SignalScaler()
    both = combine_paper({"individual": [8.0, 2.0], "prototype": [4.0, 6.0]}, s)
    assert both == [6.0, 4.0]  # 0.5 * own + 0.5 * neighbours
    own_only = combine_paper({"individual": [8.0, 2.0]}, s)
    assert own_only == [8.0, 2.0]  # renormalised: weight 1 on the only side
    nb_only = combine_paper({"prototype": [4.0, 6.0]}, s)
    assert nb_only == [4.0, 6.0]


def test_paper_prior_only_breaks_exact_ties_and_stands_in_alone() -> None:
    s = SignalScaler()
    tied = combine_paper({"individual": [5.0, 5.0], "prior": [0.30, 0.10]}, s)
    assert tied[0] > tied[1]
    assert abs(tied[0] - 5.0) < 0.01  # the prior does not vote beyond tie-breaking
    not_tied = combine_paper({"individual": [6.0, 5.0], "prior": [0.0, 0.9]}, s)
    assert not_tied[0] > not_tied[1]
    # a lead of 0.01 (16-24 chains averaged) survives a strong prior against it
    close = combine_paper({"individual": [7.01, 7.0], "prior": [0.0, 0.6]}, s)
    assert close[0] > close[1]
    three = combine_paper({"individual": [6.0, 6.0, 6.001], "prior": [0.0, 0.6, -0.6]}, s)
    assert ranks(three) == [3, 2, 1]  # the tie at 6.0 broken by the prior, 6.001 stays first
    # two sides whose means differ only by float noise are tied: the prior decides
    noisy = combine_paper(
        {"individual": [1.0, 1.1], "prototype": [1.4, 1.3], "prior": [0.1, 0.3]}, s
    )
    assert ranks(noisy) == [2, 1]
    alone = combine_paper({"prior": [0.1, 0.2, 0.15]}, s)
    assert ranks(alone) == [3, 1, 2]
    with pytest.raises(ValueError):
        combine_paper({}, s)


def test_scaler_tracks_spread_and_ignores_constant_requests() -> None:
    s = SignalScaler(alpha=0.5, initial={"prior": 1.0})
    s.observe("prior", [0.2, 0.2])
    assert s.scales["prior"] == 1.0 and s.observed["prior"] == 0
    s.observe("prior", [0.0, 0.2])
    assert s.scales["prior"] == pytest.approx(0.55)
    np.testing.assert_allclose(s.scale("prior", [0.0, 0.2]), [-0.1 / 0.55, 0.1 / 0.55])


def test_blend_starts_at_paper_weights_and_learns_the_informative_signal() -> None:
    b = Blender(lr=0.1)
    assert b.weights == PAPER_WEIGHTS
    s = SignalScaler()
    rng = random.Random(0)
    for _ in range(300):
        good = rng.randrange(2)
        prior = [0.0, 0.0]
        prior[good] = 0.05  # the prior always points at the chosen candidate
        chains = [rng.uniform(1, 10), rng.uniform(1, 10)]  # chains are noise
        b.learn({"prior": prior, "individual": chains}, s, good, 1 - good)
    w = b.weights
    assert w["prior"] > 0.5
    assert w["prior"] > abs(w["individual"])
    assert b.updates == 300
    # and the learned blend now follows the prior against the chains
    out = combine("blend", {"prior": [0.0, 0.05], "individual": [7.0, 6.0]}, s, b)
    assert out[1] > out[0]


def test_blend_checkpoint_roundtrip(tmp_path: Path) -> None:
    b = Blender()
    b.learn({"prior": [0.1, 0.0]}, SignalScaler(), 0, 1)
    path = tmp_path / "blend.pkl"
    b.save(path)
    again = Blender.load(path)
    assert again.weights == b.weights and again.updates == 1
    assert Blender.load(tmp_path / "missing.pkl").weights == PAPER_WEIGHTS


def test_ranks_and_ties() -> None:
    assert ranks([1.0, 1.0, 3.0]) == [2, 3, 1]
    assert top_tied([1.0, 1.0]) and not top_tied([2.0, 1.0])
