"""GRPO for the generative reward model on TRL's ``GRPOTrainer``.

The trainer samples ``group_size`` chains per prompt, scores them with the
composite rewards (:mod:`reward.training.trl_rewards`, which wraps
:class:`~reward.training.rollout_rewards.RewardComputer`), computes group-relative
advantages and takes the clipped-surrogate step with a KL term to the starting
model. This module adds what the product needs around it:

- the data: each row rendered as the product's own chain prompt (the same text
  :class:`reward.scoring.ChainScorer` serves, optional PART 2 prefill), with a
  seeded random candidate order (position debiasing);
- the **online MetaRM**: inside the reward function, every batch's valid-format
  rollouts on rows with a human critique update the MetaRM *before* rows without a
  critique are scored (RM-NLHF's update-then-use); with several processes the
  update examples are gathered first, so every rank's MetaRM takes the same steps;
- checkpoints: TRL/transformers ``checkpoint-<step>/`` folders (model, optimiser,
  scheduler, RNG, ``trainer_state.json``) plus ``metarm/`` and ``pgenrm_state.json``
  (reward counters), written by :class:`MetaRMCheckpoint`. With ``resume`` the
  newest checkpoint of ``output_dir`` is continued, MetaRM included;
- logging: TRL's metrics (``reward``, ``reward_std``, ``kl``, ``completions/*`` ...)
  plus ``pgenrm/*`` (format rate, accuracy, q rate, MetaRM version and loss), one
  JSON line per logging step in ``output_dir/log.jsonl``, and a rich progress panel.

Run on GPUs (see the README's Training section): ``--device cuda --dtype bfloat16``
on one GPU; ``accelerate launch -m infra.cli train grpo ...`` for several (prompts
per step are per process); ``--trl use_vllm=true --trl vllm_mode=colocate`` for
vLLM generation (needs the ``gpu`` extra). Any other ``trl.GRPOConfig`` field can be
set with ``--trl name=value``. Stop strings are not used (TRL's transformers
generation path passes no tokenizer to ``generate``): chains end at EOS or
``max_new_tokens``, and the chain parser ignores text after ``<JSON_END>``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from reward.nlhf.matchers import ArgumentMatcher
from reward.nlhf.rows import NlhfRow
from reward.training.exceptions import TrainingError
from reward.training.rewards_types import RewardKindName
from reward.training.rollout_rewards import OnlineMetaRM, RewardComputer

log = logging.getLogger(__name__)

PGENRM_STATE = "pgenrm_state.json"
METARM_DIR = "metarm"


@dataclass
class GRPOConfig:
    """Settings of a GRPO run (plain values; mapped onto ``trl.GRPOConfig``).

    ``prompts_per_step`` is per process: one optimiser step sees
    ``prompts_per_step * group_size`` completions on every process. ``trl`` holds
    extra ``trl.GRPOConfig`` fields, applied last (e.g. ``{"use_vllm": True}``).
    """

    model: str
    output_dir: str
    steps: int = 10
    prompts_per_step: int = 2
    group_size: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 256
    lr: float = 1e-6
    lr_scheduler: str = "constant"
    beta: float = 0.001
    clip_eps: float = 0.2
    iterations: int = 1
    reward: RewardKindName = "nlhf"
    prefill: bool = False
    template: str | None = None
    save_every: int = 50
    keep: int = 2
    logging_steps: int = 1
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    report_to: str = "none"
    resume: bool = True
    trl: dict[str, Any] = field(default_factory=dict)


@dataclass
class GRPOSummary:
    steps_done: int
    resumed_from: int
    checkpoint: str | None
    metarm_version: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def trl_args(config: GRPOConfig) -> Any:
    """The ``trl.GRPOConfig`` of ``config`` (:class:`TrainingError` when invalid or no TRL)."""
    try:
        from trl import GRPOConfig as TRLConfig
    except ImportError as exc:
        raise TrainingError(
            "GRPO needs TRL, the `train` extra: "
            "pip install -c infra/requirements.lock -e '.[train]'"
        ) from exc

    kwargs: dict[str, Any] = {
        "output_dir": config.output_dir,
        "max_steps": config.steps,
        "per_device_train_batch_size": config.prompts_per_step * config.group_size,
        "num_generations": config.group_size,
        "temperature": config.temperature,
        "max_completion_length": config.max_new_tokens,
        "learning_rate": config.lr,
        "lr_scheduler_type": config.lr_scheduler,
        "beta": config.beta,
        "epsilon": config.clip_eps,
        "num_iterations": config.iterations,
        "save_strategy": "steps",
        "save_steps": config.save_every,
        "save_total_limit": config.keep,
        "logging_steps": config.logging_steps,
        "seed": config.seed,
        "data_seed": config.seed,
        "use_cpu": config.device == "cpu",
        "bf16": config.dtype == "bfloat16",
        "model_init_kwargs": {"dtype": config.dtype},
        "max_grad_norm": config.max_grad_norm,
        "gradient_checkpointing": config.gradient_checkpointing,
        "report_to": config.report_to,
        "disable_tqdm": True,
    }
    kwargs.update(config.trl)
    try:
        return TRLConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"invalid GRPO settings: {exc}") from exc


def load_metarm(folder: Path, like: OnlineMetaRM) -> OnlineMetaRM:
    """Load a MetaRM saved by ``like``'s class (the embedding one needs ``like``'s embedder)."""
    from reward.nlhf.metarm import MetaRM

    if isinstance(like, MetaRM):
        return MetaRM.load(folder, like.embedder)
    loader = getattr(type(like), "load", None)
    if loader is None:
        raise TrainingError(f"{type(like).__name__} cannot be loaded from a checkpoint")
    loaded: OnlineMetaRM = loader(folder)
    return loaded


class MetaRMCheckpoint(TrainerCallback):
    """Saves the MetaRM and the reward counters into every checkpoint; logs JSON lines.

    ``on_save`` writes ``checkpoint-<step>/metarm/`` and ``pgenrm_state.json`` (the
    run's settings and :attr:`RewardComputer.counts`); ``on_log`` appends the
    trainer's metrics to ``output_dir/log.jsonl``; ``on_train_end`` writes the final
    MetaRM to ``output_dir/metarm``. Only the main process writes.
    """

    def __init__(self, computer: RewardComputer, config: GRPOConfig) -> None:
        self.computer = computer
        self.config = config

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.computer.metarm is not None:
            self.computer.metarm.save(ckpt / METARM_DIR)  # type: ignore[attr-defined]
        (ckpt / PGENRM_STATE).write_text(
            json.dumps(
                {
                    "kind": "grpo",
                    "step": state.global_step,
                    "config": asdict(self.config),
                    "counts": dict(self.computer.counts),
                    "metarm_version": getattr(self.computer.metarm, "version", None),
                },
                indent=2,
                default=str,
            )
        )

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        with (Path(args.output_dir) / "log.jsonl").open("a") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.computer.metarm is not None:
            self.computer.metarm.save(Path(args.output_dir) / METARM_DIR)  # type: ignore[attr-defined]


def _last_checkpoint(run_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    return Path(found) if found else None


def _gather() -> Any:
    """``accelerate``'s ``gather_object`` when several processes train, else None."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    return gather_object if PartialState().num_processes > 1 else None


def build_trainer(
    config: GRPOConfig,
    rows: Sequence[NlhfRow],
    matcher: ArgumentMatcher,
    metarm: OnlineMetaRM | None = None,
    *,
    progress: bool = True,
) -> tuple[Any, RewardComputer, Path | None]:
    """(``GRPOTrainer``, its reward computer, the checkpoint to resume from or None).

    With ``config.resume`` and a checkpoint in ``output_dir``, the MetaRM and the
    reward counters are restored from it (``metarm`` only gives the MetaRM's class
    and embedder then).
    """
    args = trl_args(config)  # first: a clear error without TRL or with bad settings
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from reward.prompts import PromptTemplate
    from reward.training.trl_rewards import make_reward_funcs, trl_rows

    if not rows:
        raise TrainingError("no training rows")
    run_dir = Path(config.output_dir)
    ckpt = _last_checkpoint(run_dir) if config.resume else None
    counts: Counter[str] = Counter()
    if ckpt is not None:
        if metarm is not None:
            if (ckpt / METARM_DIR).is_dir():
                metarm = load_metarm(ckpt / METARM_DIR, metarm)
            else:
                log.warning("%s has no MetaRM; continuing with the one given", ckpt)
        if (ckpt / PGENRM_STATE).is_file():
            counts.update(json.loads((ckpt / PGENRM_STATE).read_text()).get("counts", {}))
    try:
        tok = AutoTokenizer.from_pretrained(config.model, padding_side="left")
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load tokenizer of {config.model!r}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    template = (
        PromptTemplate.load(Path(config.template)) if config.template else PromptTemplate.load()
    )
    dataset = Dataset.from_list(
        trl_rows(rows, tok, template=template, seed=config.seed, prefill=config.prefill)
    )
    funcs: list[Any] = make_reward_funcs(config.reward, matcher, metarm, gather=_gather())
    computer: RewardComputer = funcs[0].computer
    computer.counts.update(counts)
    callbacks: list[Any] = [MetaRMCheckpoint(computer, config)]
    if progress:
        from trl.trainer.callbacks import RichProgressCallback

        callbacks.append(RichProgressCallback())
    try:
        trainer = GRPOTrainer(
            model=config.model,
            reward_funcs=funcs,
            args=args,
            train_dataset=dataset,
            processing_class=tok,
            callbacks=callbacks,
        )
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot start GRPO on {config.model!r}: {exc}") from exc
    if progress:  # the rich panel shows the metrics; no raw dict per step on top of it
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer, computer, ckpt


def run_grpo(
    config: GRPOConfig,
    rows: Sequence[NlhfRow],
    matcher: ArgumentMatcher,
    metarm: OnlineMetaRM | None = None,
    *,
    progress: bool = True,
) -> GRPOSummary:
    """Train ``config.model`` with GRPO on ``rows``; resumes from ``output_dir`` when allowed."""
    trainer, computer, ckpt = build_trainer(config, rows, matcher, metarm, progress=progress)
    resumed_from = 0
    if ckpt is not None:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        resumed_from = int(state["global_step"])
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    last = _last_checkpoint(Path(config.output_dir))
    return GRPOSummary(
        steps_done=int(trainer.state.global_step),
        resumed_from=resumed_from,
        checkpoint=str(last) if last else None,
        metarm_version=getattr(computer.metarm, "version", None),
        counts=dict(computer.counts),
        history=[h for h in trainer.state.log_history if "loss" in h or "reward" in h],
    )
