"""Real training steps on CPU with SmolLM2: GRPO with composite rewards and the online
MetaRM, evaluation-chain SFT, checkpoints and resume, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

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


def weights_sum(folder: str | Path) -> float:
    from safetensors.torch import load_file

    t = load_file(str(Path(folder) / "model.safetensors"))
    return float(sum(v.double().abs().sum() for v in t.values()))


def test_grpo_smoke_changes_weights_checkpoints_and_resumes(
    smollm2_path: str,
    tiny_template: Path,
    embedder,
    matcher,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from reward.training.grpo import GRPOConfig, run_grpo

    cfg = GRPOConfig(
        model=smollm2_path,
        output_dir=str(tmp_path / "grpo"),
        steps=1,
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=8,
        lr=2e-5,
        beta=0.01,
        prefill=True,
        template=str(tiny_template),
        stop=["}"],
        save_every=1,
        seed=0,
    )
    metarm = MetaRM(embedder, seed=0)
    s = run_grpo(cfg, ROWS, matcher, metarm, progress=False)
    assert s.steps_done == 1 and s.resumed_from == 0
    rec = s.history[0]
    assert rec["reward_std"] > 0, rec  # rewards differ inside the groups: the step learns
    ck = latest_checkpoint(tmp_path / "grpo")
    assert ck is not None and ck.name == "checkpoint-1"
    assert weights_sum(ck) != pytest.approx(weights_sum(smollm2_path), rel=0, abs=1e-6)
    state = read_state(ck)
    assert state["kind"] == "grpo" and state["counts"]["rollouts"] == 8
    assert (ck / "metarm" / "metarm.json").is_file()
    log = [json.loads(x) for x in (tmp_path / "grpo" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]
    # Resume: one more step starts from checkpoint-1, keeps the MetaRM version going.
    cfg.steps = 2
    s2 = run_grpo(cfg, ROWS, matcher, MetaRM(embedder, seed=0), progress=False)
    assert s2.resumed_from == 1 and s2.steps_done == 2
    assert [p.name for p in checkpoints(tmp_path / "grpo")] == ["checkpoint-1", "checkpoint-2"]
    v1 = json.loads((ck / "metarm" / "metarm.json").read_text())["version"]
    v2 = json.loads((tmp_path / "grpo" / "checkpoint-2" / "metarm" / "metarm.json").read_text())[
        "version"
    ]
    assert v2 >= v1


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
