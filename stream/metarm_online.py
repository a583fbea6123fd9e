"""The MetaRM updated online from the feedback stream (RM-NLHF's update-then-use).

The reward path keeps the evaluation chains it generated for each served request
(:meth:`OnlineMetaRM.record_served`, bounded, in ``<data_dir>/served_chains.sqlite``).
When a :class:`~infra.contracts.FeedbackEvent` with a critique names such a request
(``request_id``), each kept chain becomes one :class:`~reward.nlhf.metarm.MetaRMExample`
as :mod:`reward.nlhf.metarm` specifies:

- ``context``: the served conversation (:func:`reward.prompts.format_query`) plus the
  user's stated preferences, if any;
- ``response_a``/``response_b``: the event's two candidates in the served request's
  order (A is the one with the lower request index);
- ``critique``: :func:`~reward.nlhf.verdict.critique_from_chain` of the chain, its slot
  names mapped to A/B (slots showing other candidates keep their number);
- ``label``: :func:`~reward.nlhf.metarm.label_example`, i.e. y = o + 0.5 q with o the
  chain's verdict on the pair and q the matcher's core-argument F1 >= 0.5 against the
  event's critique; chains that failed to parse are not trained on.

All examples of one feedback batch are one :meth:`~reward.nlhf.metarm.MetaRM.update`
(so the version rises by one per batch with examples), taken *before* the batch's
users are written; the new version is then saved and used by every later prediction.

Nothing is skipped silently: each event with a critique lands in exactly one of the
``metarm_*`` counters of :data:`OUTCOMES` (``metarm_trained`` or a ``metarm_skipped_*``
reason), and :meth:`OnlineMetaRM.stats` reports version, updates and examples.

Exactly-once in effect
----------------------
The service hands over only fresh events (its ledger and offset guard drop
duplicates and replays). For a crash between saving the MetaRM and writing the
batch's users, each saved version also lists the event ids it was trained on
(the newest :data:`APPLIED_IDS_KEPT`); a re-applied event found there is counted
``metarm_skipped_already_applied`` and not trained on again.

Persistence
-----------
``<data_dir>/metarm/v<version>/`` holds :meth:`MetaRM.save`'s files plus
``applied.json``; ``<data_dir>/metarm/CURRENT`` names the live version and is
replaced atomically after the folder is complete, so a crash mid-save leaves the
previous version live. The newest ``keep_versions`` folders are kept.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.contracts import FeedbackEvent, RewardRequest, RewardResult
from infra.settings import MetaRMSettings
from reward.nlhf.exceptions import MetaRMError
from reward.nlhf.metarm import MetaRM, MetaRMExample, label_example
from reward.nlhf.rows import NlhfRow
from reward.nlhf.verdict import Verdict, critique_from_chain
from reward.prompts import format_query
from stream.served import (
    CHAIN_TEXT_MAX,
    MissingChains,
    ServedChain,
    ServedChainLog,
    ServedChains,
    text_hash,
)

if TYPE_CHECKING:
    from prototypes.protocol import Embedder, UserState
    from reward.nlhf.matchers import ArgumentMatcher
    from reward.protocol import ScoreResult

log = logging.getLogger(__name__)

APPLIED_IDS_KEPT = 10_000
"""Event ids remembered per saved version (covers the batch in flight at a crash)."""

OUTCOMES = (
    "trained",
    "skipped_no_request_id",
    "skipped_unknown_request",
    "skipped_no_chain",
    "skipped_unmatched",
    "skipped_invalid_chains",
    "skipped_already_applied",
)
"""Where an event with a critique ends up (``metarm_<outcome>`` counters)."""

try:  # /metrics: same registry as infra.metrics
    from prometheus_client import Counter as _PCounter
    from prometheus_client import Gauge as _PGauge

    METARM_VERSION = _PGauge("pgenrm_metarm_version", "Version of the online MetaRM.")
    METARM_EXAMPLES = _PCounter(
        "pgenrm_metarm_examples", "Examples the online MetaRM was updated on."
    )
    METARM_EVENTS = _PCounter(
        "pgenrm_metarm_events",
        "Feedback events with a critique, by what the online MetaRM did with them.",
        ["outcome"],
    )
except ImportError:  # pragma: no cover
    METARM_VERSION = METARM_EXAMPLES = METARM_EVENTS = None  # type: ignore[assignment]


def metarm_context(conversation: str, stated_preferences: str | None) -> str:
    """The MetaRM's ``context``: the conversation, then the stated preferences if any.

    >>> metarm_context("Pick a hotel", " quiet places "), metarm_context("Pick a hotel", None)
    ('Pick a hotel\\nStated preferences: quiet places', 'Pick a hotel')
    """
    if stated_preferences and stated_preferences.strip():
        return f"{conversation}\nStated preferences: {stated_preferences.strip()}"
    return conversation


def served_chains(
    request: RewardRequest,
    result: RewardResult,
    scored: Sequence[tuple[str, ScoreResult]],
    *,
    max_chains: int,
    generative: bool = True,
) -> ServedChains:
    """What to keep of a served request's chains (own-history chains first, ``max_chains``).

    ``generative`` says whether the service generates chains at all; it names
    why a request without a fallback reason has none.
    """
    chains: list[ServedChain] = []
    for source in ("individual", "prototype"):
        for src, res in scored:
            if src != source:
                continue
            for ch in res.chains:
                chains.append(
                    ServedChain(
                        source=source,
                        text=ch.text[:CHAIN_TEXT_MAX],
                        order=list(ch.order),
                        ok=ch.ok,
                        scores=list(ch.scores) if ch.scores is not None else None,
                        failure=ch.failure,
                    )
                )
    chains = chains[:max_chains]
    missing: MissingChains | None = None
    if not chains:
        if result.degraded_reason is not None:
            missing = result.degraded_reason
        elif not generative:
            missing = "generative_disabled"
        else:
            missing = "not_requested"
    return ServedChains(
        request_id=request.request_id,
        user_id=request.user_id,
        context=format_query(request.context),
        chains=chains,
        missing=missing,
    )


def pair_verdict(chain: ServedChain, ia: int, ib: int) -> Verdict:
    """The chain's verdict on the pair (request indices ``ia`` = A, ``ib`` = B).

    The critique is the chain's prose with the slots showing ``ia``/``ib`` named
    "Response A"/"Response B"; the choice is the higher of the two scores (a tie
    chooses nothing, so the verdict is wrong). A chain that did not parse has an
    invalid format.

    >>> ch = ServedChain(source="individual", text="Response 1 is calm. Response 2 is loud.",
    ...                  order=[2, 0, 1], ok=True, scores=[3.0, 5.0, 7.0])
    >>> v = pair_verdict(ch, 0, 2)
    >>> v.format_ok, v.choice, v.critique
    (True, 'B', 'Response B is calm. Response A is loud.')
    """
    order = [0 if k == ia else (1 if k == ib else -1) for k in (chain.order or [ia, ib])]
    critique = critique_from_chain(chain.text, order)
    scores = chain.scores
    if not chain.ok or scores is None or max(ia, ib) >= len(scores):
        return Verdict(False, None, critique, chain.failure or "unparsed")
    a, b = scores[ia], scores[ib]
    choice = "A" if a > b else ("B" if b > a else None)
    return Verdict(True, choice, critique, None if choice else "tie")  # type: ignore[arg-type]


def event_examples(
    ev: FeedbackEvent,
    served: ServedChains,
    candidates: Sequence[str],
    matcher: ArgumentMatcher,
    stated_preferences: str | None = None,
) -> tuple[list[MetaRMExample], str | None]:
    """The MetaRM examples of ``ev`` against the chains of the request it names.

    ``candidates`` are the served request's candidate hashes
    (:func:`stream.served.text_hash`). Returns the examples and, when there are
    none, the ``skipped_*`` outcome that says why.
    """
    ci = next((i for i, h in enumerate(candidates) if h == text_hash(ev.chosen)), None)
    ri = next((i for i, h in enumerate(candidates) if h == text_hash(ev.rejected)), None)
    if ci is None or ri is None or ci == ri:
        return [], "skipped_unmatched"
    if not served.chains:
        return [], "skipped_no_chain"
    ia, ib = min(ci, ri), max(ci, ri)
    a_text, b_text = (ev.chosen, ev.rejected) if ia == ci else (ev.rejected, ev.chosen)
    row = NlhfRow(
        context=metarm_context(served.context, stated_preferences),
        response_a=a_text,
        response_b=b_text,
        winner="A" if ia == ci else "B",
        human_critique=ev.critique,
        user_id=ev.user_id,
        row_id=ev.event_id,
    )
    out = []
    for ch in served.chains:
        ex = label_example(row, pair_verdict(ch, ia, ib), matcher)
        if ex is not None:
            out.append(ex)
    return out, (None if out else "skipped_invalid_chains")


class OnlineMetaRM:
    """The service's MetaRM, its served-chain log and its versioned folder.

    Parameters
    ----------
    data_dir:
        The service's state folder (``metarm/`` and ``served_chains.sqlite`` go there).
    embedder:
        The service's unit-norm embedder (MetaRM features and the matcher).
    settings:
        :class:`~infra.settings.MetaRMSettings`.
    counters:
        The service's counters (``metarm_*`` keys are added).
    """

    def __init__(
        self,
        data_dir: Path,
        embedder: Embedder,
        settings: MetaRMSettings,
        counters: Counter[str],
    ) -> None:
        self.root = data_dir / "metarm"
        self.embedder = embedder
        self.settings = settings
        self.counters = counters
        self.chains = ServedChainLog(
            data_dir / "served_chains.sqlite", max_rows=settings.chain_rows
        )
        self._lock = threading.RLock()
        self._model: MetaRM | None = None
        self._matcher: ArgumentMatcher | None = None
        self._applied: deque[str] = deque(maxlen=APPLIED_IDS_KEPT)
        self._applied_set: set[str] = set()
        if (self.root / "CURRENT").is_file():  # report the persisted version at start
            self.model  # noqa: B018

    # -- model -----------------------------------------------------------------
    @property
    def model(self) -> MetaRM:
        """The live MetaRM (loaded from ``CURRENT``, or fresh on first use)."""
        with self._lock:
            if self._model is None:
                self._model = self._load() or MetaRM(self.embedder, seed=0)
                self._publish()
            return self._model

    @property
    def matcher(self) -> ArgumentMatcher:
        if self._matcher is None:
            from reward.nlhf.matchers import EmbeddingMatcher

            self._matcher = EmbeddingMatcher(self.embedder)
        return self._matcher

    @property
    def version(self) -> int:
        return self._model.version if self._model is not None else 0

    def predict(self, context: str, response_a: str, response_b: str, critique: str) -> float:
        """The live MetaRM's predicted composite label (thread-safe; the *used* side)."""
        with self._lock:
            return self.model.predict(context, response_a, response_b, critique)

    def stats(self) -> dict[str, Any]:
        """Version, updates, examples and the ``metarm_*`` counters."""
        m = self._model
        return {
            "version": m.version if m is not None else 0,
            "updates": m.updates if m is not None else 0,
            "examples_seen": m.examples_seen if m is not None else 0,
            "last_loss": m.last_loss if m is not None else None,
            **{o: self.counters[f"metarm_{o}"] for o in OUTCOMES},
        }

    # -- reward path -----------------------------------------------------------
    def record_served(
        self,
        request: RewardRequest,
        result: RewardResult,
        scored: Sequence[tuple[str, ScoreResult]],
        *,
        generative: bool = True,
    ) -> None:
        """Keep the chains of a served request (or why it has none)."""
        rec = served_chains(
            request, result, scored, max_chains=self.settings.max_chains, generative=generative
        )
        self.chains.put(rec)
        self.counters["metarm_chains_kept"] += len(rec.chains)

    # -- feedback path ---------------------------------------------------------
    def apply(
        self,
        events: Sequence[FeedbackEvent],
        states: Mapping[str, UserState],
        served: Any,
    ) -> int:
        """Update the MetaRM from the fresh ``events`` with a critique; returns examples used.

        ``served`` is the service's :class:`~stream.served.ServedLog` (candidate
        hashes and owner of each served request). Call before the batch's users
        are written (see module doc).
        """
        batch: list[MetaRMExample] = []
        ids: list[str] = []
        for ev in events:
            if not (ev.critique and ev.critique.strip()):
                continue
            outcome = self._examples(ev, states, served, batch)
            if outcome == "trained":
                ids.append(ev.event_id)
            self._count(outcome)
        if batch:
            with self._lock:
                model = self.model
                model.update(batch)
                for i in ids:
                    self._remember(i)
                self._save(model)
                self._publish()
            self.counters["metarm_examples"] += len(batch)
            if METARM_EXAMPLES is not None:
                METARM_EXAMPLES.inc(len(batch))
        return len(batch)

    def _examples(
        self,
        ev: FeedbackEvent,
        states: Mapping[str, UserState],
        served: Any,
        batch: list[MetaRMExample],
    ) -> str:
        if not ev.request_id:
            return "skipped_no_request_id"
        if ev.event_id in self._applied_set:  # loaded with the saved version at start
            return "skipped_already_applied"
        reward = served.get(ev.request_id)
        rec = self.chains.get(ev.request_id)
        if reward is None or reward.user_id != ev.user_id:
            return "skipped_unknown_request"
        if rec is None:  # served, but its chains were evicted or never kept
            self.counters["metarm_no_chain_not_kept"] += 1
            return "skipped_no_chain"
        st = states.get(ev.user_id)
        stated = ev.stated_preferences or (st.stated_preferences if st is not None else None)
        exs, why = event_examples(ev, rec, reward.candidates, self.matcher, stated)
        if why is not None:
            if why == "skipped_no_chain" and rec.missing:
                self.counters[f"metarm_no_chain_{rec.missing}"] += 1
            return why
        batch.extend(exs)
        return "trained"

    def _count(self, outcome: str) -> None:
        self.counters[f"metarm_{outcome}"] += 1
        if METARM_EVENTS is not None:
            METARM_EVENTS.labels(outcome=outcome).inc()

    def _remember(self, event_id: str) -> None:
        if len(self._applied) == self._applied.maxlen:
            self._applied_set.discard(self._applied[0])
        self._applied.append(event_id)
        self._applied_set.add(event_id)

    def _publish(self) -> None:
        m = self._model
        if m is None:
            return
        self.counters["metarm_version"] = m.version
        self.counters["metarm_updates"] = m.updates
        if METARM_VERSION is not None:
            METARM_VERSION.set(m.version)

    # -- persistence -----------------------------------------------------------
    def _load(self) -> MetaRM | None:
        cur = self.root / "CURRENT"
        if not cur.is_file():
            return None
        folder = self.root / cur.read_text().strip()
        try:
            model = MetaRM.load(folder, self.embedder)
        except MetaRMError as exc:  # an unreadable MetaRM must not stop the service
            log.warning("starting a fresh online MetaRM: %s", exc)
            self.counters["metarm_load_failed"] += 1
            return None
        applied = folder / "applied.json"
        if applied.is_file():
            for i in json.loads(applied.read_text()):
                self._remember(str(i))
        log.info("online MetaRM version %d loaded from %s", model.version, folder)
        return model

    def _save(self, model: MetaRM) -> Path:
        name = f"v{model.version:08d}"
        folder = self.root / name
        if folder.exists():
            shutil.rmtree(folder)
        model.save(folder)
        (folder / "applied.json").write_text(json.dumps(list(self._applied)))
        tmp = self.root / "CURRENT.tmp"
        tmp.write_text(name)
        tmp.replace(self.root / "CURRENT")
        keep = self.settings.keep_versions
        old = sorted(p for p in self.root.glob("v*") if p.is_dir() and p.name != name)
        for p in old[: max(len(old) - (keep - 1), 0)]:
            shutil.rmtree(p, ignore_errors=True)
        return folder

    def versions(self) -> list[int]:
        """Saved versions on disk, oldest first."""
        return sorted(int(p.name[1:]) for p in self.root.glob("v*") if p.is_dir())

    def close(self) -> None:
        self.chains.close()
