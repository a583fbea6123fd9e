"""Combining the three reward signals: embedding prior, own chains, neighbour chains.

Scales
------
Chain scores live on 1..10, prior scores are cosines whose differences between
candidates are small (~0.01..0.1). Before two *different* signals are mixed,
each is put on a comparable scale by :class:`SignalScaler`: per request the
scores are **centred** (candidate mean subtracted) and divided by a running
mean absolute deviation of that signal (an exponential moving average over the
requests seen, seeded with a typical value so the first request is sane). This
keeps each signal's within-request confidence (a 9-vs-2 chain counts more than
6-vs-5), unlike per-request z-scoring, which turns every 2-candidate request
into +-1.

Combinations
------------
``paper``  P-GenRM Eq. 9 as in the released code: ``0.5 * mean(own chains) +
           0.5 * mean(neighbour chains)``, renormalised over the sides that
           exist, on the raw 1..10 scale. The prior does not vote; it only
           breaks exact ties (added with weight 1e-3 in scaled units, shrunk
           below the smallest gap between chain means so it never reorders
           candidates the chains tell apart; the tie is still counted) and
           stands in when no chain side exists (then the result is the scaled
           prior).
``blend``  ``sum_k w_k * scaled_k`` with weights learned online by a river
           logistic regression on revealed outcomes (feature = scaled(chosen) -
           scaled(rejected), label True, plus the mirrored example), starting
           from the paper's weights ``individual = prototype = 0.5, prior = 0``.

Examples
--------
>>> scaler = SignalScaler()
>>> combine_paper({"individual": [8.0, 4.0], "prototype": [6.0, 6.0]}, scaler)
[7.0, 5.0]
>>> b = Blender()
>>> out = b.combine({"individual": [8.0, 4.0], "prior": [0.2, 0.1]}, SignalScaler())
>>> out[0] > out[1]
True
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

Signal = Literal["prior", "individual", "prototype"]
SIGNALS: tuple[Signal, ...] = ("prior", "individual", "prototype")
CHAIN_SIGNALS: tuple[Signal, ...] = ("individual", "prototype")
Combination = Literal["paper", "blend"]

PAPER_WEIGHTS: dict[str, float] = {"prior": 0.0, "individual": 0.5, "prototype": 0.5}
"""Eq. 9 as released: ``coef_self = coef_neighbors = 0.5``; the prior has no vote."""

INITIAL_SCALE: dict[str, float] = {"prior": 0.03, "individual": 1.5, "prototype": 1.5}
"""Typical mean |centred score| per signal, the running scales' starting values."""

TIE_BREAK = 1e-3


def centred(scores: Sequence[float]) -> np.ndarray:
    """Scores minus their mean over candidates.

    >>> centred([3.0, 1.0]).tolist()
    [1.0, -1.0]
    """
    a = np.asarray(scores, dtype=np.float64)
    return a - a.mean()


class SignalScaler:
    """Running per-signal scale (EMA of the mean absolute centred score).

    Parameters
    ----------
    alpha
        EMA rate; each observed request moves the scale by this fraction.
    initial
        Starting scale per signal (default :data:`INITIAL_SCALE`).

    Examples
    --------
    >>> s = SignalScaler(alpha=0.5)
    >>> s.scale("individual", [9.0, 3.0]).tolist()
    [2.0, -2.0]
    >>> s.observe("individual", [9.0, 3.0]); round(s.scales["individual"], 2)
    2.25
    """

    def __init__(self, *, alpha: float = 0.02, initial: Mapping[str, float] | None = None) -> None:
        self.alpha = alpha
        self.scales: dict[str, float] = dict(initial or INITIAL_SCALE)
        self.observed: dict[str, int] = dict.fromkeys(self.scales, 0)

    def scale(self, signal: str, scores: Sequence[float]) -> np.ndarray:
        """Centred scores divided by the signal's running scale."""
        return centred(scores) / max(self.scales.get(signal, 1.0), 1e-9)

    def observe(self, signal: str, scores: Sequence[float]) -> None:
        """Fold one request's spread into the running scale (ignores all-equal requests)."""
        mad = float(np.abs(centred(scores)).mean())
        if mad <= 0.0:
            return
        old = self.scales.get(signal, mad)
        self.scales[signal] = (1.0 - self.alpha) * old + self.alpha * mad
        self.observed[signal] = self.observed.get(signal, 0) + 1


def combine_paper(components: Mapping[str, Sequence[float]], scaler: SignalScaler) -> list[float]:
    """Eq. 9: mean of the available chain sides on the raw scale; prior breaks ties.

    >>> combine_paper({"prior": [0.1, 0.3]}, SignalScaler())[1] > 0
    True
    >>> combine_paper({"individual": [5.0, 5.0], "prior": [0.1, 0.3]}, SignalScaler())
    [4.996667, 5.003333]
    """
    sides = [np.asarray(components[k], dtype=np.float64) for k in CHAIN_SIGNALS if k in components]
    prior = components.get("prior")
    if not sides:
        if prior is None:
            raise ValueError("no signal to combine")
        return [round(float(x), 6) for x in scaler.scale("prior", prior)]
    # rounded to the published precision first: means that differ only by float
    # noise ((1.0 + 1.4) / 2 against (1.1 + 1.3) / 2) are a tie for the prior to break
    out = np.round(np.asarray(sum(sides) / len(sides), dtype=np.float64), 6)
    if prior is not None:
        out = out + tie_break(out, TIE_BREAK * scaler.scale("prior", prior))
    return [round(float(x), 6) for x in out]


def tie_break(means: np.ndarray, bonus: np.ndarray) -> np.ndarray:
    """``bonus`` shrunk so that it can reorder only candidates whose ``means`` are equal.

    Every bonus is kept under a third of the smallest gap between two different
    means, so no two candidates that differ change places.

    >>> tie_break(np.array([7.01, 7.0]), np.array([-0.02, 0.02])).round(4).tolist()
    [-0.0033, 0.0033]
    >>> tie_break(np.array([5.0, 5.0]), np.array([-0.02, 0.02])).tolist()
    [-0.02, 0.02]
    """
    distinct = np.unique(means)
    largest = float(np.abs(bonus).max(initial=0.0))
    if len(distinct) < 2 or largest == 0.0:
        return bonus
    room = float(np.diff(distinct).min()) / 3.0
    return bonus * min(1.0, room / largest)


class Blender:
    """Online-learned weights over the scaled signals (river logistic regression).

    Parameters
    ----------
    lr
        SGD learning rate.
    l2
        L2 penalty (keeps weights bounded on noisy outcomes).
    """

    def __init__(self, *, lr: float = 0.05, l2: float = 1e-4) -> None:
        from river import linear_model, optim

        self.model = linear_model.LogisticRegression(
            optimizer=optim.SGD(lr), l2=l2, intercept_lr=0.0
        )
        for k, w in PAPER_WEIGHTS.items():
            self.model._weights[k] = w
        self.updates = 0

    @property
    def weights(self) -> dict[str, float]:
        """Current weight per signal.

        >>> Blender().weights["individual"]
        0.5
        """
        return {k: float(self.model.weights.get(k, 0.0)) for k in SIGNALS}

    def combine(
        self, components: Mapping[str, Sequence[float]], scaler: SignalScaler
    ) -> list[float]:
        """Weighted sum of the scaled signals present in ``components``."""
        if not components:
            raise ValueError("no signal to combine")
        w = self.weights
        n = len(next(iter(components.values())))
        out = np.zeros(n)
        for k, v in components.items():
            out += w.get(k, 0.0) * scaler.scale(k, v)
        if not np.any(out) and "prior" in components:  # all weights zero on present signals
            out = scaler.scale("prior", components["prior"])
        return [round(float(x), 6) for x in out]

    def learn(
        self,
        components: Mapping[str, Sequence[float]],
        scaler: SignalScaler,
        chosen: int,
        rejected: int,
    ) -> None:
        """Learn from one revealed outcome: ``chosen`` beat ``rejected``."""
        x: dict[str, Any] = {}
        for k, v in components.items():
            s = scaler.scale(k, v)
            x[k] = float(s[chosen] - s[rejected])
        if not any(x.values()):
            return
        self.model.learn_one(x, True)
        self.model.learn_one({k: -v for k, v in x.items()}, False)
        self.updates += 1

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(pickle.dumps(self))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Blender:
        """The checkpoint at ``path``, or a fresh blender when there is none."""
        if path.is_file():
            obj = pickle.loads(path.read_bytes())
            if isinstance(obj, cls):
                return obj
        return cls()


def combine(
    how: Combination,
    components: Mapping[str, Sequence[float]],
    scaler: SignalScaler,
    blender: Blender | None = None,
) -> list[float]:
    """Dispatch to :func:`combine_paper` or :meth:`Blender.combine`."""
    if how == "paper":
        return combine_paper(components, scaler)
    if blender is None:
        raise ValueError("blend needs a Blender")
    return blender.combine(components, scaler)


def ranks(scores: Sequence[float]) -> list[int]:
    """1-based ranks, best (highest) first; equal scores share the better rank order by index.

    >>> ranks([0.1, 0.9, 0.5])
    [3, 1, 2]
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    out = [0] * len(scores)
    for r, i in enumerate(order, start=1):
        out[i] = r
    return out


def top_tied(scores: Sequence[float]) -> bool:
    """True when more than one candidate shares the best score.

    >>> top_tied([2.0, 2.0, 1.0]), top_tied([2.0, 1.0])
    (True, False)
    """
    best = max(scores)
    return sum(1 for s in scores if s == best) > 1
