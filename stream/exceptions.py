"""Errors of the stream processors."""

from __future__ import annotations

from typing import Literal

from infra.exceptions import PgenrmError

ProfileRejection = Literal["unknown_prototype", "user_has_history"]


class StreamError(PgenrmError):
    """A stream processor failed in a way that is not the input's fault."""


class ProfileRejectedError(StreamError):
    """A user registration (onboarding profile) that cannot be applied.

    ``reason`` is its dead-letter reason code: ``unknown_prototype`` (no such
    prototype) or ``user_has_history`` (the user's prototype follows their
    feedback, it cannot be assigned).
    """

    def __init__(self, reason: ProfileRejection, detail: str) -> None:
        self.reason: ProfileRejection = reason
        self.detail = detail
        super().__init__(detail)
