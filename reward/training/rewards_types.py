"""Names shared by the training modules."""

from __future__ import annotations

from typing import Literal

RewardKindName = Literal["nlhf", "cre"]
