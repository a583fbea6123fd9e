"""Errors of the RM-NLHF package."""

from __future__ import annotations

from reward.exceptions import RewardError


class NlhfError(RewardError):
    """Base of RM-NLHF errors."""


class JudgeError(NlhfError):
    """The LLM judge gave no usable answer (after its retries)."""


class MetaRMError(NlhfError):
    """A MetaRM could not be built, trained, saved or loaded."""
