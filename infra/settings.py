"""Settings, read from ``PGENRM_*`` environment variables (pydantic-settings).

Nested groups use ``__``: ``PGENRM_BROKER__URLS=kafka:9092``.

>>> Settings(broker={"urls": "a:1,b:2"}).broker.bootstrap
['a:1', 'b:2']
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerSettings(BaseModel):
    urls: str = "127.0.0.1:19092"
    """Comma-separated bootstrap servers. Used when ``embedded`` is false."""
    embedded: bool = True
    """Start the bundled tansu broker on ``urls``' first host:port."""
    embedded_storage: str = "memory://tansu/"
    """``memory://tansu/`` (lost on restart) or ``s3://bucket/`` (durable; needs AWS_* env)."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    partitions: int = Field(default=4, ge=1)
    session_timeout_ms: int = 6000
    """Short on purpose: tansu holds every JoinGroup for half the session timeout."""
    heartbeat_interval_ms: int = 2000
    max_message_bytes: int = 1_000_000

    @property
    def bootstrap(self) -> list[str]:
        return [u.strip() for u in self.urls.split(",") if u.strip()]

    def client_kwargs(self) -> dict[str, object]:
        """Connection keyword arguments shared by kafka-python clients."""
        kw: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            kw["ssl_cafile"] = str(self.ssl_cafile)
        return kw


class QdrantSettings(BaseModel):
    mode: Literal["embedded", "server", "memory"] = "embedded"
    """``embedded``: Qdrant Edge on disk; ``server``: qdrant-client to ``url``;
    ``memory``: qdrant-client's in-process ``:memory:`` (tests only)."""
    path: Path | None = None
    """Embedded store folder; defaults to ``<data_dir>/qdrant``."""
    url: str | None = None
    api_key: SecretStr | None = None
    collection_prefix: str = "pgenrm"


class ModelSettings(BaseModel):
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    model: str = "smollm2"
    """An alias (``smollm2``, ``qwen0.5b``, ``qwen1.5b``), a local folder, or a hub id."""
    embedder: str = "minilm"
    embedder_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """``auto``: bf16 matmuls where the CPU has native bf16 (AMX/AVX512-BF16), else float32.
    Measured: within cosine 0.9999 of float32 and 1.6-2.5x faster on an AMX CPU."""
    embedder_graph: Literal["traced", "eager"] = "traced"
    """``traced``: each forward pass is one TorchScript call that runs without the GIL
    (:mod:`prototypes.traced_encoder`), checked against the eager model at load and
    eager when the model cannot be traced. Measured on the 2-core AMX box: sharded
    embedding beside a busy Python thread 306-309 vs 257-265 events/s eager."""
    embedder_workers: int | None = Field(default=None, ge=1, le=64)
    """Threads that embed shards of one large call at once, each running torch on one
    core (:class:`prototypes.embedder.SentenceTransformerEmbedder`). None: one per
    usable core, at most 4. 1: a single call with torch's own thread team. Measured
    on 2 cores: the feedback path 94 vs 80 events/s, because one OpenMP team
    spinning at its barriers loses whenever the broker or the state work takes a core."""
    embedder_pin_shards: bool | None = None
    """Pin each embedding shard thread to its own core (Linux;
    :class:`prototypes.embedder.SentenceTransformerEmbedder`'s ``pin``). None: pin when
    there are at least as many shards as cores the process may use (it owns them);
    leave a shared host's scheduler alone otherwise."""
    embedder_shard_processes: bool = True
    """Run the embedding shards in child processes (the traced graph, torch and
    ``tokenizers``: about 300 MB each) instead of threads
    (:mod:`prototypes.embed_processes`): a shard then never waits for the worker's GIL,
    which the feedback state work and Qdrant Edge's ``flush`` hold beside it. Measured
    on the 2-core EPYC of session 15, 3 runs each: the same feedback throughput
    (141-147 vs 142-149 events/s) and first feedback to prototype visible at 100
    events/s p95 1.27-1.61 s vs 1.69-2.14 s with threads. Only with more than one shard
    and the traced graph; ``false``: threads."""
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    template: Path | None = None
    """A prompt template file; defaults to the one shipped in ``reward/templates``."""
    history_size: int = Field(default=3, ge=0, le=32)
    samples: int = Field(default=1, ge=0, le=64)
    neighbours: int = Field(default=2, ge=0, le=32)
    temperature: float = 1.0
    max_new_tokens: int = 384
    prefill: bool = True
    """Start the assistant turn at PART 2's ``<JSON_START>`` (measured: small CPU models
    then emit parseable scores more often; a trained P-GenRM checkpoint can turn it off)."""
    readout: bool = False
    """Score readout (``reward.readout``): read PART 2's scores from the model's distribution
    over 1..10 instead of sampling JSON, so every chain scores (transformers backend only;
    others ignore it). Off by default: measured on PrefEval, SmolLM2's read-out chains pick
    the aligned answer in 40% of pairs against the prior's 96%, and under ``paper`` they
    would outvote the prior. Turn it on for a trained checkpoint and for measurement."""
    combination: Literal["paper", "blend"] = "paper"


class MetaRMSettings(BaseModel):
    """The MetaRM updated online from feedback critiques (:mod:`stream.metarm_online`)."""

    online: bool = True
    """Keep served chains and update the MetaRM from each feedback event with a critique
    that names a served request (cheap: MiniLM features + a small MLP, loaded on the
    first such event)."""
    max_chains: int = Field(default=4, ge=1, le=64)
    """Served chains kept per request (own-history chains first); one example each."""
    chain_rows: int = Field(default=10_000, ge=1)
    """Requests whose chains are kept (the newest), in ``<data_dir>/served_chains.sqlite``."""
    keep_versions: int = Field(default=3, ge=1)
    """Saved MetaRM versions kept under ``<data_dir>/metarm/``."""
    weighted: bool = False
    """Weight a request's own chains by the MetaRM's predicted critique quality instead of a
    plain mean (RM-NLHF). Needs chains with a PART 1 critique (``models.prefill=false``)."""


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    token: SecretStr | None = None
    max_body_bytes: int = 1_000_000


class Settings(BaseSettings):
    """All of pgenrm's settings."""

    model_config = SettingsConfigDict(
        env_prefix="PGENRM_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    broker: BrokerSettings = BrokerSettings()
    qdrant: QdrantSettings = QdrantSettings()
    models: ModelSettings = ModelSettings()
    metarm: MetaRMSettings = MetaRMSettings()
    api: ApiSettings = ApiSettings()
    # Flat aliases the issues name explicitly (PGENRM_API_TOKEN, PGENRM_API_PORT).
    api_token: SecretStr | None = None
    api_port: int | None = None

    def model_post_init(self, __context: object) -> None:
        if self.api_token is not None and self.api.token is None:
            self.api.token = self.api_token
        if self.api_port is not None:
            self.api.port = self.api_port

    @property
    def qdrant_path(self) -> Path:
        return self.qdrant.path or self.data_dir / "qdrant"
