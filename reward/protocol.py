"""Request/response models and backend interface of the generative reward core.

Independent of Kafka: the stream worker, the HTTP API, ``pgenrm score`` and
``pgenrm eval`` all build a :class:`ScoreRequest` and read a :class:`ScoreResult`.

Examples
--------
>>> from reward.protocol import ScoreRequest
>>> req = ScoreRequest(user_id="u1", context=[{"role": "user", "content": "Hi"}],
...                    candidates=["Hello!", "Go away."])
>>> req.samples
1
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from infra.contracts import MAX_CANDIDATES, MIN_CANDIDATES, ChatMessage, Criterion


class HistoryItem(BaseModel):
    """One past choice of a user: a triple (query, chosen, rejected) and maybe why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context: list[ChatMessage] = Field(min_length=1)
    chosen: str
    rejected: str
    critique: str | None = None


class ScoreRequest(BaseModel):
    """Score ``candidates`` for ``context`` as the owner of ``history`` would.

    This is also the file format of ``pgenrm score REQUEST.json``.
    """

    model_config = ConfigDict(extra="forbid")

    user_id: str = "anonymous"
    history: list[HistoryItem] = Field(default_factory=list)
    stated_preferences: str | None = None
    context: list[ChatMessage] = Field(min_length=1)
    candidates: list[str] = Field(min_length=MIN_CANDIDATES, max_length=MAX_CANDIDATES)
    samples: int = Field(default=1, ge=1, le=64)
    """m, the number of evaluation chains sampled for this request."""
    debias: bool = True
    """Present candidates in a different order in each sample (both orders at m=1)."""
    seed: int | None = None


class ChainParse(BaseModel):
    """What the parser made of one generated evaluation chain."""

    ok: bool
    scores: list[float] | None = None
    """Scores in the *request's* candidate order (already un-permuted)."""
    failure: str | None = None
    """A short reason code when ``ok`` is false (``no_json``, ``missing_candidate`` ...)."""
    detail: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    persona: str | None = None
    arithmetic_mismatch: bool = False
    order: list[int] = Field(default_factory=list)
    """The permutation shown to the model: ``order[k]`` is the request index in slot k."""
    text: str = ""
    warnings: list[str] = Field(default_factory=list)
    """Non-fatal findings (``weights_not_100``, ``arithmetic_mismatch``, ``recomputed`` ...)."""
    recomputed: list[float] | None = None
    """Weighted sums recomputed from criteria and breakdown, request order, when possible."""


class ScoreResult(BaseModel):
    """Per-candidate mean over valid chains, with the evidence."""

    scores: list[float | None]
    """Mean score per candidate; None where no chain produced a valid score."""
    std: list[float | None]
    valid: list[int]
    samples: int
    parse_failures: int
    failure_reasons: Counter[str] = Field(default_factory=Counter)
    ties: int = 0
    """Valid chains whose top score was shared by more than one candidate."""
    chains: list[ChainParse] = Field(default_factory=list)
    persona: str | None = None
    criteria: list[Criterion] = Field(default_factory=list)
    model_id: str = ""
    generated_tokens: int = 0
    latency_ms: float = 0.0
    warnings: Counter[str] = Field(default_factory=Counter)
    """Counts of non-fatal parser findings over all chains (``arithmetic_mismatch`` ...)."""
    generations: int = 0
    """Chains generated (``samples``, or 2 when debiasing a single sample)."""


class Completion(BaseModel):
    text: str
    tokens: int = 0
    logprob: float | None = None


@runtime_checkable
class GenerationBackend(Protocol):
    """Generates ``n`` completions for each of several prompts in one batched call.

    Implementations: ``transformers`` (CPU default), ``vllm`` (in-process, GPU),
    ``openai`` (HTTP to any OpenAI-compatible server).
    """

    model_id: str

    def generate(
        self,
        prompts: Sequence[list[ChatMessage]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 384,
        stop: Sequence[str] | None = None,
        logprobs: bool = False,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """Return ``len(prompts)`` lists of ``n`` completions each.

        ``seed`` makes the call reproducible; it must not make identical prompts of
        one call draw identical samples (adapters that seed per prompt use
        ``seed + index``).
        """
        ...


@runtime_checkable
class NumberReadoutBackend(Protocol):
    """A backend that can read its next-number distribution instead of sampling it.

    Used by score readout (:mod:`reward.readout`): PART 2's scores are taken as the
    expected value of the model's distribution over 1..10 where the JSON asks for
    a score, so every chain yields a score (implemented by ``transformers``).
    """

    def number_logprobs(
        self, prompts: Sequence[list[ChatMessage]], numbers: Sequence[int]
    ) -> list[list[float]]:
        """``log P(exactly k)`` for each prompt (ending where a number is due) and each k."""
        ...


@runtime_checkable
class ReadoutSession(NumberReadoutBackend, Protocol):
    """Successive ``number_logprobs`` calls of one scoring job, sharing prompt state.

    Prompt ``r`` of a call is expected to continue prompt ``r`` of the previous call
    (score readout writes one score and the next key, then reads again), so an
    implementation may keep each prompt's KV cache and run only the new tokens.
    Results equal fresh calls'. Not thread-safe; :meth:`close` frees what it holds.
    """

    def close(self) -> None:
        """Release the kept state (the session is not used afterwards)."""
        ...


@runtime_checkable
class ReadoutSessionBackend(NumberReadoutBackend, Protocol):
    """A number-readout backend that can keep prompt state across calls (``transformers``)."""

    def readout_session(self) -> ReadoutSession:
        """A new session; the caller closes it when its job is read."""
        ...
