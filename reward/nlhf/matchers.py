"""Core-argument matchers behind one interface, and the deterministic embedding matcher.

:class:`ArgumentMatcher` is what :func:`reward.nlhf.process.process_reward`
calls. Two implementations exist: :class:`EmbeddingMatcher` here (CPU default,
deterministic, used by the stream) and
:class:`reward.nlhf.llm_judge.LLMJudgeMatcher` (an LLM judge through a reward
backend, RM-NLHF's own method).

The embedding matcher:

- arguments are sentences/clauses (:func:`~reward.nlhf.arguments.split_arguments`);
- an argument's target is its explicit reference ("Response A", "the other
  options") or else the response it is closer to (cosine margin ``margin``);
  sentences close to neither are not key arguments about the responses and are
  left out;
- two generated key arguments with the same stance and cosine >= ``repeat_tau``
  are a repetition (F1 = 0); such near-duplicate human arguments are merged;
- two arguments mean the same when the cosine of their embeddings, taken with
  explicit references replaced by "It", is >= ``tau``;
- polarity comes from a small criticism lexicon, so a criticism without a cue word
  ("B focuses on parties") counts as praise: the matcher is a cheap proxy for
  the LLM judge, not a replacement.

Examples
--------
>>> from prototypes.embedder import load_embedder
>>> m = EmbeddingMatcher(load_embedder("minilm"))
>>> r = m.score("Response A is a quiet spa hotel. Response B is a party hotel, too loud.",
...             "I'll take the quiet spa. The party place is too loud for me.",
...             context="Pick a hotel", response_a="A quiet spa hotel.",
...             response_b="A loud party hotel.")
>>> r.q
1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from prototypes.protocol import Embedder
from reward.nlhf.arguments import (
    Argument,
    explicit_target,
    is_fatal,
    polarity,
    split_arguments,
    strip_references,
)
from reward.nlhf.f1 import F1Result, core_f1
from reward.nlhf.rows import Side


@runtime_checkable
class ArgumentMatcher(Protocol):
    """Scores a generated critique against a human critique of the same pair."""

    name: str

    def score(
        self, generated: str, human: str, *, context: str, response_a: str, response_b: str
    ) -> F1Result:
        """Core-argument F1 of ``generated`` against ``human`` (never raises on bad text)."""
        ...


def _other(side: Side) -> Side:
    return "B" if side == "A" else "A"


class EmbeddingMatcher:
    """Deterministic core-argument F1 from sentence embeddings.

    Parameters
    ----------
    embedder:
        Any unit-norm :class:`~prototypes.protocol.Embedder` (``load_embedder("minilm")``).
    tau:
        Cosine at which two arguments mean the same (default 0.45, set on hand-written
        paraphrases with all-MiniLM-L6-v2).
    margin:
        Cosine margin by which a sentence must be closer to one response to refer to it.
    repeat_tau:
        Cosine at which two generated arguments count as a repetition.
    """

    name = "embedding"

    def __init__(
        self,
        embedder: Embedder,
        *,
        tau: float = 0.45,
        margin: float = 0.03,
        repeat_tau: float = 0.9,
    ) -> None:
        self.embedder = embedder
        self.tau = tau
        self.margin = margin
        self.repeat_tau = repeat_tau

    def extract(
        self, critique: str, response_a: str, response_b: str
    ) -> tuple[list[Argument], np.ndarray, bool]:
        """Key arguments of ``critique``, their meaning embeddings, and whether one repeats.

        The target is resolved on the raw sentence; meaning is embedded with the
        explicit references ("Response A") replaced by "It".
        """
        sents = split_arguments(critique)
        if not sents:
            return [], np.zeros((0, int(self.embedder.dim)), dtype=np.float32), False
        n = len(sents)
        vecs = self.embedder.embed(
            [*sents, *(strip_references(s) for s in sents), response_a, response_b]
        )
        s_vec, m_vec, a_vec, b_vec = vecs[:n], vecs[n : 2 * n], vecs[-2], vecs[-1]
        targets: list[Side | str | None] = []
        for sent, v in zip(sents, s_vec, strict=True):
            t = explicit_target(sent)
            if t is None:
                da, db = float(v @ a_vec), float(v @ b_vec)
                if abs(da - db) >= self.margin:
                    t = "A" if da > db else "B"
            targets.append(t)
        # "the other option(s)" refers away from the nearest resolved target.
        resolved: list[Side | None] = []
        last: Side | None = None
        first = next((t for t in targets if t in ("A", "B")), None)
        for t in targets:
            if t == "other":
                anchor = last or first
                resolved.append(_other(anchor) if anchor in ("A", "B") else None)
            else:
                resolved.append(t)  # type: ignore[arg-type]
                if t in ("A", "B"):
                    last = t  # type: ignore[assignment]
        args: list[Argument] = []
        keep: list[int] = []
        for i, (sent, t) in enumerate(zip(sents, resolved, strict=True)):
            if t is None:
                continue
            args.append(Argument(sent, t, polarity(sent), is_fatal(sent)))
            keep.append(i)
        kept = m_vec[keep]
        repetition = any(self._same(args, kept, i, j) for i in range(len(args)) for j in range(i))
        return args, kept, repetition

    def _same(self, args: list[Argument], vecs: np.ndarray, i: int, j: int) -> bool:
        """Arguments ``i`` and ``j`` make one point: same stance, same meaning.

        Meaning is compared with the references stripped, so the stance is what
        tells "A is too long" from "B is too long".
        """
        return args[i].stance == args[j].stance and float(vecs[i] @ vecs[j]) >= self.repeat_tau

    def _dedupe(self, args: list[Argument], vecs: np.ndarray) -> tuple[list[Argument], np.ndarray]:
        out: list[int] = []
        for i in range(len(args)):
            if not any(self._same(args, vecs, i, j) for j in out):
                out.append(i)
        return [args[i] for i in out], vecs[out]

    def score(
        self, generated: str, human: str, *, context: str, response_a: str, response_b: str
    ) -> F1Result:
        gen, g_vec, rep = self.extract(generated, response_a, response_b)
        ref, r_vec, _ = self.extract(human, response_a, response_b)
        ref, r_vec = self._dedupe(ref, r_vec)
        sim = g_vec @ r_vec.T if len(gen) and len(ref) else np.zeros((len(gen), len(ref)))
        return core_f1(gen, ref, sim, tau=self.tau, repetition=rep)


def score_many(
    matcher: ArgumentMatcher,
    items: Sequence[tuple[str, str, str, str, str]],
) -> list[F1Result]:
    """Score ``(generated, human, context, response_a, response_b)`` tuples in order."""
    return [matcher.score(g, h, context=c, response_a=a, response_b=b) for g, h, c, a, b in items]
