"""Generation backends behind :class:`reward.protocol.GenerationBackend`.

One adapter per real system: :class:`TransformersBackend` (CPU default),
:class:`VllmBackend` (in-process GPU; needs the ``gpu`` extra) and
:class:`OpenAIBackend` (HTTP to any OpenAI-compatible server). Adapters are
imported lazily so that importing this package stays cheap.

Prefill convention: when the last prompt message has role ``assistant``, every
backend *continues* that message instead of starting a new turn, and returns
only the continuation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reward.exceptions import BackendError

if TYPE_CHECKING:
    from infra.settings import ModelSettings
    from reward.backends.openai_backend import OpenAIBackend
    from reward.backends.transformers_backend import TransformersBackend
    from reward.backends.vllm_backend import VllmBackend
    from reward.protocol import GenerationBackend

__all__ = ["OpenAIBackend", "TransformersBackend", "VllmBackend", "load_backend"]


def __getattr__(name: str) -> Any:
    if name == "TransformersBackend":
        from reward.backends.transformers_backend import TransformersBackend

        return TransformersBackend
    if name == "VllmBackend":
        from reward.backends.vllm_backend import VllmBackend

        return VllmBackend
    if name == "OpenAIBackend":
        from reward.backends.openai_backend import OpenAIBackend

        return OpenAIBackend
    raise AttributeError(name)


def load_backend(settings: ModelSettings, models_dir: Path) -> GenerationBackend:
    """Build the backend ``settings.backend`` names, for ``settings.model``.

    Raises
    ------
    ModelInstallError
        An alias whose folder is not installed.
    BackendError
        ``openai`` without a base URL, or ``vllm`` without the gpu extra.
    """
    from reward.models import resolve_model

    if settings.backend == "transformers":
        from reward.backends.transformers_backend import TransformersBackend

        return TransformersBackend(resolve_model(settings.model, Path(models_dir)))
    if settings.backend == "vllm":
        from reward.backends.vllm_backend import VllmBackend

        return VllmBackend(resolve_model(settings.model, Path(models_dir)))
    if settings.backend == "openai":
        from reward.backends.openai_backend import OpenAIBackend

        if not settings.openai_base_url:
            raise BackendError("backend 'openai' needs PGENRM_MODELS__OPENAI_BASE_URL")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIBackend(settings.openai_base_url, model=settings.model, api_key=key)
    raise BackendError(f"unknown backend {settings.backend!r}")
