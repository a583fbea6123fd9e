"""Training inputs: chain prompts for rows, and evaluation-chain SFT targets.

Prompts are the product's own evaluation-chain prompts
(:class:`reward.prompts.PromptTemplate`), so a trained model is served by
:class:`reward.scoring.ChainScorer` unchanged. Each row is shown with its
candidates in a seeded random order (position debiasing).

SFT targets (P-GenRM's teacher chains need o3; two stand-ins here):

- ``synthetic``: a chain written from the row's human critique: PART 1 quotes
  the user's reasons, one criterion "Fit to the user's stated reasons" (100%),
  and PART 2 scores the chosen response 8 and the other 3;
- ``rejection``: the model's own sampled chains that parse and rank the chosen
  response first (rejection sampling, as P-GenRM does with its teacher).

Examples
--------
>>> from reward.nlhf.rows import NlhfRow
>>> row = NlhfRow("Pick a hotel", "Quiet spa.", "Party hub.", winner="A",
...               human_critique="The spa is calm.")
>>> ex = make_example(row, order=[1, 0])
>>> ex.messages[-1].role, ex.order
('user', [1, 0])
>>> from reward.parser import parse_chain
>>> parse_chain(synthetic_chain(row, [1, 0]), 2, [1, 0]).scores
[8.0, 3.0]
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.contracts import ChatMessage
from reward.nlhf.rows import NlhfRow
from reward.prompts import PromptTemplate
from reward.protocol import ScoreRequest
from reward.training.exceptions import TrainingError


@dataclass(frozen=True)
class TrainExample:
    """A row rendered as a chain prompt with its candidate order."""

    row: NlhfRow
    messages: list[ChatMessage]
    order: list[int]

    @property
    def prefix(self) -> str:
        """The prefilled start of the assistant turn ('' without prefill)."""
        return self.messages[-1].content if self.messages[-1].role == "assistant" else ""


def score_request(row: NlhfRow) -> ScoreRequest:
    """The :class:`ScoreRequest` of a row (stated preferences from ``meta["preference"]``)."""
    return ScoreRequest(
        user_id=row.user_id,
        context=[ChatMessage(role="user", content=row.context)],
        candidates=[row.response_a, row.response_b],
        stated_preferences=row.meta.get("preference") or None,
    )


def make_example(
    row: NlhfRow,
    *,
    order: list[int] | None = None,
    template: PromptTemplate | None = None,
    prefill: bool = False,
    rng: random.Random | None = None,
) -> TrainExample:
    """Render ``row`` as a chain prompt (order random unless given)."""
    if order is None:
        order = [0, 1] if (rng or random).random() < 0.5 else [1, 0]
    tmpl = template or PromptTemplate.load()
    msgs = tmpl.render(score_request(row), order, history_size=3, prefill=prefill)
    return TrainExample(row, list(msgs), list(order))


def synthetic_chain(row: NlhfRow, order: Sequence[int]) -> str:
    """A well-formed chain whose reasoning is the row's human critique (see module doc)."""
    reasons = " ".join((row.human_critique or "The user preferred this response.").split())
    slot_of = {req: k + 1 for k, req in enumerate(order)}
    win, lose = slot_of[row.chosen_index], slot_of[1 - row.chosen_index]
    scores = {f"response_{win}": 8.0, f"response_{lose}": 3.0}
    obj = {
        "criteria": [{"name": "Fit to the user's stated reasons", "weight": 100}],
        "breakdown": {
            k: {"Fit to the user's stated reasons": v} for k, v in sorted(scores.items())
        },
        "better_response": dict(sorted(scores.items())),
    }
    return (
        "PART 1 - Analysis\n"
        f'1. Scenario persona and preference synthesis: the user explains: "{reasons}"\n'
        f"2. Scoring-model derivation:\n- Fit to the user's stated reasons: Response {win} matches "
        f"them and Response {lose} does not (100%)\n\n"
        "PART 2 - Scores\n<JSON_START>\n" + json.dumps(obj) + "\n<JSON_END>"
    )


def read_rows(path: Path) -> list[NlhfRow]:
    """Rows from a JSONL file of :meth:`NlhfRow.to_dict` objects."""
    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise TrainingError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append(
                NlhfRow(
                    context=d["context"],
                    response_a=d["response_a"],
                    response_b=d["response_b"],
                    winner=d["winner"],
                    human_critique=d.get("human_critique"),
                    user_id=d.get("user_id", "anonymous"),
                    row_id=d.get("row_id", str(n)),
                    meta={k: str(v) for k, v in (d.get("meta") or {}).items()},
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{path}:{n}: not a row ({exc})") from exc
    return rows


def write_rows(rows: Iterable[NlhfRow], path: Path) -> None:
    with Path(path).open("w") as f:
        for r in rows:
            d = r.to_dict()
            d["meta"] = r.meta
            f.write(json.dumps(d) + "\n")
