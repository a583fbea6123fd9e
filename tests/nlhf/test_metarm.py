"""MetaRM: online updates move predictions the right way, persistence keeps the version,
and cold start learns a held-out signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reward.nlhf.exceptions import MetaRMError
from reward.nlhf.metarm import MetaRM, MetaRMExample, label_example
from reward.nlhf.metrics import metarm_agreement
from reward.nlhf.rows import NlhfRow
from reward.nlhf.verdict import Verdict

CTX = "I avoid noisy places. What hotel should I pick in Las Vegas?"
A = "The Westin: a tranquil spa retreat away from the Strip."
B = "The Palms: famous for pool parties and nightlife."
GOOD = "Response A is tranquil, which fits someone avoiding noise. Response B is too loud."
BAD = "Response B has great parties and nightlife, so it is the better choice."


def test_online_update_moves_prediction_toward_label(embedder) -> None:
    m = MetaRM(embedder, seed=0)
    up = MetaRMExample(CTX, A, B, GOOD, 1.5)
    down = MetaRMExample(CTX, A, B, BAD, 0.0)
    g0, b0 = m.predict(CTX, A, B, GOOD), m.predict(CTX, A, B, BAD)
    m.update([up])
    assert m.version == 1 and m.updates == 1
    g1 = m.predict(CTX, A, B, GOOD)
    assert g1 > g0  # update-then-use: the very next prediction reflects the update
    for _ in range(4):
        m.update([down])
    assert m.predict(CTX, A, B, BAD) < b0
    m.update([])  # no-op
    assert m.version == 5


def test_save_load_keeps_predictions_and_version(embedder, tmp_path: Path) -> None:
    m = MetaRM(embedder, seed=1)
    m.update([MetaRMExample(CTX, A, B, GOOD, 1.5), MetaRMExample(CTX, A, B, BAD, 0.0)])
    m.save(tmp_path / "mrm")
    m2 = MetaRM.load(tmp_path / "mrm", embedder)
    assert m2.version == m.version == 1
    assert m2.predict(CTX, A, B, GOOD) == pytest.approx(m.predict(CTX, A, B, GOOD), abs=1e-6)
    # Optimiser state survives too: the same next update gives the same result.
    ex = [MetaRMExample(CTX, A, B, GOOD, 1.5)]
    m.update(ex)
    m2.update(ex)
    assert m2.predict(CTX, A, B, GOOD) == pytest.approx(m.predict(CTX, A, B, GOOD), abs=1e-5)
    assert m2.version == 2
    with pytest.raises(MetaRMError):
        MetaRM.load(tmp_path / "missing", embedder)


def test_label_example(hotel_row: NlhfRow, matcher) -> None:
    crit = (
        "Response A is a tranquil spa retreat, ideal for a calm stay. "
        "Response B is too loud and party-focused."
    )
    good = label_example(hotel_row, Verdict(True, "A", crit), matcher)
    wrong = label_example(hotel_row, Verdict(True, "B", BAD), matcher)
    assert good is not None and good.label == 1.5
    assert hotel_row.human_critique is not None
    assert hotel_row.human_critique not in good.critique
    assert wrong is not None and wrong.label == 0.0
    assert label_example(hotel_row, Verdict(False, None, "", "no_json"), matcher) is None


def test_cold_start_generalises_to_held_out_users(embedder) -> None:
    """Critiques that argue for the response fitting the stated need get 1.5, others 0."""
    items = [
        ("I hate noise.", "A quiet spa hotel.", "A party hotel.", "quiet", "party"),
        ("I am vegan.", "A lentil curry.", "A beef steak.", "plant-based", "meat"),
        ("I love hiking.", "A mountain trail day.", "A shopping mall day.", "outdoor", "indoor"),
        ("I am on a budget.", "A cheap hostel.", "A luxury suite.", "affordable", "expensive"),
        (
            "I like short answers.",
            "Boil 9 minutes.",
            "Eggs have a long history...",
            "concise",
            "rambling",
        ),
        ("I read sci-fi.", "Dune by Herbert.", "A cookbook.", "science fiction", "cooking"),
        ("I have a dog.", "A pet-friendly cabin.", "A no-pets hotel.", "pet-friendly", "no pets"),
        ("I get seasick.", "A train trip.", "A boat cruise.", "on land", "at sea"),
    ]
    ex = []
    for ctx, a, b, ga, gb in items:
        ex.append(
            MetaRMExample(ctx, a, b, f"Response A is {ga}, exactly what the user needs.", 1.5)
        )
        ex.append(MetaRMExample(ctx, a, b, f"Response B is {gb}, which the user will enjoy.", 0.0))
    train, test = ex[:10], ex[10:]
    m = MetaRM(embedder, seed=0)
    losses = m.fit(train, epochs=80)
    assert losses[-1] < losses[0]
    pred = m.predict_many([(e.context, e.response_a, e.response_b, e.critique) for e in test])
    agree = metarm_agreement([e.label for e in test], pred.tolist())
    assert agree["pearson"] is not None and agree["pearson"] > 0.3
    assert np.isfinite(pred).all()


def test_lm_metarm_update_direction_and_persistence(smollm2_path: str, tmp_path: Path) -> None:
    from reward.nlhf.metarm_lm import LMMetaRM

    m = LMMetaRM(smollm2_path, online_lr=5e-5, max_length=96)
    before = m.predict(CTX, A, B, GOOD)
    for _ in range(2):
        m.update([MetaRMExample(CTX, A, B, GOOD, before + 3.0)])
    after = m.predict(CTX, A, B, GOOD)
    assert after > before and m.version == 2
    m.save(tmp_path / "lm")
    m2 = LMMetaRM.load(tmp_path / "lm")
    assert m2.version == 2 and m2.predict(CTX, A, B, GOOD) == pytest.approx(after, abs=1e-3)
