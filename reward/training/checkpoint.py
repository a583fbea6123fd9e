"""Resumable SFT checkpoints (GRPO uses TRL's, see :mod:`reward.training.grpo`).

A run folder holds ``checkpoint-<step>/`` folders, each with the model and
tokenizer (``save_pretrained``, safetensors), ``optimizer.pt`` and ``state.json``
(step, config, metrics; each step reseeds from the run seed and the step number).
Only the newest ``keep`` checkpoints are kept. A checkpoint folder is written
under a temporary name and renamed when complete, so a crash never leaves a half
checkpoint that :func:`latest_checkpoint` would pick.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> (d / "checkpoint-3").mkdir(); (d / "checkpoint-12").mkdir(); (d / "checkpoint-7.tmp").mkdir()
>>> latest_checkpoint(d).name
'checkpoint-12'
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from reward.training.exceptions import TrainingError

_CKPT = re.compile(r"^checkpoint-(\d+)$")
STATE = "state.json"


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in run_dir.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    optimizer: Any,
    state: dict[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write ``checkpoint-<step>`` atomically and prune older ones beyond ``keep``."""
    import torch

    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f"checkpoint-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    full = {**state, "step": step}
    (tmp / STATE).write_text(json.dumps(full, indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(ckpt: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((Path(ckpt) / STATE).read_text()))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{ckpt} is not a readable checkpoint: {exc}") from exc


def load_optimizer(ckpt: Path, optimizer: Any) -> None:
    import torch

    path = Path(ckpt) / "optimizer.pt"
    if path.is_file():
        optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
