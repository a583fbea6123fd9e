"""Errors of the stream processors."""

from __future__ import annotations

from infra.exceptions import PgenrmError


class StreamError(PgenrmError):
    """A stream processor failed in a way that is not the input's fault."""
