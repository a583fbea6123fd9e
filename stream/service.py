"""pgenrm's core, independent of Kafka: apply feedback, score requests.

The faust agents (:mod:`stream.app`), the HTTP API and ``pgenrm eval`` all call
one :class:`PgenrmService`. It owns every write to the durable store, so there
is exactly one writer per process (a lock serialises the feedback path and the
persona refresher; the reward path only reads user state and appends to the
:class:`~stream.served.ServedLog`).

Exactly-once in effect (feedback)
---------------------------------
Per event, in order:

1. ``(partition, offset)`` not after the user's stored ``offsets[partition]`` ->
   ``replay`` (the worker died after writing the user but before committing
   the Kafka offset): skipped silently, counted, and its id marked in the
   ledger (the write it belongs to is durable).
2. ``event_id`` already in the ledger (or earlier in the same batch) ->
   ``duplicate``: nothing changes; the agent dead-letters it with reason
   ``duplicate_id`` (visible and counted, never silent). Dead letters are
   at-least-once: a duplicate replayed after a crash is dead-lettered again.
3. otherwise ``applied``: history, preference direction, prototype assignment;
   the user is written with the new offset, then the ids go to the ledger,
   then the store is flushed. The agent commits Kafka offsets only after that.

Answer-once (rewards)
---------------------
:meth:`PgenrmService.serve` skips a ``request_id`` whose ledger key
``req <request_id>`` exists (:func:`request_key`), or that is reserved: being
answered, or answered and still being written (counted as
``requests_repeated``). The key is written after the result is published (in
the agent's own thread, off the next request's path), so a crash can at worst
answer a request twice, never zero times.

Modes and signals
-----------------
``personal`` (history >= 1): prior from the user's direction, ``m`` chains with
the user's history (``individual``), ``n`` neighbours from the user's prototype
re-scoring with their own histories (``prototype``). ``prototype`` (a known user
without history, made known by :meth:`PgenrmService.register_user`): the
reward of *their* prototype, the one assigned to them or else the one their
stated preferences route to (nearest members' queries), i.e. its prior and
its ``n`` neighbours' chains, independent of the query. ``cold_start`` (unknown
user, or known with neither history nor profile): prior of the prototype
nearest to the query (or the global prior before any prototype exists) plus
that prototype's neighbours' chains; never waits for a persona. All chains
of one request go to the backend in one batched call.
``RewardResult.components`` holds each signal's raw
per-candidate scores (prior: cosine; chains: 1..10), ``scores`` the combination
(see :mod:`stream.combine`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import pickle
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from infra.contracts import (
    CandidateScore,
    Criterion,
    DegradedReason,
    Explanation,
    FeedbackEvent,
    PersonaState,
    PrototypeState,
    RewardRequest,
    RewardResult,
    UserProfile,
    utcnow,
)
from infra.settings import Settings
from prototypes.embedder import TextVectors, context_text
from prototypes.protocol import Prototype, UserState
from prototypes.stores.cache import CachedUserStore
from reward.protocol import HistoryItem, ScoreRequest, ScoreResult
from stream.combine import (
    SIGNALS,
    Blender,
    Combination,
    SignalScaler,
    combine,
    ranks,
    top_tied,
)
from stream.config import StreamConfig
from stream.exceptions import ProfileRejectedError, StreamError
from stream.gen_queue import PERSONA, REWARD, GenerationQueue
from stream.served import ServedLog, ServedReward, text_hash

if TYPE_CHECKING:
    from prototypes.assign import PrototypeAssigner
    from prototypes.protocol import Embedder
    from prototypes.stores import Stores
    from reward.protocol import GenerationBackend
    from stream.metarm_online import OnlineMetaRM

log = logging.getLogger(__name__)

Status = Literal["applied", "duplicate", "replay"]
INFLIGHT = "feedback.inflight"
"""Marker file present while a feedback batch is being written (crash detection)."""
Outcome = Literal["correct", "incorrect", "tie"]


@dataclass
class ApplyOutcome:
    """What :meth:`PgenrmService.apply_feedback` did with one event."""

    event_id: str
    user_id: str
    status: Status
    partition: int | None = None
    offset: int | None = None
    prototype_id: int | None = None
    history_size: int = 0
    reward_outcome: Outcome | None = None
    """Whether the served reward named by ``request_id`` agreed with this choice."""
    reward_mode: str | None = None
    state: UserState | None = None
    """The user's state right after this event (applied events), or as stored (replays)."""
    touched: list[int] = field(default_factory=list)
    """Prototypes whose statistics this event changed: the one the user joined,
    the one they left, the one whose served reward it scored (for a replay, the
    user's stored prototype)."""


# Feedback event ids are ledger keys as they are; ids (infra.contracts.Id) hold no
# space, so the space in these keys keeps the namespaces apart: a feedback event
# with id "req:r1" neither blocks nor is blocked by request r1.


def request_key(request_id: str) -> str:
    """Ledger key of an answered reward request.

    >>> request_key("r1")
    'req r1'
    """
    return f"req {request_id}"


def profile_key(event_id: str) -> str:
    """Ledger key of an applied :class:`~infra.contracts.UserProfile` event.

    >>> profile_key("p1")
    'profile p1'
    """
    return f"profile {event_id}"


def feedback_texts(events: Sequence[FeedbackEvent]) -> list[str]:
    """Query, chosen and rejected text of each event, in that order (3 per event)."""
    texts: list[str] = []
    for ev in events:
        texts += [context_text(ev.context), ev.chosen, ev.rejected]
    return texts


def _fill(scores: Sequence[float | None]) -> list[float] | None:
    """Missing candidate scores become the mean of the valid ones (neutral).

    >>> _fill([4.0, None, 6.0])
    [4.0, 5.0, 6.0]
    >>> _fill([None, None]) is None
    True
    """
    valid = [s for s in scores if s is not None]
    if not valid:
        return None
    mean = float(np.mean(valid))
    return [float(s) if s is not None else mean for s in scores]


class StageClock:
    """Wall time per named stage of one call, in ms (where the time goes).

    >>> c = StageClock()
    >>> c.lap("read"); c.lap("read"); sorted(c.ms)
    ['read']
    """

    def __init__(self) -> None:
        self._t = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap (or the start) to ``stage``."""
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + (now - self._t) * 1000.0
        self._t = now


class PgenrmService:
    """Feedback application and reward scoring over the durable store.

    Use :meth:`open` to build one from settings; pass ``backend``/``embedder``/
    ``stores`` to reuse already-loaded parts (tests, ``pgenrm eval``). The
    generative backend is loaded lazily on the first chain (so the feedback
    path never loads an LLM).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        stores: Any,
        embedder: Embedder,
        assigner: Any,
        backend: GenerationBackend | None = None,
        config: StreamConfig | None = None,
        refiner: Any = None,
    ) -> None:
        self.settings = settings
        self.refiner = refiner
        """A :class:`prototypes.prior.RefinedPrior` when ``pgenrm prototypes rebuild`` ran."""
        self.config = config or StreamConfig()
        if self.config.user_cache and not isinstance(stores.users, CachedUserStore):
            stores.users = CachedUserStore(stores.users, size=self.config.user_cache)
        self.stores = stores
        self.embedder = embedder
        self.assigner = assigner
        self._backend = backend
        self._scorer: Any = None
        self.generative = backend is not None or self.config.load_backend
        """Whether chains may run (``config.load_backend`` or a backend was given)."""
        self.generative_off: str | None = None
        """Why chains were switched off (the backend failed to load), for the notes."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.served = ServedLog(
            settings.data_dir / "served.sqlite", max_rows=self.config.served_max_rows
        )
        self._combine_path = settings.data_dir / "combine.pkl"
        self.scaler, self.blender = _load_combine(self._combine_path)
        self.counters: Counter[str] = Counter()
        self.signal_outcomes: Counter[str] = Counter()
        """``<signal>:<correct|incorrect|tie>`` over revealed outcomes (per-signal accuracy)."""
        self._write_lock = threading.RLock()
        self._combine_lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self._gen = GenerationQueue()
        self._aside: cf.ThreadPoolExecutor | None = None
        self._aside_lock = threading.Lock()
        self._persona_scorer: Any = None
        self._ms_per_chain: float | None = None
        self._closed = False
        self.last_apply_ms: dict[str, float] = {}
        """Stage timings of the latest :meth:`apply_feedback` batch (see :class:`StageClock`)."""
        self._local = threading.local()
        self._answering: set[str] = set()
        """Request ids noted as answered whose ledger mark is not written yet."""
        self._answering_lock = threading.Lock()
        self.metarm_online: OnlineMetaRM | None = None
        """The MetaRM updated from feedback critiques on served chains (``settings.metarm``)."""
        if settings.metarm.online:
            from stream.metarm_online import OnlineMetaRM

            self.metarm_online = OnlineMetaRM(
                settings.data_dir, embedder, settings.metarm, self.counters
            )

    # -- construction ---------------------------------------------------------
    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        backend: GenerationBackend | None = None,
        embedder: Embedder | None = None,
        stores: Any = None,
        config: StreamConfig | None = None,
    ) -> PgenrmService:
        """Open the store, the embedder and the prototype assigner named by ``settings``."""
        from prototypes.assign import PrototypeAssigner
        from prototypes.clustering import OnlineClusterer
        from prototypes.embedder import default_batch_size, default_workers, load_embedder
        from prototypes.rebuild import clusterer_path
        from prototypes.stores import open_stores

        if embedder is None:
            dtype = settings.models.embedder_dtype
            batch = (config or StreamConfig()).embed_batch or default_batch_size(dtype)
            embedder = load_embedder(
                settings.models.embedder,
                batch_size=batch,
                dtype=dtype,
                workers=default_workers(settings.models.embedder_workers),
                pin=settings.models.embedder_pin_shards,
                graph=settings.models.embedder_graph,
                processes=settings.models.embedder_shard_processes,
            )
        if stores is None:
            stores = open_stores(settings, dim=embedder.dim)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        assigner = PrototypeAssigner(
            stores.prototypes,
            OnlineClusterer(dim=embedder.dim),
            clusterer_path(settings),
            write_through=False,
        )
        assigner.restore()
        marker = settings.data_dir / INFLIGHT
        if marker.exists():  # died inside a batch: prototype statistics may lag the users
            _recount_prototypes(assigner, stores, marker)
        return cls(
            settings,
            stores=stores,
            embedder=embedder,
            assigner=assigner,
            backend=backend,
            config=config,
            refiner=_load_refiner(settings, embedder),
        )

    def reload_prototypes(self) -> None:
        """Pick up what ``pgenrm prototypes rebuild`` wrote: prototypes, clusterer, refiner.

        Under the write lock, so no feedback batch moves users between old and new prototypes.
        """
        with self._write_lock:
            self.assigner.restore()
            self.refiner = _load_refiner(self.settings, self.embedder)
            self.forget_users()

    def forget_users(self) -> None:
        """Drop the cached user states (ownership changed, or another process wrote users).

        Takes the write lock, so a batch being applied finishes first.
        """
        users = self.stores.users
        if isinstance(users, CachedUserStore):
            with self._write_lock:
                users.forget()

    @property
    def backend(self) -> GenerationBackend:
        """The generative backend, loaded on first use."""
        with self._backend_lock:
            if self._backend is None:
                from reward.backends import load_backend

                self._backend = load_backend(self.settings.models, self.settings.models_dir)
            return self._backend

    @property
    def scorer(self) -> Any:
        """The :class:`reward.scoring.ChainScorer` over :attr:`backend`."""
        if self._scorer is None:
            from reward.prompts import PromptTemplate
            from reward.scoring import ChainScorer

            m = self.settings.models
            template = PromptTemplate.load(m.template) if m.template is not None else None
            self._scorer = ChainScorer(
                self.backend,
                template=template,
                temperature=m.temperature,
                max_new_tokens=m.max_new_tokens,
                history_size=m.history_size,
                prefill=m.prefill,
                readout=m.readout,
            )
        return self._scorer

    @property
    def persona_scorer(self) -> Any:
        """A scorer sharing :attr:`backend`, capped at ``config.persona_max_new_tokens``."""
        if self._persona_scorer is None:
            from reward.scoring import ChainScorer

            base = self.scorer
            self._persona_scorer = ChainScorer(
                base.backend,
                template=base.template,
                temperature=base.temperature,
                max_new_tokens=self.config.persona_max_new_tokens,
                history_size=base.history_size,
            )
        return self._persona_scorer

    @property
    def model_id(self) -> str:
        return self._backend.model_id if self._backend is not None else self.settings.models.model

    # -- reads -----------------------------------------------------------------
    def user(self, user_id: str) -> UserState | None:
        return self.stores.users.get(user_id)

    def prototypes(self) -> list[Prototype]:
        return list(self.stores.prototypes.all())

    def persona_state(self, state: UserState) -> PersonaState:
        """The compacted PersonaState message of ``state``."""
        return PersonaState(
            user_id=state.user_id,
            history_size=state.history_size,
            events_applied=state.events_applied,
            critiques=state.critiques,
            prototype_id=state.prototype_id,
            persona=state.persona,
            criteria=state.criteria,
            version=state.version,
            updated_at=state.updated_at,
        )

    def prototype_state(self, prototype_id: int) -> PrototypeState | None:
        from prototypes.assign import to_state

        p = self.stores.prototypes.get(prototype_id)
        return to_state(p) if p is not None else None

    # -- feedback path ---------------------------------------------------------
    def apply_feedback(
        self,
        events: Sequence[FeedbackEvent],
        positions: Sequence[tuple[int, int]] | None = None,
        *,
        on_applied: Callable[[list[ApplyOutcome]], None] | None = None,
        vectors: TextVectors | None = None,
    ) -> list[ApplyOutcome]:
        """Apply a batch of feedback events, exactly once in effect (see module doc).

        ``positions[i]`` is ``(partition, offset)`` of ``events[i]`` on the
        feedback topic (None outside Kafka: then only the ledger guards).
        ``vectors`` are the batch's texts embedded beforehand
        (:meth:`embed_feedback`, the stream embeds the next batch while this one
        is applied); the texts of new events it lacks are embedded here, in one
        embedder call.
        A batch that raises leaves no in-memory effect behind (prototype
        statistics are recounted from the stored users, the clusterer and the
        combination reload their checkpoints), so retrying its events one by
        one applies each of them once.
        ``on_applied(outcomes)`` is called (in this thread, under the write
        lock) as soon as the users and prototypes are written to the store,
        before the flush and the checkpoint make them durable: the stream
        publishes the new states from there (outputs are at-least-once anyway).
        """
        if positions is not None and len(positions) != len(events):
            raise ValueError("positions must match events")
        if not events:
            return []
        with self._write_lock:
            tally = _Tally()
            try:
                outcomes = self._apply_locked(events, positions, on_applied, vectors, tally)
            except BaseException:
                if (self.settings.data_dir / INFLIGHT).exists():
                    self._roll_back_batch()
                raise
            tally.commit(self)
            return outcomes

    def _roll_back_batch(self) -> None:
        """Undo the in-memory effects of a batch that failed part way.

        What the store holds is the truth: the users written (a failure after
        their write leaves them applied, and the offset guard then classes the
        retry as a replay), the prototypes recounted from them. The clusterer
        and the combination go back to their last checkpoints, as after a crash.
        """
        log.warning("feedback batch failed; recounting prototypes from the stored users")
        users = self.stores.users
        if isinstance(users, CachedUserStore):
            users.forget()
        self.assigner.restore()
        _recount_prototypes(self.assigner, self.stores, self.settings.data_dir / INFLIGHT)
        with self._combine_lock:
            self.scaler, self.blender = _load_combine(self._combine_path)
        self.counters["feedback_batches_rolled_back"] += 1

    def embed_feedback(self, events: Sequence[FeedbackEvent]) -> TextVectors:
        """The vectors :meth:`apply_feedback` needs for ``events`` (touches no state).

        Safe to call from another thread while a batch is being applied.
        """
        return TextVectors.embed(self.embedder, feedback_texts(events))

    def _apply_locked(
        self,
        events: Sequence[FeedbackEvent],
        positions: Sequence[tuple[int, int]] | None,
        on_applied: Callable[[list[ApplyOutcome]], None] | None,
        vectors: TextVectors | None,
        tally: _Tally,
    ) -> list[ApplyOutcome]:
        from prototypes.user_update import apply_feedback, search_vector

        clock = StageClock()
        users = self.stores.users
        seen = self.stores.ledger.seen([e.event_id for e in events])
        states: dict[str, UserState] = dict(users.get_many(sorted({e.user_id for e in events})))
        clock.lap("read")
        outcomes: list[ApplyOutcome] = []
        fresh: list[int] = []
        batch_ids: set[str] = set()
        replay_ids: list[str] = []
        for i, ev in enumerate(events):
            part, off = positions[i] if positions is not None else (None, None)
            out = ApplyOutcome(ev.event_id, ev.user_id, "applied", part, off)
            st = states.get(ev.user_id)
            if (
                part is not None
                and off is not None
                and st is not None
                and st.offsets.get(part, -1) >= off
            ):
                out.status = "replay"  # checked first: a replay's id may be in the ledger
                # durable, but its states may not have been published before the crash
                out.state = st
                out.touched = [st.prototype_id] if st.prototype_id is not None else []
                replay_ids.append(ev.event_id)
            elif ev.event_id in seen or ev.event_id in batch_ids:
                out.status = "duplicate"
            else:
                fresh.append(i)
            batch_ids.add(ev.event_id)
            outcomes.append(out)

        changed: dict[str, np.ndarray | None] = {}
        marker = self.settings.data_dir / INFLIGHT
        if fresh:
            marker.touch()
            texts = feedback_texts([events[i] for i in fresh])
            if vectors is None:
                vectors = TextVectors.embed(self.embedder, texts)
            else:
                vectors.extend(self.embedder, texts)
            clock.lap("embed")
            for k, i in enumerate(fresh):
                ev = events[i]
                out = outcomes[i]
                e_query, e_chosen, e_rejected = (vectors[texts[3 * k + j]] for j in range(3))
                st = states.get(ev.user_id) or UserState(user_id=ev.user_id)
                item = HistoryItem(
                    context=list(ev.context),
                    chosen=ev.chosen,
                    rejected=ev.rejected,
                    critique=ev.critique,
                )
                st = apply_feedback(
                    st,
                    item,
                    e_chosen=e_chosen,
                    e_rejected=e_rejected,
                    e_query=e_query,
                    max_history=self.config.max_history,
                    halflife=self.config.halflife,
                )
                update: dict[str, Any] = {}
                if ev.stated_preferences:
                    update["stated_preferences"] = ev.stated_preferences
                if out.partition is not None and out.offset is not None:
                    prev = st.offsets.get(out.partition, -1)
                    update["offsets"] = {**st.offsets, out.partition: max(prev, out.offset)}
                vector = search_vector(st)
                left = st.prototype_id
                # the assigner records the assignment (prototype_id, contribution) on st
                self.assigner.assign(st, vector, e_query)
                st = st.model_copy(update=update)
                states[ev.user_id] = st
                changed[ev.user_id] = vector
                out.prototype_id = st.prototype_id
                out.touched = [p for p in (st.prototype_id, left) if p is not None]
                out.history_size = st.history_size
                out.state = st
                if ev.request_id:
                    self._record_outcome(ev, out, tally)
        if fresh and self.metarm_online is not None:  # saved before the users (see its doc)
            self.metarm_online.apply([events[i] for i in fresh], states, self.served)
        # users first (with their offsets), then ledger, prototypes, flush, clusterer:
        # a crash anywhere before the marker is removed triggers a recount on open
        clock.lap("update")
        if changed:
            users.put_many([(states[u], v) for u, v in changed.items()])
        new_ids = [events[i].event_id for i in fresh] + replay_ids
        if new_ids:
            self.stores.ledger.mark(new_ids)
        if fresh:
            self.assigner.persist()
        clock.lap("upsert")
        if on_applied is not None and (fresh or replay_ids):
            on_applied(outcomes)
            clock.lap("on_applied")
        if changed or new_ids:
            self.stores.flush()
        clock.lap("flush")
        if fresh:
            self.checkpoint()
            marker.unlink(missing_ok=True)
        clock.lap("checkpoint")
        self.last_apply_ms = clock.ms
        tally.counters.update(f"feedback_{o.status}" for o in outcomes)
        return outcomes

    def _record_outcome(self, ev: FeedbackEvent, out: ApplyOutcome, tally: _Tally) -> None:
        """Score the served reward ``ev.request_id`` against the user's choice."""
        assert ev.request_id is not None
        served = self.served.get(ev.request_id)
        if served is None or served.user_id != ev.user_id:
            tally.counters["outcomes_unknown_request"] += 1
            return
        ci, ri = served.index_of(ev.chosen), served.index_of(ev.rejected)
        if ci is None or ri is None or ci == ri:
            tally.counters["outcomes_unmatched"] += 1
            return
        outcome = _judge(served.final, ci, ri)
        out.reward_outcome = outcome
        out.reward_mode = served.mode
        tally.counters[f"outcomes_{outcome}"] += 1
        for sig, vals in served.components.items():
            tally.signal_outcomes[f"{sig}:{_judge(vals, ci, ri)}"] += 1
        if served.prototype_id is not None and outcome != "tie":
            self.assigner.record_outcome(served.prototype_id, outcome == "correct")
            out.touched.append(served.prototype_id)
        with self._combine_lock:
            self.blender.learn(served.components, self.scaler, ci, ri)
        tally.metrics.append((served.mode, outcome))

    def set_persona(
        self,
        user_id: str,
        persona: str,
        criteria: Sequence[Criterion],
        embedding: np.ndarray | None,
        version: int,
    ) -> UserState | None:
        """Store a generated persona (generated at ``version``) on the current state."""
        from prototypes.user_update import search_vector

        with self._write_lock:
            st = self.stores.users.get(user_id)
            if st is None or st.persona_version > version:
                return None
            st = st.model_copy(
                update={
                    "persona": persona,
                    "criteria": list(criteria),
                    "persona_embedding": (
                        [float(x) for x in embedding] if embedding is not None else []
                    ),
                    "persona_version": version,
                }
            )
            self.stores.users.put(st, search_vector(st))
            self.stores.flush()
            self.counters["personas_stored"] += 1
            return st

    def register_user(
        self,
        user_id: str,
        *,
        stated_preferences: str | None = None,
        prototype_id: int | None = None,
    ) -> UserState:
        """Make ``user_id`` known before any feedback (onboarding): ``prototype`` mode.

        A known user without a preference triple is scored in ``prototype`` mode
        (see :meth:`score`): ``prototype_id`` assigns them to a prototype (an
        onboarding quiz, an operator); otherwise ``stated_preferences`` route
        them at scoring time to the prototype whose members' queries are
        nearest. The assignment adds nothing to the prototype's statistics; the
        user's first feedback assigns them for real (``personal`` mode from then).

        Raises
        ------
        ProfileRejectedError
            A :class:`StreamError`: ``prototype_id`` does not exist
            (``unknown_prototype``), or the user already has history
            (``user_has_history``: their prototype follows their feedback).
        """
        from prototypes.user_update import search_vector

        with self._write_lock:
            st = self.stores.users.get(user_id) or UserState(user_id=user_id)
            update: dict[str, Any] = {"updated_at": utcnow()}
            if stated_preferences is not None and stated_preferences != st.stated_preferences:
                update["stated_preferences"] = stated_preferences
                update["version"] = st.version + 1  # the persona reads them: it is stale now
            if prototype_id is not None:
                if st.history:
                    raise ProfileRejectedError(
                        "user_has_history",
                        f"user {user_id!r} has history: its prototype follows it",
                    )
                if self.stores.prototypes.get(prototype_id) is None:
                    raise ProfileRejectedError("unknown_prototype", f"no prototype {prototype_id}")
                update["prototype_id"] = prototype_id
            st = st.model_copy(update=update)
            self.stores.users.put(st, search_vector(st))
            self.stores.flush()
            self.counters["users_registered"] += 1
            return st

    def apply_profile(self, profile: UserProfile) -> UserState | None:
        """:meth:`register_user` once per ``profile.event_id``; None for a repeated id.

        The ledger key (:func:`profile_key`) is checked before and written after
        the user, under the write lock: a duplicate changes nothing, and a crash
        between the two writes re-applies the same registration (same state).
        A rejected profile (:class:`ProfileRejectedError`) is not marked.
        """
        key = profile_key(profile.event_id)
        with self._write_lock:
            if self.stores.ledger.seen([key]):
                self.counters["profiles_duplicate"] += 1
                return None
            state = self.register_user(
                profile.user_id,
                stated_preferences=profile.stated_preferences,
                prototype_id=profile.prototype_id,
            )
            self.stores.ledger.mark([key])
            self.stores.ledger.flush()
            self.counters["profiles_applied"] += 1
            return state

    def refresh_persona(self, user_id: str) -> UserState | None:
        """Generate and store the PART 1 persona of ``user_id`` when it is stale.

        Runs the backend (slow): call it from a worker thread, never on the
        event loop. Returns the updated state, or None when nothing was due.
        """
        st = self.user(user_id)
        if st is None or not st.history or st.persona_version >= st.version:
            return None
        hist = st.history[-max(self.settings.models.history_size, 1) :]
        fut = self._gen.submit(PERSONA, self.persona_scorer.persona, hist, st.stated_preferences)
        persona, criteria = fut.result()
        if not persona:
            self.counters["persona_empty"] += 1
            return None
        emb = self.embedder.embed([persona])[0]
        return self.set_persona(user_id, persona, criteria, emb, st.version)

    def checkpoint(self) -> None:
        """Persist the clusterer and the combination's running state."""
        self.assigner.checkpoint()
        with self._combine_lock:
            _save_combine(self._combine_path, self.scaler, self.blender)

    # -- reward path -------------------------------------------------------------
    def serve(self, request: RewardRequest, *, mark: bool = True) -> RewardResult | None:
        """Answer ``request`` once: None (counted) when its id was answered before.

        The served reward is logged so later feedback can score it. With
        ``mark=False`` the caller marks the id after publishing
        (:meth:`mark_answered` when convenient, or :meth:`release` when the
        answer could not be published). The id is reserved before scoring, so
        the same id arriving twice at once (a client's retry, HTTP and Kafka)
        is answered once. The check takes no lock beyond that reservation
        (like :meth:`score`'s reads); the ledger write of ``mark=True`` takes
        the write lock, so it waits for a feedback batch being applied (the
        stream marks with ``mark=False`` and writes off the request path).
        """
        rid = request.request_id
        with self._answering_lock:
            repeated = rid in self._answering
            if not repeated:
                self._answering.add(rid)
        if repeated:
            self.counters["requests_repeated"] += 1
            return None
        try:
            if self.stores.ledger.seen([request_key(rid)]):
                self.release(rid)
                self.counters["requests_repeated"] += 1
                return None
            result = self._serve_reserved(request)
            if mark:
                self.mark_answered(rid)
        except BaseException:
            # nothing was handed out: the id may be served again (a ledger that failed
            # to say or to record whether it was answered must not refuse it forever)
            self.release(rid)
            raise
        self.counters["requests_answered"] += 1
        return result

    def _serve_reserved(self, request: RewardRequest) -> RewardResult:
        scored: list[tuple[str, ScoreResult]] = []
        result = self.score(request, chains_out=scored)
        self.served.put(
            ServedReward(
                request_id=request.request_id,
                user_id=request.user_id,
                prototype_id=result.prototype_id,
                mode=result.mode,
                combination=self._combination_used(result),
                candidates=[text_hash(c) for c in request.candidates],
                final=[s.score for s in sorted(result.scores, key=lambda s: s.index)],
                components=result.components,
            )
        )
        if self.metarm_online is not None:
            self.metarm_online.record_served(request, result, scored, generative=self.generative)
        return result

    def release(self, request_id: str) -> None:
        """Drop the reservation of an id that was not answered (it may be served again)."""
        with self._answering_lock:
            self._answering.discard(request_id)

    def mark_answered(self, request_id: str) -> None:
        """Write ``request_id`` to the ledger durably (answer-once across restarts).

        When the write fails the id stays reserved: it was handed out, so this
        process keeps refusing it (only a restart could answer it again).
        """
        with self._write_lock:
            self.stores.ledger.mark([request_key(request_id)])
            self.stores.ledger.flush()
        with self._answering_lock:
            self._answering.discard(request_id)

    @staticmethod
    def _combination_used(result: RewardResult) -> str:
        for note in result.explanation.notes:
            if note.startswith("combination="):
                return note.split("=", 1)[1]
        return "paper"

    def score(
        self,
        request: RewardRequest,
        *,
        signals: Iterable[str] | None = None,
        combination: Combination | None = None,
        chains_out: list[tuple[str, ScoreResult]] | None = None,
    ) -> RewardResult:
        """Score ``request``'s candidates (pure read; see module doc for modes).

        Parameters
        ----------
        signals
            Subset of ``{"prior", "individual", "prototype"}``; None = all that
            the settings enable (``samples``/``neighbours`` > 0).
        combination
            ``paper`` or ``blend``; None = ``settings.models.combination``.
        chains_out
            When given, ``("individual" | "prototype", ScoreResult)`` of every chain
            request is appended (the online MetaRM keeps the served chains).
        """
        t0 = time.perf_counter()
        clock = StageClock()
        how: Combination = combination or self.settings.models.combination
        wanted = set(SIGNALS) if signals is None else set(signals)
        if not wanted <= set(SIGNALS):
            raise ValueError(f"unknown signals {sorted(wanted - set(SIGNALS))}")
        ov = request.overrides
        m = ov.samples if ov and ov.samples is not None else self.settings.models.samples
        n = ov.neighbours if ov and ov.neighbours is not None else self.settings.models.neighbours
        deadline_ms = ov.deadline_ms if ov else None
        notes: list[str] = [f"combination={how}"]

        from prototypes.neighbours import find_neighbours
        from prototypes.prior import cold_start_prior, global_prior, prior_scores, user_prior
        from prototypes.user_update import search_vector

        state = self.user(request.user_id)
        personal = state is not None and state.history_size >= 1
        # a known user without history: their assigned prototype, else route by their profile
        assigned = None if state is None or personal else self._assigned_prototype(state)
        profile = None
        if state is not None and not personal and assigned is None:
            profile = state.stated_preferences or state.persona
        clock.lap("state")
        # what only the prior needs embeds in another thread while the request is routed
        # and its chains generate: a personal request routes by the user's own vector, so
        # all of it; any other routes by its query (and profile), embedded here first
        query_text = context_text(request.context)
        if personal:
            aside = self._embed_aside([query_text, *request.candidates])
        else:
            emb = self.embedder.embed([query_text, *([profile] if profile else [])])
            e_query = emb[0]
            aside = self._embed_aside(request.candidates)
        clock.lap("embed")
        proto: Prototype | None = None
        z: np.ndarray | None = None
        if personal:
            assert state is not None
            mode = "personal"
            if state.prototype_id is not None:
                proto = self.stores.prototypes.get(state.prototype_id)
            vector = search_vector(state)
        else:
            if profile:
                assigned = self._nearest_prototype(emb[1])
                if assigned is not None:
                    notes.append("prototype routed by the user's stated preferences")
            elif assigned is not None:
                notes.append("prototype assigned to the user")
            if assigned is not None:
                mode = "prototype"
                proto, z = assigned, self._prototype_prior(assigned, e_query)
                if z is None:
                    z = global_prior(self.stores.prototypes)
                    notes.append("prototype without a prior yet: global prior")
            else:
                mode = "cold_start"
                if state is not None:
                    notes.append("known user without history or profile: routed by the query")
                proto, z = cold_start_prior(self.stores.prototypes, e_query, self.refiner)
                if z is None:
                    z = global_prior(self.stores.prototypes)
                    notes.append("no prototype yet: global prior")
            vector = np.asarray(proto.centroid, dtype=np.float32) if proto is not None else None

        # -- chains: own history (m) and neighbours (n), one batched call ------------
        reqs: list[ScoreRequest] = []
        own = False
        if "individual" in wanted and personal and m > 0:
            assert state is not None
            reqs.append(self._chain_request(request, state, m))
            own = True
        nbrs: list[UserState] = []
        if "prototype" in wanted and n > 0 and vector is not None:
            found = find_neighbours(
                self.stores.users,
                state if state is not None else UserState(user_id=request.user_id),
                vector,
                proto.prototype_id if proto is not None else None,
                n,
            )
            nbrs = [u for u in found if u.history and u.user_id != request.user_id][:n]
            reqs += [self._chain_request(request, u, 1) for u in nbrs]
        clock.lap("route")
        results: list[ScoreResult] | None = None
        model_ms = 0.0
        degraded_reason: DegradedReason | None = None
        if reqs and not self.generative:
            why = f" ({self.generative_off})" if self.generative_off else ""
            notes.append(f"generative backend disabled{why}: prior only")
            if self.generative_off:  # it failed; switched off by configuration is not degraded
                degraded_reason = "backend_unavailable"
            reqs, own, nbrs = [], False, []
        if reqs:
            results, model_ms, fallback = self._generate(reqs, deadline_ms, t0)
            clock.lap("model")
            if chains_out is not None and results is not None:
                srcs = ["individual"] * int(own) + ["prototype"] * len(nbrs)
                chains_out.extend(zip(srcs, results, strict=True))
            if fallback is not None:
                degraded_reason, detail = fallback
                notes.append(f"{detail}: answered with the prior only")
        degraded = degraded_reason is not None
        cand = aside.result()
        if personal:
            assert state is not None
            e_query, cand = cand[0], cand[1:]
            z = user_prior(state, e_query, self.refiner)
        clock.lap("embed_wait")
        components: dict[str, list[float]] = {}
        if "prior" in wanted:
            if z is not None:
                components["prior"] = [float(x) for x in prior_scores(z, cand)]
            else:
                notes.append("no prior available")
        parse_failures = 0
        ties = 0
        valid = [0] * len(request.candidates)
        std: list[float | None] = [None] * len(request.candidates)
        persona: str | None = state.persona if state is not None else None
        criteria: list[Criterion] = list(state.criteria) if state is not None else []
        samples_used = 0
        neighbours_used = 0
        if results is not None:
            for r in results:
                parse_failures += r.parse_failures
                ties += r.ties
                valid = [a + b for a, b in zip(valid, r.valid, strict=True)]
            if own:
                r0 = results[0]
                filled = _fill(self._own_chain_scores(request, state, r0, notes))
                if filled is not None:
                    components["individual"] = filled
                    std = list(r0.std)
                samples_used = r0.samples
                if persona is None and r0.persona:
                    persona, criteria = r0.persona, list(r0.criteria)
            nb_scores = [f for r in results[1 if own else 0 :] if (f := _fill(r.scores))]
            if nb_scores:
                components["prototype"] = [float(x) for x in np.mean(nb_scores, axis=0)]
                neighbours_used = len(nb_scores)

        with self._combine_lock:
            if components:
                final = combine(how, components, self.scaler, self.blender)
            else:
                final = [0.0] * len(request.candidates)
                notes.append("no signal available")
            for k, v in components.items():
                self.scaler.observe(k, v)
        if top_tied(final):
            ties += 1
        rk = ranks(final)
        critiques = [h.critique for h in (state.history if state else []) if h.critique]
        notes.append(f"model_ms={model_ms:.1f}")
        waited = clock.ms.get("embed", 0.0) + clock.ms.get("embed_wait", 0.0)
        notes.append(f"embed_ms={waited:.1f}")
        latency_ms = (time.perf_counter() - t0) * 1000.0
        clock.lap("combine")
        self._local.score_ms = clock.ms
        self.counters[f"rewards_{mode}"] += 1
        if degraded:
            self.counters["rewards_degraded"] += 1
        return RewardResult(
            request_id=request.request_id,
            user_id=request.user_id,
            scores=[
                CandidateScore(
                    index=i, score=final[i], rank=rk[i], std=std[i], valid_samples=valid[i]
                )
                for i in range(len(final))
            ],
            mode=mode,  # type: ignore[arg-type]
            prototype_id=proto.prototype_id if proto is not None else None,
            samples_used=samples_used,
            neighbours_used=neighbours_used,
            parse_failures=parse_failures,
            ties=ties,
            degraded=degraded,
            degraded_reason=degraded_reason,
            components=components,
            explanation=Explanation(
                persona=persona,
                criteria=criteria,
                critique_summary=" | ".join(critiques[-3:]) or None,
                notes=notes,
            ),
            model_id=self.model_id,
            latency_ms=latency_ms,
        )

    def _embed_aside(self, texts: Sequence[str]) -> cf.Future[np.ndarray]:
        """Embed ``texts`` in a side thread (torch on one core); inline once closed.

        What only the prior needs (the candidates; a personal request's query) is needed
        after the chains: on a GPU backend its embedding is then off the request's
        critical path, and on CPU it runs beside generation instead of before it.
        """
        with self._aside_lock:
            if self._aside is None and not self._closed:
                # torch on one core: a side embedding leaves generation's thread team alone
                self._aside = cf.ThreadPoolExecutor(
                    ASIDE_THREADS,
                    thread_name_prefix="pgenrm-embed-aside",
                    initializer=_aside_thread,
                )
            pool = self._aside
        if pool is not None:
            with contextlib.suppress(RuntimeError):  # shut down meanwhile: embed here
                return pool.submit(self.embedder.embed, list(texts))
        done: cf.Future[np.ndarray] = cf.Future()
        done.set_result(self.embedder.embed(list(texts)))
        return done

    def _assigned_prototype(self, state: UserState) -> Prototype | None:
        """The prototype recorded on ``state`` when it still exists (a rebuild may drop it)."""
        if state.prototype_id is None:
            return None
        return self.stores.prototypes.get(state.prototype_id)

    def _nearest_prototype(self, e_profile: np.ndarray) -> Prototype | None:
        """The prototype whose members' queries are nearest to a user's profile text."""
        hits = self.stores.prototypes.nearest(np.asarray(e_profile), by="query_centroid", limit=1)
        return hits[0][0] if hits else None

    def _prototype_prior(self, proto: Prototype, e_query: np.ndarray) -> np.ndarray | None:
        """``z`` of ``proto`` for this query: refined when the refiner knows it, else stored."""
        if self.refiner is not None and proto.refined and self.refiner.knows(proto.prototype_id):
            z: np.ndarray = self.refiner.z_prototype(proto.prototype_id, e_query)
            return z
        return np.asarray(proto.z, dtype=np.float64) if proto.z else None

    def last_score_ms(self) -> dict[str, float]:
        """Stage timings of the latest :meth:`score` call made by this thread."""
        return dict(getattr(self._local, "score_ms", {}))

    def _own_chain_scores(
        self,
        request: RewardRequest,
        state: UserState | None,
        own: ScoreResult,
        notes: list[str],
    ) -> list[float | None]:
        """The own chains' per-candidate means, MetaRM-weighted when that is on and trained.

        With ``settings.metarm.weighted`` and a MetaRM that has seen at least one
        critique (version > 0), each valid chain counts with the MetaRM's predicted
        quality of its critique (RM-NLHF's weighting, :mod:`reward.nlhf.weighting`).
        """
        online = self.metarm_online
        if not (self.settings.metarm.weighted and online is not None and online.version > 0):
            return list(own.scores)
        if sum(1 for c in own.chains if c.ok) < 2:
            return list(own.scores)
        from reward.nlhf.weighting import metarm_weighted_scores
        from reward.prompts import format_query
        from stream.metarm_online import metarm_context

        stated = state.stated_preferences if state is not None else None
        weighted = metarm_weighted_scores(
            own,
            online,
            context=metarm_context(format_query(request.context), stated),
            candidates=request.candidates,
        )
        notes.append(f"metarm_weighted=v{online.version}")
        self.counters["rewards_metarm_weighted"] += 1
        return weighted

    def _chain_request(self, request: RewardRequest, owner: UserState, m: int) -> ScoreRequest:
        h = self.settings.models.history_size
        return ScoreRequest(
            user_id=owner.user_id,
            history=owner.history[-h:] if h > 0 else [],
            stated_preferences=owner.stated_preferences,
            context=list(request.context),
            candidates=list(request.candidates),
            samples=max(m, 1),
        )

    def _generate(
        self, reqs: list[ScoreRequest], deadline_ms: int | None, t0: float
    ) -> tuple[list[ScoreResult] | None, float, tuple[DegradedReason, str] | None]:
        """Run the chains in the generation thread; give up at the deadline.

        Returns the results, the model time and, when there are no results,
        why and a note saying so (the request is then answered from the prior,
        marked degraded).
        """
        chains = sum(r.samples for r in reqs)
        remaining_s: float | None = None
        if deadline_ms is not None:
            remaining_s = deadline_ms / 1000.0 - (time.perf_counter() - t0)
            estimate = (self._ms_per_chain or 0.0) * chains / 1000.0
            if remaining_s <= 0 or estimate > remaining_s:
                self.counters["deadline_skipped"] += 1
                if self._ms_per_chain is not None:
                    # the estimate is only re-measured by a run: let it decay so one
                    # slow run (a cold start) cannot skip every later request forever
                    self._ms_per_chain *= SKIP_DECAY
                return None, 0.0, ("deadline", "deadline")
        try:
            scorer = self.scorer  # load the backend outside the deadline clock's wait
        except Exception as exc:
            self.backend_failed(exc)
            return None, 0.0, ("backend_unavailable", "generative backend unavailable")

        def run() -> tuple[list[ScoreResult], float]:
            g0 = time.perf_counter()
            res = scorer.score_many(reqs)
            return res, (time.perf_counter() - g0) * 1000.0

        fut = self._gen.submit(REWARD, run)
        try:
            res, ms = fut.result(timeout=remaining_s)
        except cf.TimeoutError:
            self.counters["deadline_abandoned"] += 1
            if not fut.cancel():  # already running: its time still measures the model
                fut.add_done_callback(lambda f: self._measured(f, chains))
            return None, 0.0, ("deadline", "deadline")
        except Exception as exc:
            self.counters["generation_errors"] += 1
            log.exception("chain generation failed: %s", exc)
            return None, 0.0, ("generation_failed", f"generation failed ({type(exc).__name__})")
        self._note_chain_ms(ms, chains)
        return res, ms, None

    def _measured(self, fut: cf.Future[tuple[list[ScoreResult], float]], chains: int) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._note_chain_ms(fut.result()[1], chains)

    def _note_chain_ms(self, ms: float, chains: int) -> None:
        per = ms / max(chains, 1)
        old = self._ms_per_chain
        self._ms_per_chain = per if old is None else 0.8 * old + 0.2 * per

    def backend_failed(self, exc: Exception) -> None:
        """The backend cannot load: serve prior-only from now on and say why."""
        log.error("generative backend unavailable, rewards are prior-only: %s", exc)
        self.counters["backend_unavailable"] += 1
        self.generative = False
        self.generative_off = f"{type(exc).__name__}: {exc}"

    # -- lifecycle ----------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._gen.shutdown()
        with self._aside_lock:
            if self._aside is not None:
                self._aside.shutdown(wait=True)
        try:
            with self._write_lock:
                self.checkpoint()
                self.stores.flush()
        finally:
            self.served.close()
            if self.metarm_online is not None:
                self.metarm_online.close()
            self.stores.close()

    def __enter__(self) -> PgenrmService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SKIP_DECAY = 0.9
"""Factor on the per-chain time estimate at each deadline skip (a skip measures nothing)."""

ASIDE_THREADS = 2
"""Threads embedding requests' candidates beside generation (requests served at once)."""


def _judge(scores: Sequence[float], chosen: int, rejected: int) -> Outcome:
    """Did ``scores`` put ``chosen`` above ``rejected``?

    >>> _judge([2.0, 1.0], 0, 1), _judge([1.0, 2.0], 0, 1), _judge([1.0, 1.0], 0, 1)
    ('correct', 'incorrect', 'tie')
    """
    a, b = scores[chosen], scores[rejected]
    return "tie" if a == b else ("correct" if a > b else "incorrect")


@dataclass
class _Tally:
    """What a feedback batch adds to the service's counters, added once it succeeded."""

    counters: Counter[str] = field(default_factory=Counter)
    signal_outcomes: Counter[str] = field(default_factory=Counter)
    metrics: list[tuple[str, Outcome]] = field(default_factory=list)
    """``(mode, outcome)`` per revealed outcome, for the Prometheus counter."""

    def commit(self, svc: PgenrmService) -> None:
        svc.counters.update(self.counters)
        svc.signal_outcomes.update(self.signal_outcomes)
        if not self.metrics:
            return
        try:
            from infra.metrics import observe_outcome
        except ImportError:  # pragma: no cover
            return
        for mode, outcome in self.metrics:
            observe_outcome(mode, outcome)


def _recount_prototypes(assigner: PrototypeAssigner, stores: Stores, marker: Path) -> None:
    """Bring prototype statistics back in line with the stored users, then clear ``marker``.

    After a crash inside a batch (on open) and after a batch that raised.
    """
    assigner.recount(stores.users)
    stores.flush()
    marker.unlink(missing_ok=True)


def _load_combine(path: Path) -> tuple[SignalScaler, Blender]:
    if path.is_file():
        try:
            obj = pickle.loads(path.read_bytes())
            return obj["scaler"], obj["blender"]
        except Exception as exc:  # a corrupt checkpoint must not stop the service
            log.warning("ignoring unreadable %s: %s", path, exc)
    return SignalScaler(), Blender()


def _save_combine(path: Path, scaler: SignalScaler, blender: Blender) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({"scaler": scaler, "blender": blender}))
    tmp.replace(path)


__all__ = ["ApplyOutcome", "PgenrmService", "StreamError", "profile_key", "request_key"]


def _load_refiner(settings: Settings, embedder: Any) -> Any:
    """The refined prior written by ``pgenrm prototypes rebuild``, or None before any rebuild."""
    from prototypes.rebuild import refiner_path

    if not refiner_path(settings).is_file():
        return None
    from prototypes.prior import RefinedPrior
    from prototypes.refine import Refiner

    return RefinedPrior(Refiner.load(refiner_path(settings)), embedder)


def _aside_thread() -> None:
    """Side-embedding threads: torch on one core, leaving generation's thread team alone."""
    from infra.hardware import name_os_thread
    from prototypes.embedder import one_torch_thread

    one_torch_thread()
    name_os_thread()
