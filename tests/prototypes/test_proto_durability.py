"""Qdrant Edge keeps everything across a clean reopen and across SIGKILL after flush()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from prototypes.protocol import Prototype, UserState
from prototypes.stores import open_stores
from tests.prototypes.conftest import DIM, item, make_settings

REPO = Path(__file__).resolve().parents[2]


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "edge")
    s = open_stores(settings, dim=DIM)
    s.users.put(UserState(user_id="a", history=[item(1)], prototype_id=1), np.ones(DIM))
    s.prototypes.put([Prototype(prototype_id=1, centroid=[1.0] * DIM, size=1)])
    s.ledger.mark(["e1"])
    s.close()
    s = open_stores(settings, dim=DIM)
    try:
        a = s.users.get("a")
        assert a is not None and a.prototype_id == 1 and a.history == [item(1)]
        assert s.prototypes.get(1) is not None
        assert s.ledger.seen(["e1", "e2"]) == {"e1"}
        assert len(s.users.neighbours(np.ones(DIM), limit=3, prototype_id=1)) == 1
    finally:
        s.close()


WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from infra.settings import Settings
    from prototypes.protocol import Prototype, UserState
    from prototypes.stores import open_stores
    s = open_stores(Settings(data_dir=sys.argv[1]), dim=int(sys.argv[2]))
    n, d = int(sys.argv[3]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    for b in range(0, n, 100):
        s.users.put_many([(UserState(user_id=f"u{i}", version=i, prototype_id=i % 5),
                           rng.standard_normal(d)) for i in range(b, b + 100)])
    s.prototypes.put([Prototype(prototype_id=j, centroid=[1.0] * d, size=j) for j in range(5)])
    s.ledger.mark([f"event-{i}" for i in range(n)])
    s.flush()
    print("flushed", flush=True)
    time.sleep(600)
    """
)


def test_sigkill_after_flush_loses_nothing(tmp_path: Path) -> None:
    n = 500
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), str(DIM), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "flushed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    s = open_stores(make_settings(tmp_path, "edge"), dim=DIM)
    try:
        assert s.users.count() == n
        u = s.users.get("u321")
        assert u is not None and u.version == 321 and u.prototype_id == 1
        assert [p.size for p in s.prototypes.all()] == [0, 1, 2, 3, 4]
        keys = [f"event-{i}" for i in range(n)]
        assert s.ledger.seen(keys) == set(keys)
    finally:
        s.close()
