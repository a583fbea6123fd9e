"""Dataset name -> loader.

>>> sorted(DATASETS)
['jsonl', 'personalrewardbench', 'prefeval']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream.evaluation.dataset import EvalDataset
from stream.evaluation.exceptions import DatasetError
from stream.evaluation.jsonl import load_jsonl
from stream.evaluation.personal_reward_bench import load_personal_reward_bench
from stream.evaluation.prefeval import load_prefeval

DATASETS: dict[str, Callable[..., EvalDataset]] = {
    "prefeval": load_prefeval,
    "personalrewardbench": load_personal_reward_bench,
    "jsonl": load_jsonl,
}
ALIASES = {"prb": "personalrewardbench", "personal-reward-bench": "personalrewardbench"}


def load_dataset(name: str, path: str | Path, **options: Any) -> EvalDataset:
    """Load ``path`` with the loader called ``name`` (options go to the loader)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    loader = DATASETS[key]
    if key == "jsonl":
        options = {}
    elif key == "prefeval":
        options = {k: v for k, v in options.items() if k in ("stated", "topics")}
    else:
        options = {k: v for k, v in options.items() if k in ("history", "seed", "name")}
    return loader(path if key == "personalrewardbench" else Path(path), **options)
