"""Individual-level scaling: m evaluation chains per request, mean over valid ones.

:class:`ChainScorer` renders every chain prompt of every request, sends them all
to the backend in one ``generate`` call (per batch), parses each chain and
aggregates: per-candidate mean, std and valid count over the chains that parsed.
Parse failures (with a reason count) and ties are counted, never dropped.

Position debiasing: with ``debias`` the candidates are shown in a different
order in each chain (cyclic rotations, so that over m = k·n chains every
candidate sits in every slot equally often; at m = 1 both the original and the
reversed order are scored), and scores are mapped back before averaging.

Examples
--------
>>> chain_orders(3, samples=3, debias=True)
[[0, 1, 2], [1, 2, 0], [2, 0, 1]]
>>> chain_orders(2, samples=1, debias=True)
[[0, 1], [1, 0]]
>>> chain_orders(2, samples=2, debias=False)
[[0, 1], [0, 1]]
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from infra.contracts import ChatMessage, Criterion
from reward.exceptions import BackendError
from reward.parser import criteria_from_text, parse_chain
from reward.prompts import PromptTemplate
from reward.protocol import (
    ChainParse,
    Completion,
    GenerationBackend,
    HistoryItem,
    NumberReadoutBackend,
    ScoreRequest,
    ScoreResult,
)
from reward.readout import LOW_MASS, MIN_MASS, read_scores, readout_session

STOP = "<JSON_END>"
"""Generation stops at the end marker of PART 2 (the parser accepts a missing end marker)."""
PART1_STOP = ("<JSON_START>", "PART 2")
"""With score readout, generation stops where PART 2 begins; the scorer writes PART 2."""


def chain_orders(n: int, samples: int, debias: bool) -> list[list[int]]:
    """Presentation orders of the chains of one request (``order[k]`` = index in slot k)."""
    ident = list(range(n))
    if not debias:
        return [ident] * samples
    if samples == 1:
        return [ident, ident[::-1]]
    return [ident[s % n :] + ident[: s % n] for s in range(samples)]


@dataclass
class _Job:
    """The chains of one request: distinct prompts and which chain uses which."""

    req: ScoreRequest
    orders: list[list[int]]
    prompts: list[list[ChatMessage]] = field(default_factory=list)
    prefix: str = ""
    openings: list[str] = field(default_factory=list)
    """Per chain, the template's PART 2 opening (score readout continues from it)."""


def _mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    mu = sum(xs) / len(xs)
    var = sum((x - mu) ** 2 for x in xs) / len(xs)
    return mu, math.sqrt(var)


class ChainScorer:
    """Scores requests by sampling P-GenRM evaluation chains.

    Parameters
    ----------
    backend:
        Any :class:`~reward.protocol.GenerationBackend`.
    template:
        A loaded :class:`~reward.prompts.PromptTemplate`; the shipped one by default.
    temperature, max_new_tokens:
        Sampling settings (paper: temperature 1.0).
    history_size:
        h, the number of most recent history triples shown (paper: 3).
    prefill:
        Start the assistant turn with the template's PREFILL text (the opening of
        PART 2). Raises the valid-parse rate of small models but skips PART 1,
        so chains carry no persona; off by default.
    max_batch_prompts:
        Most prompts per ``generate`` call in :meth:`score_many` (None: all).
    stop:
        Stop strings; by default generation ends at ``<JSON_END>``.
    readout:
        Score readout (:mod:`reward.readout`): generate PART 1 only (nothing with
        ``prefill``), then read each score as the expected value of the model's
        distribution over 1..10. Every chain yields scores. Needs a backend with
        ``number_logprobs`` (``transformers``) and a template with PREFILL; else it
        stays off and :attr:`readout_active` is False.
    """

    def __init__(
        self,
        backend: GenerationBackend,
        *,
        template: PromptTemplate | None = None,
        temperature: float = 1.0,
        max_new_tokens: int = 384,
        history_size: int = 3,
        prefill: bool = False,
        max_batch_prompts: int | None = None,
        stop: Sequence[str] | None = (STOP,),
        readout: bool = False,
    ) -> None:
        self.backend = backend
        self.template = template or PromptTemplate.load()
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.history_size = history_size
        self.prefill = prefill
        self.max_batch_prompts = max_batch_prompts
        self.stop = list(stop) if stop else None
        self.readout_active = (
            readout and isinstance(backend, NumberReadoutBackend) and bool(self.template.prefill)
        )

    # -- building --------------------------------------------------------
    def _job(self, req: ScoreRequest) -> _Job:
        orders = chain_orders(len(req.candidates), req.samples, req.debias)
        job = _Job(req=req, orders=orders)
        for order in orders:
            msgs = self.template.render(
                req,
                order,
                history_size=self.history_size,
                prefill=self.prefill or self.readout_active,
            )
            if self.readout_active:
                job.openings.append(msgs[-1].content)
                if not self.prefill:  # PART 1 is generated first, without the opening
                    msgs = msgs[:-1]
            job.prompts.append(msgs)
        if job.prompts and job.prompts[0][-1].role == "assistant":
            job.prefix = job.prompts[0][-1].content
        return job

    def _generate(
        self, jobs: list[_Job], stop: Sequence[str] | None = None
    ) -> list[list[Completion]]:
        """One completion list per chain of every job, in job order, via one call per batch.

        Identical prompts (same order) of a request are merged so that the backend
        can share their prefix: when every distinct prompt needs the same number of
        samples, the call uses ``n`` = that number; otherwise each chain is its own
        prompt with ``n = 1``.
        """
        distinct: list[tuple[int, tuple[int, ...]]] = []
        counts: Counter[tuple[int, tuple[int, ...]]] = Counter()
        for j, job in enumerate(jobs):
            for order in job.orders:
                key = (j, tuple(order))
                if key not in counts:
                    distinct.append(key)
                counts[key] += 1
        same_n = len(set(counts.values())) == 1
        prompts: list[list[ChatMessage]] = []
        keys: list[tuple[int, tuple[int, ...]]] = []
        if same_n:
            n = next(iter(counts.values()))
            for key in distinct:
                j, shown = key
                prompts.append(jobs[j].prompts[jobs[j].orders.index(list(shown))])
                keys.append(key)
        else:
            n = 1
            for j, job in enumerate(jobs):
                for order, p in zip(job.orders, job.prompts, strict=True):
                    prompts.append(p)
                    keys.append((j, tuple(order)))
        seeds = [job.req.seed for job in jobs if job.req.seed is not None]
        seed = seeds[0] if seeds else None
        step = self.max_batch_prompts or len(prompts)
        outs: list[list[Completion]] = []
        for i in range(0, len(prompts), step):
            outs.extend(
                self.backend.generate(
                    prompts[i : i + step],
                    n=n,
                    temperature=self.temperature,
                    max_tokens=self.max_new_tokens,
                    stop=list(stop) if stop is not None else self.stop,
                    # backends seed prompts by their index within a call: offset each
                    # chunk so a prompt repeated across chunks gets its own sample
                    seed=None if seed is None else seed + i,
                )
            )
        # Hand completions back to chains in order.
        pool: dict[tuple[int, tuple[int, ...]], list[Completion]] = {}
        for key, group in zip(keys, outs, strict=True):
            pool.setdefault(key, []).extend(group)
        return [
            [pool[(j, tuple(order))].pop(0) for order in job.orders] for j, job in enumerate(jobs)
        ]

    # -- score readout ---------------------------------------------------
    def _readout(self, jobs: list[_Job]) -> list[tuple[list[ChainParse], int]]:
        """Chains of every job via score readout, with the PART 1 tokens generated."""
        backend = self.backend
        assert isinstance(backend, NumberReadoutBackend)
        tokens = [0] * len(jobs)
        if self.prefill:
            openings = [job.openings for job in jobs]
        else:
            openings = []
            for j, (job, comps) in enumerate(
                zip(jobs, self._generate(jobs, stop=PART1_STOP), strict=True)
            ):
                tokens[j] = sum(c.tokens for c in comps)
                openings.append(
                    [c.text.rstrip() + "\n\n" + o for c, o in zip(comps, job.openings, strict=True)]
                )
        # One read per distinct (request, order, opening), grouped by candidate count.
        groups: dict[int, dict[tuple[int, tuple[int, ...], str], list[ChatMessage]]] = {}
        for j, job in enumerate(jobs):
            group = groups.setdefault(len(job.req.candidates), {})
            for order, prompt, opening in zip(job.orders, job.prompts, openings[j], strict=True):
                bare = prompt[:-1] if prompt[-1].role == "assistant" else prompt
                group.setdefault((j, tuple(order), opening), bare)
        done: dict[tuple[int, tuple[int, ...], str], tuple[str, float]] = {}
        for n, group in groups.items():
            # One session per group: its slots reuse the prompts' KV caches, freed after.
            with readout_session(backend) as reader:
                reads = read_scores(
                    reader,
                    list(group.values()),
                    [opening for _, _, opening in group],
                    n,
                    self.template.readout_next,
                )
            done.update(zip(group, ((r.text, r.min_mass) for r in reads), strict=True))
        out: list[tuple[list[ChainParse], int]] = []
        for j, job in enumerate(jobs):
            n = len(job.req.candidates)
            chains = []
            for order, opening in zip(job.orders, openings[j], strict=True):
                text, mass = done[(j, tuple(order), opening)]
                chains.append(_readout_chain(text, n, order, mass))
            out.append((chains, tokens[j]))
        return out

    # -- aggregation -----------------------------------------------------
    def _aggregate(
        self, job: _Job, chains: list[ChainParse], tokens: int, latency_ms: float
    ) -> ScoreResult:
        return aggregate(
            chains,
            len(job.req.candidates),
            samples=job.req.samples,
            model_id=str(getattr(self.backend, "model_id", "")),
            generated_tokens=tokens,
            latency_ms=latency_ms,
        )

    def _parse(self, job: _Job, completions: list[Completion]) -> list[ChainParse]:
        n = len(job.req.candidates)
        return [
            parse_chain(job.prefix + comp.text, n, order)
            for order, comp in zip(job.orders, completions, strict=True)
        ]

    # -- public ----------------------------------------------------------
    def score(self, req: ScoreRequest) -> ScoreResult:
        """Score one request (its m chains in one backend call)."""
        return self.score_many([req])[0]

    def score_many(self, reqs: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Score several requests, all chains of all requests batched together.

        Requests may have different histories (prototype-level neighbour scoring).
        A backend failure becomes a result whose chains all failed with reason
        ``backend_error``; it is not raised.
        """
        if not reqs:
            return []
        t0 = time.perf_counter()
        jobs = [self._job(r) for r in reqs]
        try:
            if self.readout_active:
                parsed = self._readout(jobs)
            else:
                parsed = [
                    (self._parse(job, comps), sum(c.tokens for c in comps))
                    for job, comps in zip(jobs, self._generate(jobs), strict=True)
                ]
        except BackendError as exc:
            ms = (time.perf_counter() - t0) * 1000
            out = []
            for job in jobs:
                fails = [
                    ChainParse(ok=False, failure="backend_error", detail=str(exc)[:300], order=o)
                    for o in job.orders
                ]
                out.append(
                    aggregate(
                        fails,
                        len(job.req.candidates),
                        samples=job.req.samples,
                        model_id=str(getattr(self.backend, "model_id", "")),
                        latency_ms=ms,
                    )
                )
            return out
        ms = (time.perf_counter() - t0) * 1000
        return [
            self._aggregate(job, chains, tokens, ms)
            for job, (chains, tokens) in zip(jobs, parsed, strict=True)
        ]

    def persona(
        self, history: Sequence[HistoryItem], stated_preferences: str | None
    ) -> tuple[str, list[Criterion]]:
        """PART 1 only: a persona text and weighted criteria (for the persona refresher).

        Criteria are read from lines ``- name: reason (NN%)``; an empty list when
        the model wrote none.
        """
        msgs = self.template.render_persona(
            list(history)[-self.history_size :] if self.history_size else [], stated_preferences
        )
        out = self.backend.generate(
            [msgs], n=1, temperature=self.temperature, max_tokens=self.max_new_tokens
        )
        text = out[0][0].text.strip() if out and out[0] else ""
        return text, criteria_from_text(text)


def _readout_chain(text: str, n: int, order: list[int], mass: float) -> ChainParse:
    """Parse a read-out chain; too little mass on the scale is a failure, some is a warning."""
    if mass < MIN_MASS:
        return ChainParse(
            ok=False,
            failure="readout_no_mass",
            detail=f"probability on 1..10 was {mass:.2g}",
            order=order,
            text=text,
        )
    chain = parse_chain(text, n, order)
    flags = ["readout"] + (["readout_low_mass"] if mass < LOW_MASS else [])
    return chain.model_copy(update={"warnings": [*chain.warnings, *flags]})


def aggregate(
    chains: list[ChainParse],
    n: int,
    *,
    samples: int,
    model_id: str = "",
    generated_tokens: int = 0,
    latency_ms: float = 0.0,
) -> ScoreResult:
    """Per-candidate mean/std/valid count over valid chains, with failures and ties counted.

    >>> ok = ChainParse(ok=True, scores=[7.0, 5.0], order=[0, 1])
    >>> bad = ChainParse(ok=False, failure="no_json", order=[1, 0])
    >>> r = aggregate([ok, bad], 2, samples=1)
    >>> r.scores, r.valid, r.parse_failures, dict(r.failure_reasons)
    ([7.0, 5.0], [1, 1], 1, {'no_json': 1})
    """
    per: list[list[float]] = [[] for _ in range(n)]
    reasons: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    ties = 0
    for ch in chains:
        warnings.update(ch.warnings)
        if not ch.ok or ch.scores is None:
            reasons[ch.failure or "unknown"] += 1
            continue
        for i, s in enumerate(ch.scores):
            per[i].append(s)
        top = max(ch.scores)
        if sum(1 for s in ch.scores if abs(s - top) < 1e-9) > 1:
            ties += 1
    means, stds = zip(*(_mean_std(xs) for xs in per), strict=True)
    valid_chains = [c for c in chains if c.ok]
    persona = next((c.persona for c in valid_chains if c.persona), None)
    if persona is None:
        persona = next((c.persona for c in chains if c.persona), None)
    criteria = next((c.criteria for c in valid_chains if c.criteria), [])
    return ScoreResult(
        scores=list(means),
        std=list(stds),
        valid=[len(xs) for xs in per],
        samples=samples,
        parse_failures=sum(reasons.values()),
        failure_reasons=reasons,
        ties=ties,
        chains=chains,
        persona=persona,
        criteria=list(criteria),
        model_id=model_id,
        generated_tokens=generated_tokens,
        latency_ms=latency_ms,
        warnings=warnings,
        generations=len(chains),
    )


def explain(result: ScoreResult, max_chars: int = 400) -> str:
    """A short human explanation: persona, criteria and the per-chain scores.

    >>> r = aggregate([ChainParse(ok=True, scores=[7.0, 5.0], order=[0, 1],
    ...                criteria=[Criterion(name="Brevity", weight=100)])], 2, samples=1)
    >>> print(explain(r))
    criteria: Brevity 100%
    chain 1 (order [1, 2]): 7, 5
    """
    lines = []
    if result.persona:
        p = " ".join(result.persona.split())
        lines.append("persona: " + (p[: max_chars - 3] + "..." if len(p) > max_chars else p))
    if result.criteria:
        lines.append("criteria: " + ", ".join(f"{c.name} {c.weight:g}%" for c in result.criteria))
    for i, ch in enumerate(result.chains, 1):
        shown = [o + 1 for o in ch.order]
        if ch.ok and ch.scores is not None:
            lines.append(f"chain {i} (order {shown}): " + ", ".join(f"{s:g}" for s in ch.scores))
        else:
            lines.append(
                f"chain {i} (order {shown}): failed ({ch.failure}: {ch.detail or ''})".rstrip()
            )
    return "\n".join(lines)
