"""The served-reward log stays within its bound across restarts."""

from __future__ import annotations

from pathlib import Path

from stream.served import ServedLog, ServedReward


def _reward(rid: str) -> ServedReward:
    return ServedReward(request_id=rid, user_id="u", mode="personal", combination="paper", final=[])


def test_the_log_keeps_the_newest_rows_across_short_lived_processes(tmp_path: Path) -> None:
    path = tmp_path / "served.sqlite"
    for run in range(3):  # each process serves fewer requests than the bound
        log = ServedLog(path, max_rows=10)
        for i in range(8):
            log.put(_reward(f"r{run}-{i}"))
        assert log.count() <= 10
        log.close()
    log = ServedLog(path, max_rows=10)
    assert log.count() == 10 and log.get("r2-7") is not None and log.get("r0-7") is None
    log.close()
    smaller = ServedLog(path, max_rows=4)  # a smaller bound applies at once
    assert smaller.count() == 4 and smaller.get("r2-4") is not None
    smaller.close()
