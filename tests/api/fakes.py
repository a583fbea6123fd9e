"""FAKE service for the API tests, used only while the real one cannot be opened.

:class:`FakeService` implements :class:`stream.api.protocol.ScoringService`
(``serve``, ``user``, ``prototypes``) in memory with a trivial word-overlap
scorer. The ``service`` fixture prefers the real
:class:`stream.service.PgenrmService`; it falls back to this fake only when
the real one's modules are missing (and says so in the test output), and
``test_contract.py`` checks that the real service satisfies the same Protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from infra.contracts import CandidateScore, Explanation, FeedbackEvent, RewardRequest, RewardResult
from prototypes.protocol import Prototype, UserState
from reward.protocol import HistoryItem


class FakeService:
    """In-memory stand-in for PgenrmService (FAKE: not the product's scoring)."""

    def __init__(self) -> None:
        self.users: dict[str, UserState] = {}
        self.answered: set[str] = set()
        self.protos: dict[int, Prototype] = {}
        self._lock = threading.Lock()

    def apply_feedback(self, events: Sequence[FeedbackEvent], positions: Any = None) -> list:
        with self._lock:
            for ev in events:
                st = self.users.setdefault(ev.user_id, UserState(user_id=ev.user_id))
                st.history.append(
                    HistoryItem(
                        context=ev.context,
                        chosen=ev.chosen,
                        rejected=ev.rejected,
                        critique=ev.critique,
                    )
                )
                st.events_applied += 1
                st.version += 1
                st.prototype_id = hash(ev.user_id) % 3
                p = self.protos.setdefault(
                    st.prototype_id, Prototype(prototype_id=st.prototype_id, centroid=[0.0, 1.0])
                )
                p.size = sum(1 for u in self.users.values() if u.prototype_id == p.prototype_id)
        return list(events)

    def serve(self, request: RewardRequest) -> RewardResult | None:
        t0 = time.perf_counter()
        with self._lock:
            if request.request_id in self.answered:
                return None
            self.answered.add(request.request_id)
            st = self.users.get(request.user_id)
        liked = " ".join(h.chosen for h in (st.history if st else [])).lower().split()
        raw = [
            float(sum(w in liked for w in c.lower().split())) - 0.01 * len(c)
            for c in request.candidates
        ]
        order = sorted(range(len(raw)), key=lambda i: -raw[i])
        scores = [
            CandidateScore(index=i, score=raw[i], rank=order.index(i) + 1) for i in range(len(raw))
        ]
        return RewardResult(
            request_id=request.request_id,
            user_id=request.user_id,
            scores=scores,
            mode="personal" if st else "cold_start",
            prototype_id=st.prototype_id if st else None,
            explanation=Explanation(persona="fake persona", notes=["fake scorer"]),
            model_id="fake",
            latency_ms=(time.perf_counter() - t0) * 1000,
        )

    def user(self, user_id: str) -> UserState | None:
        return self.users.get(user_id)

    def prototypes(self) -> list[Prototype]:
        return list(self.protos.values())

    def close(self) -> None:
        pass
