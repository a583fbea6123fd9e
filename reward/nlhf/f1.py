"""Core-argument F1 between a generated critique and a human critique (RM-NLHF §2.3).

Rules, in order:

1. A generated critique that repeats a key argument scores F1 = 0.
2. If the human critique names a fatal error, only that argument is the
   reference (N_ref = 1).
3. True positives are one-to-one matches that agree in meaning (similarity
   >= ``tau``) *and* in stance (same response argued for).
4. P = TP / N_gen, R = TP / N_ref, F1 = 2PR / (P + R); 0 when undefined.
5. q = 1[F1 >= 0.5].

Examples
--------
>>> import numpy as np
>>> gen = [Argument("calm", "A", 1), Argument("B loud", "B", -1)]
>>> ref = [Argument("quiet", "A", 1)]
>>> r = core_f1(gen, ref, np.array([[0.9], [0.2]]), tau=0.5)
>>> (r.tp, r.precision, r.recall, round(r.f1, 3), r.q)
(1, 0.5, 1.0, 0.667, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from reward.nlhf.arguments import Argument

Q_THRESHOLD = 0.5


@dataclass(frozen=True)
class F1Result:
    """Core-argument precision/recall/F1 and the rule that decided it."""

    f1: float
    precision: float = 0.0
    recall: float = 0.0
    tp: int = 0
    n_gen: int = 0
    n_ref: int = 0
    repetition: bool = False
    fatal: bool = False
    matches: list[tuple[int, int]] = field(default_factory=list)
    reason: str = "ok"

    @property
    def q(self) -> int:
        """The quantised process reward 1[F1 >= 0.5]."""
        return int(self.f1 >= Q_THRESHOLD)


def prf(tp: int, n_gen: int, n_ref: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with 0 where undefined.

    >>> prf(1, 2, 1)
    (0.5, 1.0, 0.6666666666666666)
    >>> prf(0, 0, 3)
    (0.0, 0.0, 0.0)
    """
    p = tp / n_gen if n_gen else 0.0
    r = tp / n_ref if n_ref else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def one_to_one(sim: np.ndarray, allowed: np.ndarray, tau: float) -> list[tuple[int, int]]:
    """Maximum-similarity one-to-one matching over allowed pairs with sim >= tau.

    >>> one_to_one(np.array([[0.9, 0.8], [0.85, 0.1]]), np.ones((2, 2), bool), 0.5)
    [(0, 1), (1, 0)]
    """
    if sim.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    ok = allowed & (sim >= tau)
    # Maximise the number of matches first, then total similarity: one match more is
    # worth more than any gain in similarity over all the others (each sim <= 1).
    weight = np.where(ok, min(sim.shape) + 1.0 + sim, 0.0)
    rows, cols = linear_sum_assignment(-weight)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if ok[i, j]]


def core_f1(
    gen: Sequence[Argument],
    ref: Sequence[Argument],
    sim: np.ndarray,
    *,
    tau: float,
    repetition: bool = False,
) -> F1Result:
    """Apply the F1 rules to extracted arguments.

    Parameters
    ----------
    gen, ref:
        Unique key arguments of the generated and of the human critique.
    sim:
        Meaning similarity, shape ``(len(gen), len(ref))``.
    tau:
        Similarity at which two arguments mean the same.
    repetition:
        The generated critique repeats an argument (rule 1).
    """
    if repetition:
        return F1Result(0.0, n_gen=len(gen), n_ref=len(ref), repetition=True, reason="repetition")
    ref_idx = list(range(len(ref)))
    fatal = [j for j, a in enumerate(ref) if a.fatal]
    if fatal:
        ref_idx = fatal[:1]
    if not ref_idx:
        return F1Result(0.0, n_gen=len(gen), reason="no_reference_arguments")
    if not gen:
        return F1Result(0.0, n_ref=len(ref_idx), fatal=bool(fatal), reason="no_generated_arguments")
    sub = np.asarray(sim, dtype=float).reshape(len(gen), len(ref))[:, ref_idx]
    allowed = np.array(
        [[g.stance is not None and g.stance == ref[j].stance for j in ref_idx] for g in gen],
        dtype=bool,
    )
    pairs = [(i, ref_idx[j]) for i, j in one_to_one(sub, allowed, tau)]
    p, r, f = prf(len(pairs), len(gen), len(ref_idx))
    return F1Result(
        f, p, r, tp=len(pairs), n_gen=len(gen), n_ref=len(ref_idx), fatal=bool(fatal), matches=pairs
    )
