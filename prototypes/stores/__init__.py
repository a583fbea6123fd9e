"""Vector stores for users, prototypes and the exactly-once ledger.

:func:`open_stores` picks the adapter from ``settings.qdrant.mode``:
``embedded`` (default) opens Qdrant Edge folders under ``settings.qdrant_path``;
``server`` connects qdrant-client to ``settings.qdrant.url``; ``memory`` uses
qdrant-client's in-process ``:memory:`` mode (tests only).

Examples
--------
>>> import tempfile
>>> from infra.settings import Settings
>>> stores = open_stores(Settings(data_dir=tempfile.mkdtemp()), dim=4)
>>> stores.ledger.mark(["e1"]); sorted(stores.ledger.seen(["e1", "e2"]))
['e1']
>>> stores.close()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.settings import Settings
from prototypes.exceptions import StoreError
from prototypes.protocol import Ledger, PrototypeStore, UserStore

DEFAULT_DIM = 384


@dataclass
class Stores:
    """The three stores of one deployment; flush/close all of them together."""

    users: UserStore
    prototypes: PrototypeStore
    ledger: Ledger
    _client: Any = field(default=None, repr=False)

    def flush(self) -> None:
        """Make everything written so far survive a crash (SIGKILL included)."""
        self.users.flush()
        self.prototypes.flush()
        self.ledger.flush()

    def close(self) -> None:
        for s in (self.users, self.prototypes, self.ledger):
            close = getattr(s, "close", None)
            if close is not None:
                close()
        if self._client is not None:
            self._client.close()
            self._client = None


def open_stores(settings: Settings, *, dim: int = DEFAULT_DIM) -> Stores:
    """Open (creating when absent) the stores selected by ``settings.qdrant.mode``."""
    mode = settings.qdrant.mode
    if mode == "embedded":
        from prototypes.stores.edge import EdgeLedger, EdgePrototypeStore, EdgeUserStore

        root = settings.qdrant_path
        return Stores(
            users=EdgeUserStore(root / "users", dim=dim),
            prototypes=EdgePrototypeStore(root / "prototypes", dim=dim),
            ledger=EdgeLedger(root / "ledger"),
        )
    if mode in ("server", "memory"):
        from qdrant_client import QdrantClient

        from prototypes.stores.server import ServerLedger, ServerPrototypeStore, ServerUserStore

        if mode == "memory":
            client = QdrantClient(":memory:")
        else:
            if not settings.qdrant.url:
                raise StoreError("qdrant.mode=server needs PGENRM_QDRANT__URL")
            key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
            client = QdrantClient(url=settings.qdrant.url, api_key=key)
        prefix = settings.qdrant.collection_prefix
        return Stores(
            users=ServerUserStore(client, f"{prefix}_users", dim=dim),
            prototypes=ServerPrototypeStore(client, f"{prefix}_prototypes", dim=dim),
            ledger=ServerLedger(client, f"{prefix}_ledger"),
            _client=client,
        )
    raise StoreError(f"unknown qdrant.mode {mode!r}")
