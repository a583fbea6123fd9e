"""Errors of the offline evaluation (``pgenrm eval``)."""

from __future__ import annotations

from infra.exceptions import PgenrmError


class EvaluationError(PgenrmError):
    """The evaluation could not run."""


class DatasetError(EvaluationError):
    """A dataset is missing, unreadable or not in the expected layout."""


class ResumeMismatchError(EvaluationError):
    """``OUT/progress.jsonl`` belongs to a run with a different configuration."""
