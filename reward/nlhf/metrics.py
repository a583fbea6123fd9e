"""RM-NLHF metrics: outcome-process inconsistency, F1 distribution, MetaRM agreement.

Examples
--------
>>> inconsistency_rate([True, True, False, True], [0.2, 0.8, 0.0, 0.4])
0.6666666666666666
>>> s = f1_summary([0.0, 0.5, 1.0, 0.4])
>>> s["mean"], s["q_rate"]
(0.475, 0.5)
>>> a = metarm_agreement([0.0, 1.0, 1.5], [0.1, 0.9, 1.6])
>>> round(a["mse"], 3), round(a["pearson"], 3)
(0.01, 0.989)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reward.nlhf.f1 import Q_THRESHOLD


def inconsistency_rate(correct: Sequence[bool], f1: Sequence[float]) -> float | None:
    """Share of correct verdicts whose critique F1 < 0.5 (None with no correct verdict)."""
    pairs = [(c, f) for c, f in zip(correct, f1, strict=True) if c]
    if not pairs:
        return None
    return sum(1 for _, f in pairs if f < Q_THRESHOLD) / len(pairs)


def f1_summary(f1: Sequence[float], bins: int = 5) -> dict[str, float | list[int] | int]:
    """Mean, quartiles, share >= 0.5 and a histogram over [0, 1]."""
    x = np.asarray(list(f1), dtype=float)
    if x.size == 0:
        return {"n": 0}
    hist, _ = np.histogram(x, bins=bins, range=(0.0, 1.0))
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "p25": float(np.quantile(x, 0.25)),
        "p75": float(np.quantile(x, 0.75)),
        "q_rate": float((x >= Q_THRESHOLD).mean()),
        "zero_rate": float((x == 0).mean()),
        "histogram": [int(h) for h in hist],
    }


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(x), dtype=float)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def metarm_agreement(
    target: Sequence[float], pred: Sequence[float]
) -> dict[str, float | int | None]:
    """MSE, MAE, Pearson and Spearman of MetaRM predictions against judge labels."""
    t = np.asarray(list(target), dtype=float)
    p = np.asarray(list(pred), dtype=float)
    if t.size == 0:
        return {"n": 0}
    return {
        "n": int(t.size),
        "mse": float(((t - p) ** 2).mean()),
        "mae": float(np.abs(t - p).mean()),
        "pearson": _corr(t, p),
        "spearman": _corr(_rank(t), _rank(p)),
        "baseline_mse": float(((t - t.mean()) ** 2).mean()),
    }
