"""A bounded, durable log of served rewards, so later feedback can score them.

When a :class:`~infra.contracts.FeedbackEvent` carries the ``request_id`` of a
reward pgenrm served, the feedback processor looks the reward up here, finds
which candidates the user chose and rejected (by a hash of their text), and
records whether the reward agreed: per prototype (online accuracy), per signal,
and as a training example for the learned blend.

The log is a SQLite file (stdlib, WAL mode) next to the store; it keeps the
newest ``max_rows`` rewards. It is written by the reward path and read by the
feedback path, each under one lock, so neither touches user state.

Examples
--------
>>> import tempfile, pathlib
>>> log = ServedLog(pathlib.Path(tempfile.mkdtemp()) / "served.sqlite", max_rows=2)
>>> log.put(ServedReward(request_id="r1", user_id="u1", prototype_id=3, mode="personal",
...                      combination="paper",
...                      candidates=[text_hash("a"), text_hash("b")], final=[2.0, 1.0],
...                      components={"prior": [0.1, 0.0]}))
>>> log.get("r1").index_of("b")
1
>>> log.close()
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from infra.contracts import DegradedReason

MissingChains = Literal[DegradedReason, "generative_disabled", "not_requested"]
"""Why a served reward kept no chains: it fell back to the prior (a
:data:`~infra.contracts.DegradedReason`), generation is switched off, or none were asked for."""


def text_hash(text: str) -> str:
    """Short stable hash of a candidate's text (whitespace-trimmed).

    >>> text_hash(" hi ") == text_hash("hi")
    True
    """
    return hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:16]


class ServedReward(BaseModel):
    """What was answered for one request (enough to score it later)."""

    request_id: str
    user_id: str
    prototype_id: int | None = None
    mode: str
    combination: str
    candidates: list[str] = Field(default_factory=list)
    """Candidate text hashes (:func:`text_hash`), in request order."""
    final: list[float]
    components: dict[str, list[float]] = Field(default_factory=dict)

    def index_of(self, text: str) -> int | None:
        """Index of the candidate whose text is ``text``, if any."""
        h = text_hash(text)
        for i, c in enumerate(self.candidates):
            if c == h:
                return i
        return None


class _BoundedJsonLog:
    """SQLite-backed bounded map ``key -> JSON body`` (newest ``max_rows`` kept)."""

    def __init__(self, path: Path, table: str, *, max_rows: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self._table = table
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " request_id TEXT UNIQUE NOT NULL, body TEXT NOT NULL)"
        )
        with self._lock:
            self._trim()  # a smaller max_rows than the last process had

    def _put(self, key: str, body: str) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO {self._table} (request_id, body) VALUES (?, ?)",
                (key, body),
            )
            self._trim()

    def _trim(self) -> None:
        # seq is the primary key: finding MAX(seq) and the rows below the cut is an
        # index walk, so trimming on every put stays cheap
        t = self._table
        self._db.execute(
            f"DELETE FROM {t} WHERE seq <= (SELECT MAX(seq) FROM {t}) - ?", (self.max_rows,)
        )

    def _get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT body FROM {self._table} WHERE request_id = ?", (key,)
            ).fetchone()
        return str(row[0]) if row else None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ServedLog(_BoundedJsonLog):
    """SQLite-backed bounded map ``request_id -> ServedReward``."""

    def __init__(self, path: Path, *, max_rows: int = 100_000) -> None:
        super().__init__(path, "served", max_rows=max_rows)

    def put(self, reward: ServedReward) -> None:
        """Store ``reward``, evicting the oldest rows beyond ``max_rows``."""
        self._put(reward.request_id, reward.model_dump_json())

    def get(self, request_id: str) -> ServedReward | None:
        body = self._get(request_id)
        return ServedReward.model_validate(json.loads(body)) if body is not None else None

    def get_many(self, request_ids: Sequence[str]) -> dict[str, ServedReward]:
        return {r: s for r in request_ids if (s := self.get(r)) is not None}


CHAIN_TEXT_MAX = 4000
"""Characters of a served chain's text kept (the start: persona, criteria, scores)."""


class ServedChain(BaseModel):
    """One evaluation chain generated for a served request (what the MetaRM needs)."""

    source: str
    """``individual`` (the user's own history) or ``prototype`` (a neighbour's)."""
    text: str
    order: list[int] = Field(default_factory=list)
    """``order[k]`` is the request index shown in slot k."""
    ok: bool
    scores: list[float] | None = None
    """Scores in request order (None when the chain did not parse)."""
    failure: str | None = None


class ServedChains(BaseModel):
    """The chains behind one served reward, or why there are none."""

    request_id: str
    user_id: str
    context: str
    """The served request's conversation as text (:func:`reward.prompts.format_query`)."""
    chains: list[ServedChain] = Field(default_factory=list)
    missing: MissingChains | None = None
    """Why ``chains`` is empty (``None`` when it is not)."""


class ServedChainLog(_BoundedJsonLog):
    """SQLite-backed bounded map ``request_id -> ServedChains`` (kept apart: chains are large).

    >>> import tempfile, pathlib
    >>> log = ServedChainLog(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite", max_rows=1)
    >>> for r in ("r1", "r2"):
    ...     log.put(ServedChains(request_id=r, user_id="u", context="q", missing="deadline"))
    >>> log.get("r1") is None, log.get("r2").missing, log.count()
    (True, 'deadline', 1)
    >>> log.close()
    """

    def __init__(self, path: Path, *, max_rows: int = 10_000) -> None:
        super().__init__(path, "chains", max_rows=max_rows)

    def put(self, chains: ServedChains) -> None:
        self._put(chains.request_id, chains.model_dump_json())

    def get(self, request_id: str) -> ServedChains | None:
        body = self._get(request_id)
        return ServedChains.model_validate(json.loads(body)) if body is not None else None
