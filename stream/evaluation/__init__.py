"""Offline evaluation of pgenrm's scorers (``pgenrm eval``), through the service's own code.

Modules: :mod:`.dataset` (common form), :mod:`.prefeval`,
:mod:`.personal_reward_bench`, :mod:`.jsonl` and :mod:`.loaders` (datasets),
:mod:`.modes` (scorers and modes), :mod:`.metrics`, :mod:`.progress` and
:mod:`.runner` (resumable scoring), :mod:`.service` (the service seam),
:mod:`.report` and :mod:`.plots` (outputs), :mod:`.evaluate` (one call).
Heavy imports (torch, the embedder, Qdrant Edge) happen only when a service opens.
See README.md in this folder for the results.json schema.
"""

from __future__ import annotations

from stream.evaluation.dataset import EvalDataset, EvalUser, TestPair
from stream.evaluation.evaluate import run_evaluation
from stream.evaluation.loaders import load_dataset
from stream.evaluation.metrics import PairOutcome, summarize

__all__ = [
    "EvalDataset",
    "EvalUser",
    "PairOutcome",
    "TestPair",
    "load_dataset",
    "run_evaluation",
    "summarize",
]
