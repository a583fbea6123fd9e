"""Errors of the generative reward core."""

from __future__ import annotations

from infra.exceptions import PgenrmError


class RewardError(PgenrmError):
    """Base of reward-core errors."""


class BackendError(RewardError):
    """A generation backend failed (after its retries)."""


class ModelInstallError(RewardError):
    """A model folder could not be built (missing package, bad hash ...)."""


class TemplateError(RewardError):
    """A prompt template is missing or lacks a required placeholder."""
