"""The resumable evaluation runner.

:class:`EvalRunner` opens a fresh service on a temporary store, feeds every
user's history through ``apply_feedback`` (the service's own code path),
rebuilds the prototypes, then scores each (scorer, mode, m, n, pair) task
through ``service.score`` and appends one record per finished task to
``OUT/progress.jsonl`` (see :mod:`stream.evaluation.progress`).

Each pair is asked in a deterministic pseudo-random candidate order (the
aligned answer first for about half the pairs, so a position bias cannot pass
for accuracy), and with ``swap`` also in the opposite order.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from infra.contracts import FeedbackEvent, RewardOverrides, RewardRequest, RewardResult
from stream.evaluation.dataset import EvalDataset, TestPair
from stream.evaluation.exceptions import EvaluationError
from stream.evaluation.metrics import outcome
from stream.evaluation.modes import CHAIN_SCORERS, MODES, applies, spec_for, user_for
from stream.evaluation.progress import ProgressLog, task_key
from stream.evaluation.service import (
    EvalService,
    ServiceFactory,
    rebuild_prototypes,
    score_request,
)

FEED_BATCH = 256


@dataclass(frozen=True)
class Task:
    scorer: str
    mode: str
    m: int | None
    n: int | None
    pair: TestPair

    @property
    def key(self) -> str:
        return task_key(self.scorer, self.mode, self.m, self.n, self.pair.pair_id)


def aligned_first(pair_id: str) -> bool:
    """Deterministic coin flip: is the aligned answer shown first?

    >>> aligned_first("a") == aligned_first("a")
    True
    """
    return hashlib.sha1(pair_id.encode()).digest()[0] % 2 == 0


@dataclass
class RunPlan:
    """What to score."""

    scorers: Sequence[str] = ("prior",)
    modes: Sequence[str] = MODES
    samples: Sequence[int] = (1,)
    neighbours: Sequence[int] = (0, 1)
    chain_limit: int | None = 1
    """Pairs (a prefix of the selected ones) for the generative scorers (CPU: ~30 s a chain)."""
    swap: bool = True
    swap_chains: bool = False
    """Swap for the generative scorers too. Off by default: ``ChainScorer`` already shows
    both orders at m = 1 (rotations for larger m), so a second request doubles CPU time."""
    rebuild: bool = True
    prototypes: int = 50
    """k of the K-means bootstrap (the paper's 50; clamped to the number of users)."""
    feed_all: bool = True
    """Feed every user of the dataset (the population prototypes and neighbours need);
    False feeds only the users of the selected pairs (fast; for prior-only checks)."""
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def grid(self) -> list[tuple[int, int]]:
        return [(m, n) for m in self.samples for n in self.neighbours if (m, n) != (0, 0)]


def plan_tasks(pairs: Sequence[TestPair], plan: RunPlan) -> list[Task]:
    """Every task of ``plan`` over ``pairs``, in run order.

    >>> p = [TestPair(f"p{i}", "u", "q", "a", "b", "t") for i in range(3)]
    >>> len(plan_tasks(p, RunPlan(scorers=["prior"])))
    12
    >>> len(plan_tasks(p, RunPlan(scorers=["chain"], modes=["personalized"], chain_limit=2,
    ...                           samples=[1, 2], neighbours=[0])))
    6
    """
    tasks: list[Task] = []
    for scorer in plan.scorers:
        chain = scorer in CHAIN_SCORERS
        subset = list(pairs[: plan.chain_limit] if chain and plan.chain_limit else pairs)
        for mode in plan.modes:
            if not applies(scorer, mode):
                continue
            tasks.extend(Task(scorer, mode, None, None, p) for p in subset)
        if applies(scorer, "grid"):
            for m, n in plan.grid():
                tasks.extend(Task(scorer, "grid", m, n, p) for p in subset)
    return tasks


def _order_record(
    result: RewardResult, a_idx: int, latency_ms: float, signals: frozenset[str]
) -> dict[str, Any]:
    """One order's evidence. When none of the requested ``signals`` produced a score
    (every chain failed to parse, no prior), the final scores the service filled in
    are kept under ``final`` but the pair counts as a failure, not a tie."""
    o_idx = 1 - a_idx
    by_index = {c.index: c.score for c in result.scores}
    comps = {
        k: [v[a_idx], v[o_idx]] for k, v in result.components.items() if len(v) > max(a_idx, o_idx)
    }
    scored = bool(signals & set(comps))
    return {
        "aligned": by_index.get(a_idx) if scored else None,
        "other": by_index.get(o_idx) if scored else None,
        "final": [by_index.get(a_idx), by_index.get(o_idx)],
        "components": comps,
        "served_mode": result.mode,
        "prototype_id": result.prototype_id,
        "parse_failures": result.parse_failures,
        "ties": result.ties,
        "samples_used": result.samples_used,
        "neighbours_used": result.neighbours_used,
        "degraded": result.degraded,
        "model_id": result.model_id,
        "notes": list(result.explanation.notes),
        "service_latency_ms": result.latency_ms,
        "latency_ms": round(latency_ms, 3),
        "error": None,
    }


class EvalRunner:
    """Runs (or resumes) one evaluation into ``out``.

    Parameters
    ----------
    dataset
        The loaded dataset (every user is fed, so prototypes see the population).
    pairs
        The selected test pairs.
    out
        Output folder holding ``progress.jsonl`` and ``run.json``.
    factory
        Opens a fresh service on a given store folder.
    store_parent
        Where the run's temporary store folder is made (default: the system temp dir);
        it is deleted at the end unless ``keep_store``.
    plan
        Scorers, modes, grid.
    config
        The run's identity, stored in ``run.json`` and checked on resume.
    """

    def __init__(
        self,
        dataset: EvalDataset,
        pairs: Sequence[TestPair],
        *,
        out: Path,
        factory: ServiceFactory,
        plan: RunPlan,
        config: dict[str, Any],
        console: Console | None = None,
        store_parent: Path | None = None,
        keep_store: bool = False,
    ) -> None:
        self.dataset = dataset
        self.pairs = list(pairs)
        self.out = Path(out)
        self.factory = factory
        self.plan = plan
        self.config = config
        self.console = console or Console(stderr=True)
        self.store_parent = store_parent
        self.keep_store = keep_store
        self.log = ProgressLog(self.out)
        self.errors = 0

    # -- setup -----------------------------------------------------------------
    def _events(self, tasks: Sequence[Task]) -> list[FeedbackEvent]:
        """The dataset users' histories (all, or the selected pairs' users)."""
        wanted = {t.pair.user_id for t in tasks}
        return [
            ev
            for u in self.dataset.users.values()
            if self.plan.feed_all or u.user_id in wanted
            for ev in u.history
        ]

    def _sparse_events(self, tasks: Sequence[Task]) -> list[FeedbackEvent]:
        """One event per sparse-mode user: the first triple, under a fresh user id."""
        events: list[FeedbackEvent] = []
        sparse_users = sorted({t.pair.user_id for t in tasks if t.mode == "sparse"})
        for uid in sparse_users:
            user = self.dataset.users.get(uid)
            if user and user.history:
                first = user.history[0]
                events.append(
                    first.model_copy(
                        update={
                            "user_id": user_for("sparse", uid),
                            "event_id": "sparse:" + first.event_id,
                        }
                    )
                )
        return events

    def _feed(
        self,
        service: EvalService,
        events: Sequence[FeedbackEvent],
        progress: Progress,
        label: str,
        outcomes: dict[str, int],
    ) -> None:
        bar = progress.add_task(label, total=len(events))
        for i in range(0, len(events), FEED_BATCH):
            batch = events[i : i + FEED_BATCH]
            for res in service.apply_feedback(batch):
                name = str(getattr(res, "status", None) or "ok")
                outcomes[name] = outcomes.get(name, 0) + 1
            progress.advance(bar, len(batch))
        progress.remove_task(bar)

    def _setup(
        self, service: EvalService, tasks: Sequence[Task], progress: Progress
    ) -> dict[str, Any]:
        """Feed the histories, rebuild the prototypes, then feed the sparse users."""
        events = self._events(tasks)
        sparse = self._sparse_events(tasks)
        outcomes: dict[str, int] = {}
        t0 = time.perf_counter()
        self._feed(service, events, progress, "feeding histories", outcomes)
        feed_s = time.perf_counter() - t0
        rebuild: dict[str, Any] = {"how": "skipped"}
        t1 = time.perf_counter()
        if self.plan.rebuild:
            self.console.print("rebuilding prototypes (K-means + refinement)")
            rebuild = rebuild_prototypes(service, k=self.plan.prototypes, seed=self.plan.seed)
        rebuild_s = time.perf_counter() - t1
        # Sparse users arrive after the rebuild, like new users joining a running service.
        self._feed(service, sparse, progress, "feeding sparse users", outcomes)
        return {
            "events_fed": len(events) + len(sparse),
            "apply_outcomes": outcomes,
            "feed_s": round(feed_s, 3),
            "rebuild": rebuild,
            "rebuild_s": round(rebuild_s, 3),
        }

    # -- scoring ---------------------------------------------------------------
    def score_task(self, service: EvalService, task: Task) -> dict[str, Any]:
        """Score one task (both orders with ``swap``) and build its record."""
        spec = spec_for(task.scorer, task.mode)
        if task.mode == "grid":  # a side switched off by m = 0 or n = 0 is not expected to score
            off = {"individual"} if task.m == 0 else set()
            off |= {"prototype"} if task.n == 0 else set()
            spec = replace(spec, signals=spec.signals - off)
        pair = task.pair
        asked_as = user_for(task.mode, pair.user_id)
        overrides = (
            RewardOverrides(samples=task.m, neighbours=task.n) if task.mode == "grid" else None
        )
        first = aligned_first(pair.pair_id)
        both = self.plan.swap and (task.scorer not in CHAIN_SCORERS or self.plan.swap_chains)
        orders = [first, not first] if both else [first]
        per_order: list[dict[str, Any]] = []
        for k, af in enumerate(orders):
            candidates = [pair.aligned, pair.other] if af else [pair.other, pair.aligned]
            rid = "eval-" + hashlib.sha1(f"{task.key}|{k}".encode()).hexdigest()[:24]
            request = RewardRequest(
                request_id=rid,
                user_id=asked_as,
                context=pair.messages(),
                candidates=candidates,
                overrides=overrides,
            )
            t0 = time.perf_counter()
            try:
                result = score_request(
                    service,
                    request,
                    mode=task.mode,
                    scorer=task.scorer,
                    signals=set(spec.signals),
                    combination=spec.combination,
                )
                rec = _order_record(
                    result, 0 if af else 1, (time.perf_counter() - t0) * 1e3, spec.signals
                )
            except Exception as exc:  # counted as a failure, never dropped
                self.errors += 1
                rec = {
                    "aligned": None,
                    "other": None,
                    "components": {},
                    "latency_ms": round((time.perf_counter() - t0) * 1e3, 3),
                    "error": f"{type(exc).__name__}: {exc}"[:500],
                }
            rec["aligned_first"] = af
            per_order.append(rec)
        main = per_order[0]
        swap = per_order[1] if len(per_order) > 1 else None
        return {
            "key": task.key,
            "scorer": task.scorer,
            "mode": task.mode,
            "m": task.m,
            "n": task.n,
            "pair_id": pair.pair_id,
            "user_id": pair.user_id,
            "asked_as": asked_as,
            "topic": pair.topic,
            "signals": sorted(spec.signals),
            "combination": spec.combination,
            "prototype_id": main.get("prototype_id"),
            "served_mode": main.get("served_mode"),
            "outcome": outcome(main["aligned"], main["other"]),
            "swap_outcome": outcome(swap["aligned"], swap["other"]) if swap else None,
            "component_outcomes": {
                k: outcome(v[0], v[1]) for k, v in main.get("components", {}).items()
            },
            "parse_failures": sum(int(o.get("parse_failures") or 0) for o in per_order),
            "result_ties": sum(int(o.get("ties") or 0) for o in per_order),
            "latency_ms": round(sum(float(o["latency_ms"]) for o in per_order), 3),
            "orders": per_order,
        }

    # -- driver ----------------------------------------------------------------
    def run(self, *, restart: bool = False) -> list[dict[str, Any]]:
        """Score every task not yet in the progress log; return all records of this plan."""
        done = self.log.open(self.config, restart=restart)
        tasks = plan_tasks(self.pairs, self.plan)
        todo = [t for t in tasks if t.key not in done]
        self.console.print(
            f"{len(tasks)} tasks, {len(tasks) - len(todo)} already done"
            + (f", {self.log.corrupt_lines} unreadable log lines" if self.log.corrupt_lines else "")
        )
        if todo:
            self._run_todo(todo)
        done = self.log.read()
        return [done[t.key] for t in tasks if t.key in done]

    def _run_todo(self, todo: Sequence[Task]) -> None:
        from stream.evaluation.service import temp_data_dir

        store = temp_data_dir(self.store_parent)
        started = datetime.now(UTC).isoformat()
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        service: EvalService | None = None
        session: dict[str, Any] = {"started": started, "host": platform.node(), "tasks": len(todo)}
        try:
            with Progress(*columns, console=self.console, transient=False) as progress:
                t0 = time.perf_counter()
                service = self.factory(store)
                session["open_s"] = round(time.perf_counter() - t0, 3)
                session.update(self._setup(service, todo, progress))
                bar = progress.add_task("scoring", total=len(todo))
                attempted = 0
                t_score = time.perf_counter()
                for task in todo:
                    label = task.scorer + "/" + task.mode
                    if task.mode == "grid":
                        label += f" m={task.m} n={task.n}"
                    progress.update(bar, description=label)
                    errors_before = self.errors
                    record = self.score_task(service, task)
                    attempted += 1
                    if self.errors == errors_before:
                        attempted = -(10**9)  # one success disarms the guard
                    elif attempted >= 10:
                        first = record["orders"][0].get("error")
                        raise EvaluationError(f"the first 10 tasks all failed; last error: {first}")
                    self.log.append(record)
                    progress.advance(bar)
                session["scoring_s"] = round(time.perf_counter() - t_score, 3)
        finally:
            self.log.close()
            session["finished"] = datetime.now(UTC).isoformat()
            session["errors"] = self.errors
            self.log.add_session(session)
            if service is not None:
                service.close()
            if not self.keep_store:
                shutil.rmtree(store, ignore_errors=True)
