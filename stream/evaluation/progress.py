"""The resumable progress log: ``OUT/progress.jsonl`` plus ``OUT/run.json``.

Each finished (scorer, mode, m, n, pair) appends one JSON line with its
``key``; a restarted run reads the log, skips the keys it holds and scores
only the rest. A line cut short by an interruption is ignored (and that pair
is scored again). ``run.json`` records the configuration; resuming with a
different one is refused (pass ``restart=True`` to start over).

Examples
--------
>>> import tempfile, pathlib
>>> log = ProgressLog(pathlib.Path(tempfile.mkdtemp()))
>>> log.open({"dataset": "d"}, restart=False)
{}
>>> log.append({"key": "prior|personalized|-|-|p1", "outcome": "correct"})
>>> sorted(ProgressLog(log.out).read())
['prior|personalized|-|-|p1']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from stream.evaluation.exceptions import ResumeMismatchError

RESUME_KEYS = (
    "dataset",
    "path",
    "swap",
    "stated",
    "seed",
    "history",
    "feed_all",
    "swap_chains",
    "rebuild",
    "prototypes",
)
"""Configuration entries that must match to resume (limits, scorers and grids may grow)."""


def task_key(scorer: str, mode: str, m: int | None, n: int | None, pair_id: str) -> str:
    """The progress key of one task.

    >>> task_key("chain", "grid", 2, 1, "t/0#1")
    'chain|grid|2|1|t/0#1'
    """
    return f"{scorer}|{mode}|{'-' if m is None else m}|{'-' if n is None else n}|{pair_id}"


class ProgressLog:
    """Append-only log of finished tasks under ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / "progress.jsonl"
        self.run_path = self.out / "run.json"
        self.corrupt_lines = 0
        self._fh: TextIO | None = None

    def read(self) -> dict[str, dict[str, Any]]:
        """Finished records by key (a later duplicate line wins; bad lines are counted)."""
        done: dict[str, dict[str, Any]] = {}
        self.corrupt_lines = 0
        if not self.path.exists():
            return done
        with self.path.open() as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    done[rec["key"]] = rec
                except (ValueError, KeyError, TypeError):
                    self.corrupt_lines += 1
        return done

    def run_info(self) -> dict[str, Any]:
        return json.loads(self.run_path.read_text()) if self.run_path.exists() else {}

    def open(self, config: dict[str, Any], *, restart: bool) -> dict[str, dict[str, Any]]:
        """Check ``config`` against ``run.json`` and return the finished records."""
        self.out.mkdir(parents=True, exist_ok=True)
        info = self.run_info()
        if restart:
            self.path.unlink(missing_ok=True)
            info = {}
        old = info.get("config", {})
        diff = {
            k: (old.get(k), config.get(k))
            for k in RESUME_KEYS
            if old and old.get(k) != config.get(k)
        }
        if diff:
            raise ResumeMismatchError(
                f"{self.out} holds a run with another configuration {diff}; "
                "use another --out or pass --restart"
            )
        info["config"] = config
        info.setdefault("sessions", [])
        self.write_info(info)
        return self.read()

    def write_info(self, info: dict[str, Any]) -> None:
        tmp = self.run_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
        tmp.replace(self.run_path)

    def add_session(self, session: dict[str, Any]) -> None:
        info = self.run_info()
        info.setdefault("sessions", []).append(session)
        self.write_info(info)

    def append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            # An interrupted writer may have left a partial last line: start on a fresh one.
            needs_nl = False
            if self.path.exists() and self.path.stat().st_size > 0:
                with self.path.open("rb") as fh:
                    fh.seek(-1, 2)
                    needs_nl = fh.read(1) != b"\n"
            self._fh = self.path.open("a")
            if needs_nl:
                self._fh.write("\n")
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
