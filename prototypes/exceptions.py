"""Errors of the prototype layer (embedders, stores, clustering)."""

from __future__ import annotations

from infra.exceptions import PgenrmError


class PrototypeError(PgenrmError):
    """Base of prototype-layer errors."""


class StoreError(PrototypeError):
    """The vector store failed or holds inconsistent data."""


class EmbedderError(PrototypeError):
    """An embedding model could not be loaded or produced bad vectors."""


class ClusteringError(PrototypeError):
    """The online clusterer is misconfigured or its checkpoint is unreadable."""


class RefinementError(PrototypeError):
    """The offline rebuild (K-means + attentive refinement) could not run."""
