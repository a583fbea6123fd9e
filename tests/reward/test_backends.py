"""Backends against real models: transformers in-process, OpenAI over real HTTP, vLLM on GPU."""

from __future__ import annotations

import importlib.util

import pytest

from infra.settings import ModelSettings
from reward.backends import load_backend
from reward.backends.openai_backend import OpenAIBackend
from reward.backends.transformers_backend import TransformersBackend
from reward.exceptions import BackendError, ModelInstallError
from reward.testing.openai_server import free_port, serve
from tests.reward.contract import PROMPTS, check_backend


def test_transformers_contract(smol_backend: TransformersBackend) -> None:
    check_backend(smol_backend)


def test_transformers_batches_all_samples_in_one_call(smol_backend: TransformersBackend) -> None:
    calls = []
    real = smol_backend.model.generate

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs["input_ids"].shape[0])  # type: ignore[attr-defined]
        return real(*args, **kwargs)

    smol_backend.model.generate = spy
    try:
        out = smol_backend.generate(PROMPTS, n=4, max_tokens=4)
    finally:
        del smol_backend.model.generate
    assert calls == [8] and [len(g) for g in out] == [4, 4]  # 2 prompts x 4 rows, one call


def test_shared_prefix_prefill_matches_plain_generate(smollm2_path: str) -> None:
    # float32 so that the two code paths are numerically comparable; prompts of
    # different lengths so that left padding is exercised.
    shared = TransformersBackend(smollm2_path, dtype="float32")
    plain = TransformersBackend(smollm2_path, dtype="float32", share_prefix=False)
    a = shared.generate(PROMPTS, n=2, temperature=0.0, max_tokens=8)
    b = plain.generate(PROMPTS, n=2, temperature=0.0, max_tokens=8)
    assert [[c.text for c in g] for g in a] == [[c.text for c in g] for g in b]


def test_transformers_max_batch_splits(smollm2_path: str) -> None:
    b = TransformersBackend(smollm2_path, max_batch=2)
    calls = []
    real = b.model.generate

    def spy(*a: object, **k: object) -> object:
        calls.append(1)
        return real(*a, **k)

    b.model.generate = spy
    out = b.generate(PROMPTS, n=2, max_tokens=3)
    assert len(calls) == 2 and [len(g) for g in out] == [2, 2]


def test_openai_contract_over_http(smol_backend: TransformersBackend) -> None:
    with serve(smol_backend) as srv, OpenAIBackend(srv.url, model="smollm2") as client:
        check_backend(client)


def test_openai_retries_5xx_then_succeeds(smol_backend: TransformersBackend) -> None:
    with (
        serve(smol_backend, fail_first=2) as srv,
        OpenAIBackend(srv.url, model="smollm2", backoff_s=0.01) as client,
    ):
        out = client.generate([PROMPTS[0]], n=2, max_tokens=4)
        assert len(out[0]) == 2
        assert client.attempts == 3
        assert srv.app.state.counters["requests"] == 3


def test_openai_gives_up_after_retries(smol_backend: TransformersBackend) -> None:
    with (
        serve(smol_backend, fail_first=100) as srv,
        OpenAIBackend(srv.url, model="smollm2", retries=2, backoff_s=0.01) as client,
        pytest.raises(BackendError, match="after 3 attempts"),
    ):
        client.generate([PROMPTS[0]], n=1, max_tokens=4)


def test_openai_connection_refused_is_backend_error() -> None:
    with OpenAIBackend(
        f"http://127.0.0.1:{free_port()}", model="x", retries=1, backoff_s=0.01
    ) as c:
        with pytest.raises(BackendError, match="ConnectError"):
            c.generate([PROMPTS[0]], max_tokens=2)
        assert c.attempts == 2


def test_openai_4xx_is_not_retried(smol_backend: TransformersBackend) -> None:
    with serve(smol_backend) as srv, OpenAIBackend(srv.url, model="m", backoff_s=0.01) as client:
        with pytest.raises(BackendError, match="HTTP 422"):
            client._post({"messages": []})
        assert client.attempts == 1


def test_load_backend(reward_models_dir: object, smollm2_path: str) -> None:
    b = load_backend(ModelSettings(model="smollm2"), reward_models_dir)  # type: ignore[arg-type]
    assert isinstance(b, TransformersBackend) and b.model_id == smollm2_path
    with pytest.raises(BackendError, match="OPENAI_BASE_URL"):
        load_backend(ModelSettings(backend="openai"), reward_models_dir)  # type: ignore[arg-type]
    o = load_backend(
        ModelSettings(backend="openai", model="srv-model", openai_base_url="http://127.0.0.1:1/"),
        reward_models_dir,  # type: ignore[arg-type]
    )
    assert isinstance(o, OpenAIBackend) and o.base_url == "http://127.0.0.1:1/v1"
    with pytest.raises(ModelInstallError, match="No PyPI package"):
        load_backend(ModelSettings(model="qwen1.5b"), reward_models_dir)  # type: ignore[arg-type]


def _has_gpu_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu_vllm(), reason="needs CUDA and the gpu extra (vllm)")
def test_vllm_contract(smollm2_path: str) -> None:
    from reward.backends.vllm_backend import VllmBackend

    check_backend(VllmBackend(smollm2_path, gpu_memory_utilization=0.3))
