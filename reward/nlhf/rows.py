"""One preference row of RM-NLHF training or evaluation.

The released RM-NLHF code tested ``dataset_type == "Helpsteer3_A"`` in one place
and wrote ``"DataWithHumanCritique"`` in another, so its process reward was
silently zero. Here a row has a human critique exactly when
:func:`has_human_critique` says so, and every consumer calls that function.

Examples
--------
>>> r = NlhfRow(context="Pick a hotel", response_a="Quiet spa.", response_b="Party hub.",
...             winner="A", human_critique="The spa is calm; the other is too loud.")
>>> has_human_critique(r), r.chosen, r.rejected
(True, 'Quiet spa.', 'Party hub.')
>>> has_human_critique(NlhfRow(context="q", response_a="a", response_b="b", winner="B",
...                            human_critique="   "))
False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Side = Literal["A", "B"]

HUMAN_CRITIQUE_FLAG = "has_human_critique"
"""The one name of the flag (JSON rows, logs, metric keys). Never test ``dataset_type``."""


@dataclass(frozen=True)
class NlhfRow:
    """A pair of responses to ``context``, the user's choice and maybe why.

    ``winner`` says which of ``response_a``/``response_b`` the user chose;
    ``human_critique`` is the user's own words, or None.
    """

    context: str
    response_a: str
    response_b: str
    winner: Side
    human_critique: str | None = None
    user_id: str = "anonymous"
    row_id: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def chosen(self) -> str:
        return self.response_a if self.winner == "A" else self.response_b

    @property
    def rejected(self) -> str:
        return self.response_b if self.winner == "A" else self.response_a

    @property
    def chosen_index(self) -> int:
        return 0 if self.winner == "A" else 1

    def to_dict(self) -> dict[str, object]:
        """JSON form, with the flag written under :data:`HUMAN_CRITIQUE_FLAG`."""
        return {
            "row_id": self.row_id,
            "user_id": self.user_id,
            "context": self.context,
            "response_a": self.response_a,
            "response_b": self.response_b,
            "winner": self.winner,
            "human_critique": self.human_critique,
            HUMAN_CRITIQUE_FLAG: has_human_critique(self),
        }


def has_human_critique(row: NlhfRow) -> bool:
    """True when ``row`` carries a non-blank human critique (the only such test)."""
    return bool(row.human_critique and row.human_critique.strip())
