from __future__ import annotations

import numpy as np

from prototypes.protocol import UserState
from prototypes.user_update import apply_feedback, search_vector
from tests.prototypes.conftest import item

E = np.eye(4)


def test_pure_bounded_and_counted() -> None:
    s0 = UserState(user_id="u")
    s = s0
    for i in range(5):
        s = apply_feedback(s, item(i, critique="why" if i % 2 else None), e_chosen=E[0],
                           e_rejected=E[1], e_query=E[2], max_history=3)  # fmt: skip
    assert s0.version == 0 and s0.history == [] and s0.direction == []
    assert s.version == 5 and s.events_applied == 5 and s.critiques == 2
    assert [h.chosen for h in s.history] == ["good answer 2", "good answer 3", "good answer 4"]


def test_recent_evidence_weighs_more() -> None:
    s = UserState(user_id="u")
    for _ in range(10):
        s = apply_feedback(s, item(0), e_chosen=E[0], e_rejected=E[1], e_query=E[2], halflife=2)
    for _ in range(3):
        s = apply_feedback(s, item(1), e_chosen=E[1], e_rejected=E[0], e_query=E[3], halflife=2)
    # 3 recent reversals beat 10 old events with a half-life of 2 events
    assert s.direction[1] > s.direction[0]
    q = np.asarray(s.query_embedding)
    assert q[3] > q[2] > 0
    # without decay the 10 old events would win
    t = UserState(user_id="u")
    for e in [(E[0], E[1])] * 10 + [(E[1], E[0])] * 3:
        t = apply_feedback(t, item(0), e_chosen=e[0], e_rejected=e[1], e_query=E[2], halflife=1e9)
    assert t.direction[0] > t.direction[1]
    np.testing.assert_allclose(t.direction[0], 7 / 13, rtol=1e-6)


def test_search_vector_unit_or_none() -> None:
    assert search_vector(UserState(user_id="u")) is None
    s = apply_feedback(
        UserState(user_id="u"), item(0), e_chosen=E[0], e_rejected=E[0], e_query=E[2]
    )
    assert search_vector(s) is None  # identical embeddings carry no preference
    s = apply_feedback(s, item(1), e_chosen=E[0], e_rejected=E[1], e_query=E[2])
    v = search_vector(s)
    assert v is not None and abs(float(np.linalg.norm(v)) - 1) < 1e-6
