"""Real training steps on CPU with SmolLM2: GRPO on TRL's GRPOTrainer with the composite
rewards and the online MetaRM, evaluation-chain SFT, checkpoints and resume, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reward.nlhf.metarm import MetaRM
from reward.nlhf.rows import NlhfRow
from reward.training.checkpoint import checkpoints, latest_checkpoint, read_state

ROWS = [
    NlhfRow(
        "Pick a hotel for a quiet weekend.",
        "A quiet spa hotel in the hills.",
        "A party hotel next to nightclubs.",
        "A",
        "The spa is quiet; the party hotel is too loud.",
    ),
    NlhfRow(
        "Suggest a healthy snack.", "A deep-fried candy bar.", "A fresh fruit salad.", "B", None
    ),
]


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: on a shared 2-core machine two threads run several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights_sum(folder: str | Path) -> float:
    from safetensors.torch import load_file

    t = load_file(str(Path(folder) / "model.safetensors"))
    return float(sum(v.double().abs().sum() for v in t.values()))


GRPO_FLAGS = [
    "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "8",
    "--lr", "2e-5", "--beta", "0.01", "--prefill", "--save-every", "1", "--seed", "0",
    "--no-progress",
]  # fmt: skip


def metarm_version(ckpt: Path) -> int:
    return int(json.loads((ckpt / "metarm" / "metarm.json").read_text())["version"])


def test_grpo_trl_smoke_changes_weights_checkpoints_and_resumes(
    smollm2_path: str,
    tiny_template: Path,
    embedder: Any,
    matcher: Any,
    tmp_path: Path,
) -> None:
    """Two real GRPOTrainer steps on CPU: step 1 through ``pgenrm train grpo``, then a resume."""
    from typer.testing import CliRunner

    from infra.cli import app
    from reward.training.data import write_rows
    from reward.training.grpo import GRPOConfig, run_grpo

    data = tmp_path / "rows.jsonl"
    write_rows(ROWS, data)
    run = tmp_path / "grpo"
    res = CliRunner().invoke(
        app,
        [
            "train", "grpo", "--data", str(data), "--model", smollm2_path, "--output", str(run),
            "--steps", "1", "--template", str(tiny_template), *GRPO_FLAGS,
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ck1 = latest_checkpoint(run)
    assert ck1 is not None and ck1.name == "checkpoint-1"
    # The TRL checkpoint is complete (model, optimiser, scheduler, RNG, state) and holds the MetaRM.
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (ck1 / name).is_file(), name
    assert weights_sum(ck1) != pytest.approx(weights_sum(smollm2_path), rel=0, abs=1e-6)
    state1 = json.loads((ck1 / "pgenrm_state.json").read_text())
    assert state1["counts"]["rollouts"] == 4 and state1["counts"]["critique_rows"] == 2
    v1 = metarm_version(ck1)
    assert v1 >= 1 and state1["metarm_version"] == v1  # updated online during step 1
    log1 = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    step1 = next(r for r in log1 if "reward" in r)
    assert step1["step"] == 1 and step1["reward_std"] > 0  # rewards differ inside the groups
    assert step1["pgenrm/metarm_version"] == v1

    # Resume from checkpoint-1 for one more step: the MetaRM and counters continue.
    cfg = GRPOConfig(
        model=smollm2_path,
        output_dir=str(run),
        steps=2,
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=8,
        lr=2e-5,
        beta=0.01,
        prefill=True,
        template=str(tiny_template),
        save_every=1,
        seed=0,
    )
    s = run_grpo(cfg, ROWS, matcher, MetaRM(embedder, seed=0), progress=False)
    assert s.resumed_from == 1 and s.steps_done == 2
    assert [p.name for p in checkpoints(run)] == ["checkpoint-1", "checkpoint-2"]
    ck2 = run / "checkpoint-2"
    # The MetaRM continues from checkpoint-1's: one version per online update in step 2 (an
    # update needs a critique row whose chain parsed; off-scale scores do not).
    step2_updates = s.counts["metarm_updates"] - state1["counts"].get("metarm_updates", 0)
    assert metarm_version(ck2) == v1 + step2_updates and s.metarm_version == metarm_version(ck2)
    assert metarm_version(run) == s.metarm_version  # final MetaRM next to the checkpoints
    assert s.counts["rollouts"] == 8  # counters restored from checkpoint-1, then 4 more
    # The resumed policy is checkpoint-1's, not the base model: it already differs from the
    # reference (KL > 0 on its first step), and step 2 changes it again.
    assert s.history[-1]["kl"] > 0
    assert weights_sum(ck2) != pytest.approx(weights_sum(ck1), rel=0, abs=1e-6)


def test_trl_reward_function_matches_reward_computer_and_updates_metarm_first(
    embedder: Any,
    matcher: Any,
) -> None:
    """The reward function TRL calls: same rewards as RewardComputer, MetaRM updated before use."""
    from reward.nlhf.metarm import MetaRM
    from reward.training.data import synthetic_chain
    from reward.training.rollout_rewards import RewardComputer
    from reward.training.trl_rewards import make_reward_funcs, trl_rows

    class PlainTemplate:  # no chat template: "role: content" blocks
        chat_template = None

    recs = trl_rows(ROWS, PlainTemplate(), seed=1)
    good = [synthetic_chain(r, rec["order"]) for r, rec in zip(ROWS, recs, strict=True)]
    # Per row: a correct chain, then a malformed one (as TRL repeats a prompt per completion).
    batch = [rec for rec in recs for _ in range(2)]
    completions = [c for g in good for c in (g, "no chain here")]
    cols = {k: [rec[k] for rec in batch] for k in batch[0] if k != "prompt"}
    logged: dict[str, float] = {}
    [func] = make_reward_funcs("nlhf", matcher, MetaRM(embedder, seed=0))
    rewards = func(
        prompts=[rec["prompt"] for rec in batch],
        completions=completions,
        log_metric=logged.__setitem__,
        **cols,
    )
    reference = RewardComputer("nlhf", matcher, MetaRM(embedder, seed=0))
    expected = reference(
        [ROWS[0], ROWS[0], ROWS[1], ROWS[1]], completions, [b["order"] for b in batch]
    )
    assert rewards == [x.reward for x in expected]
    assert rewards[1] == rewards[3] == -1.0  # format errors
    assert rewards[0] in (1.0, 1.5)  # right verdict on a critique row: o + 0.5 q
    # Row 2 has no critique: scored by the MetaRM after one update on row 1's rollout.
    assert func.computer.metarm.version == 1  # type: ignore[attr-defined]
    assert expected[2].metarm is not None and rewards[2] == pytest.approx(
        1 + 0.5 * max(0.0, expected[2].metarm - 1)
    )
    assert logged["pgenrm/metarm_version"] == 1.0
    assert logged["pgenrm/format_rate"] == 0.5 and logged["pgenrm/accuracy"] == 0.5


def test_sft_smoke_and_resume(smollm2_path: str, tiny_template: Path, tmp_path: Path) -> None:
    from reward.prompts import PromptTemplate
    from reward.training.data import make_example, synthetic_chain
    from reward.training.sft import SFTConfig, run_sft

    tmpl = PromptTemplate.load(tiny_template)
    pairs = []
    for r in ROWS:
        ex = make_example(r, order=[0, 1], template=tmpl)
        pairs.append((ex, synthetic_chain(r, ex.order)))
    cfg = SFTConfig(
        model=smollm2_path,
        output_dir=str(tmp_path / "sft"),
        steps=2,
        batch_size=1,
        lr=1e-4,
        save_every=2,
        max_length=384,
    )
    s = run_sft(cfg, pairs, progress=False)
    assert s.steps_done == 2 and all(h["loss"] > 0 for h in s.history)
    ck = latest_checkpoint(tmp_path / "sft")
    assert ck is not None and read_state(ck)["step"] == 2
    assert weights_sum(ck) != pytest.approx(weights_sum(smollm2_path), rel=0, abs=1e-6)
    cfg.steps = 3
    s2 = run_sft(cfg, pairs, progress=False)
    assert s2.resumed_from == 2 and s2.steps_done == 3


def test_cli_train_sft(
    smollm2_path: str, tiny_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from infra.cli import app
    from reward.training.data import write_rows

    data = tmp_path / "rows.jsonl"
    write_rows(ROWS, data)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0 and "sft" in res.output and "grpo" in res.output
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "train",
            "sft",
            "--data",
            str(data),
            "--model",
            smollm2_path,
            "--output",
            str(out),
            "--steps",
            "1",
            "--batch-size",
            "1",
            "--template",
            str(tiny_template),
        ],
    )
    assert res.exit_code == 0, res.output
    assert latest_checkpoint(out) is not None
    res = runner.invoke(app, ["train", "sft", "--model", smollm2_path])
    assert res.exit_code == 2  # neither --data nor --prefeval
    # Bad GRPO settings fail before any model is loaded.
    base = ["train", "grpo", "--data", str(data), "--model", smollm2_path, "--output", str(out)]
    res = runner.invoke(app, [*base, "--trl", "no_equals_sign"])
    assert res.exit_code == 2 and "name=value" in res.output
    res = runner.invoke(app, [*base, "--trl", "not_a_grpo_field=1"])
    assert res.exit_code == 2 and "invalid GRPO settings" in res.output
    res = runner.invoke(app, [*base, "--group-size", "1"])  # no group advantage from 1 sample
    assert res.exit_code == 2 and "invalid GRPO settings" in res.output
