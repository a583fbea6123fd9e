"""Errors of the prototype layer (embedders, stores, clustering)."""

from __future__ import annotations

from infra.exceptions import PgenrmError


class PrototypeError(PgenrmError):
    """Base of prototype-layer errors."""


class StoreError(PrototypeError):
    """The vector store failed or holds inconsistent data."""
