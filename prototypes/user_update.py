"""Apply one feedback triple to a user's state (pure, no I/O).

The user's *preference direction* is the recency-weighted mean of
``e(chosen) - e(rejected)``: an event ``k`` events old weighs ``0.5 ** (k / halflife)``.
It is kept as a weighted mean plus the total weight, so each update is O(d).

Why users are stored, clustered and searched by the normalised direction rather
than by the persona embedding: the direction exists from the first feedback
event without running an LLM, it lives in the same space as the prior
``s(y) = z . e(y)`` (so a prototype centroid *is* a usable prior), and it moves
exactly when feedback arrives, whereas a persona text is generated later, goes
stale between regenerations, and embeds the wording of the analysis as much as
the preference.

Examples
--------
>>> import numpy as np
>>> from infra.contracts import ChatMessage
>>> from reward.protocol import HistoryItem
>>> from prototypes.protocol import UserState
>>> item = HistoryItem(context=[ChatMessage(role="user", content="hotel?")],
...                    chosen="quiet spa", rejected="party hotel", critique="too loud")
>>> s = apply_feedback(UserState(user_id="u"), item, e_chosen=np.array([1.0, 0.0]),
...                    e_rejected=np.array([0.0, 1.0]), e_query=np.array([0.6, 0.8]))
>>> s.version, s.events_applied, s.critiques, s.direction
(1, 1, 1, [1.0, -1.0])
>>> [round(x, 3) for x in search_vector(s).tolist()]
[0.707, -0.707]
"""

from __future__ import annotations

import numpy as np

from infra.contracts import utcnow
from prototypes.protocol import UserState
from reward.protocol import HistoryItem


def decay_factor(halflife: float) -> float:
    """Per-event decay of older evidence.

    >>> decay_factor(1.0)
    0.5
    """
    return float(0.5 ** (1.0 / halflife)) if halflife > 0 else 0.0


def _fold(old: list[float], weight: float, new: np.ndarray, decay: float) -> list[float]:
    new = np.asarray(new, dtype=np.float64)
    if not old or weight <= 0:
        return new.tolist()
    prev = np.asarray(old, dtype=np.float64)
    if prev.shape != new.shape:  # embedder changed: start over
        return new.tolist()
    kept = decay * weight
    return ((kept * prev + new) / (kept + 1.0)).tolist()


def apply_feedback(
    state: UserState,
    item: HistoryItem,
    *,
    e_chosen: np.ndarray,
    e_rejected: np.ndarray,
    e_query: np.ndarray,
    max_history: int = 32,
    halflife: float = 20.0,
) -> UserState:
    """Return a new state with ``item`` applied (``state`` is left untouched).

    ``version`` and ``events_applied`` grow by one, ``critiques`` too when the item
    carries one; history keeps the newest ``max_history`` triples; ``direction`` and
    ``query_embedding`` fold in the new evidence with recency weighting.
    """
    decay = decay_factor(halflife)
    diff = np.asarray(e_chosen, dtype=np.float64) - np.asarray(e_rejected, dtype=np.float64)
    history = [*state.history, item]
    if max_history > 0:
        history = history[-max_history:]
    return state.model_copy(
        update={
            "history": history,
            "direction": _fold(state.direction, state.direction_weight, diff, decay),
            "query_embedding": _fold(state.query_embedding, state.direction_weight, e_query, decay),
            "direction_weight": decay * state.direction_weight + 1.0,
            "events_applied": state.events_applied + 1,
            "critiques": state.critiques + (1 if item.critique else 0),
            "version": state.version + 1,
            "updated_at": utcnow(),
            # the rest is shared by reference unless copied here (history items are frozen)
            "offsets": dict(state.offsets),
            "criteria": list(state.criteria),
            "persona_embedding": list(state.persona_embedding),
            "assigned_vector": list(state.assigned_vector),
            "assigned_query": list(state.assigned_query),
        }
    )


def search_vector(state: UserState) -> np.ndarray | None:
    """The unit-norm preference direction, or None before any usable feedback."""
    if not state.direction:
        return None
    v = np.asarray(state.direction, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm < 1e-8:
        return None
    return v / norm
