"""Errors of reward-model training."""

from __future__ import annotations

from reward.exceptions import RewardError


class TrainingError(RewardError):
    """Training could not start, resume or save."""
