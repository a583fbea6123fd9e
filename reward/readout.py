"""Score readout: PART 2's scores read from the model's distribution, not sampled.

Small CPU models write PART 1 well enough but rarely finish PART 2 as valid
JSON (measured: 0-12% valid chains for SmolLM2 and Qwen-0.5B). Score readout
writes PART 2's skeleton itself and, where the JSON asks for a response's
score, reads the model's probability of every integer 1..10 there
(:meth:`~reward.protocol.NumberReadoutBackend.number_logprobs`). The score is
the expected value under that distribution, renormalised over 1..10; it is
written into the JSON (two decimals) before the next response's score is read,
so later scores see earlier ones as in a sampled chain. Every chain therefore
yields scores, and the full chain text still parses with :func:`parse_chain`.

The probability mass the model puts on 1..10 is kept: a chain whose mass is
below :data:`MIN_MASS` fails with ``readout_no_mass`` (the model did not expect
a number there at all), and one below :data:`LOW_MASS` is flagged.

Examples
--------
>>> expected_score([0.0] * 9 + [1.0])
(10.0, 1.0)
>>> s, mass = expected_score([0.25, 0.25] + [0.0] * 8)
>>> s, mass
(1.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from infra.contracts import ChatMessage
from reward.parser import SCORE_MAX, SCORE_MIN
from reward.protocol import NumberReadoutBackend, ReadoutSessionBackend

SCALE = tuple(range(int(SCORE_MIN), int(SCORE_MAX) + 1))
"""The integers whose probability is read: the parser's (the template's) 1-10 scale."""
MIN_MASS = 1e-3
LOW_MASS = 0.5
CLOSE = "}}\n<JSON_END>"
"""Closes the readout skeleton: the ``better_response`` object and the answer."""


def expected_score(probs: Sequence[float]) -> tuple[float, float]:
    """Mean of the scale under ``probs`` (renormalised) and the mass on the scale."""
    mass = float(sum(probs))
    if mass <= 0:
        return float("nan"), 0.0
    return sum(k * p for k, p in zip(SCALE, probs, strict=True)) / mass, mass


@contextmanager
def readout_session(backend: NumberReadoutBackend) -> Iterator[NumberReadoutBackend]:
    """What to read one job's slots with: a session of ``backend`` if it has them.

    A :class:`~reward.protocol.ReadoutSessionBackend` yields a session (prompt KV
    caches kept from one slot to the next), closed on exit; any other backend is
    yielded as it is (every slot prefills its prompts again).
    """
    if isinstance(backend, ReadoutSessionBackend):
        session = backend.readout_session()
        try:
            yield session
        finally:
            session.close()
    else:
        yield backend


@dataclass
class Readout:
    """The assistant text of one read-out chain and its lowest probability mass."""

    text: str
    min_mass: float


def read_scores(
    backend: NumberReadoutBackend,
    prompts: Sequence[list[ChatMessage]],
    openings: Sequence[str],
    n_candidates: int,
    next_key: str,
) -> list[Readout]:
    """Fill ``n_candidates`` scores after each prompt's assistant ``opening``.

    Parameters
    ----------
    backend:
        Any backend with ``number_logprobs``; pass a session
        (:func:`readout_session`) so that slots after the first run only their new
        tokens.
    prompts:
        The chain prompts (system and user messages, no assistant turn).
    openings:
        Per prompt, the assistant text so far, ending where the first score is due
        (PART 1, if generated, then the template's PART 2 opening).
    n_candidates:
        Scores to read per chain.
    next_key:
        What goes between two scores, with ``{{k}}`` for the 1-based slot
        (e.g. ``', "response_{{k}}": '``).

    All chains are read together: one backend call per candidate slot, the
    prompts in the same order each time.
    """
    texts = list(openings)
    masses = [1.0] * len(texts)
    for slot in range(1, n_candidates + 1):
        if slot > 1:
            texts = [t + next_key.replace("{{k}}", str(slot)) for t in texts]
        msgs = [
            [*p, ChatMessage(role="assistant", content=t)]
            for p, t in zip(prompts, texts, strict=True)
        ]
        rows = backend.number_logprobs(msgs, SCALE)
        for i, row in enumerate(rows):
            score, mass = expected_score([math.exp(v) for v in row])
            masses[i] = min(masses[i], mass)
            texts[i] += "null" if math.isnan(score) else f"{score:.2f}"
    return [Readout(text=t + CLOSE, min_mass=m) for t, m in zip(texts, masses, strict=True)]
