"""Tuning of the stream processors, read from ``PGENRM_STREAM_*`` variables.

Kept apart from :class:`infra.settings.Settings` (whose groups describe the
systems pgenrm talks to); these knobs only shape how the processors batch,
debounce and bound their work.

>>> StreamConfig(max_history=8).max_history
8
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PGENRM_STREAM_", extra="ignore")

    feedback_batch: int = Field(default=256, ge=1)
    """Most feedback events in one batch (one embedder call, one store flush).

    Batches are greedy (:mod:`stream.pipeline`): whatever arrived while the
    previous batch was being embedded, up to this many, with no fixed wait, so a
    quiet stream is handled event by event and a backlog in full batches."""
    prepare_ahead: int = Field(default=2, ge=1)
    """Feedback batches embedding at once (:mod:`stream.pipeline`; 1: one after the
    other). With 2, in a backlog the next full batch's forward passes queue behind the
    current one's, so the embedding threads do not wait for the event loop between
    batches; a partial batch still waits, so a quiet stream batches as with 1."""
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=1500)
    """Longest time the broker may hold an empty Fetch of the worker's consumer.

    faust hard-codes 1500 ms, and tansu holds an empty fetch that long even
    when records arrive meanwhile (measured: aiokafka at 1500 ms sees a new
    record after ~300 ms p50, at 20 ms after ~5 ms). Lower costs idle CPU in
    the worker and the broker (~5 % of one core at 20 ms, ~10 % at 5 ms)."""
    trace: bool = False
    """Log one ``pgenrm trace {json}`` line per feedback batch and reward request
    with the time spent per stage (``bench/bench_stream.py`` reads them)."""
    embed_batch: int | None = Field(default=None, ge=1)
    """Texts per embedder forward pass; None: by the embedder's dtype
    (:func:`prototypes.embedder.default_batch_size`: 16 in float32, 64 in bf16).
    sentence-transformers sorts a call's texts by length and pads each pass to its
    longest text, so in float32 smaller passes waste less on padding; bf16 matmuls
    on AMX gain more from bigger passes than padding costs."""
    user_cache: int = Field(default=10_000, ge=0)
    """User states the worker keeps decoded after writing them
    (:class:`prototypes.stores.cache.CachedUserStore`; 0: off). The feedback
    path then reads its own users without decoding store payloads; a state
    with a full history takes tens of KB, so size this to the active users."""
    max_history: int = Field(default=64, ge=1)
    """Preference triples kept per user (oldest dropped first)."""
    halflife: float = Field(default=20.0, gt=0)
    """Recency half-life of the preference direction, in feedback events."""
    persona_refresh: bool = True
    """Run the persona refresher (needs the generative backend)."""
    persona_queue: int = Field(default=1024, ge=1)
    """Users waiting for a persona refresh; the oldest is dropped when full."""
    persona_debounce_s: float = Field(default=2.0, ge=0)
    """Quiet time after a user's last feedback before their persona is regenerated."""
    persona_max_wait_s: float = Field(default=30.0, ge=0)
    """Longest steady feedback can postpone a waiting user's persona refresh."""
    persona_max_new_tokens: int = Field(default=256, ge=16)
    served_max_rows: int = Field(default=100_000, ge=1)
    """Served rewards remembered for scoring them against later feedback."""
    web_port: int | None = None
    """Faust's web server port; ``None`` disables it."""
    publish_states: bool = True
    """Publish PersonaState / PrototypeState after each feedback batch."""
    torch_threads: int | None = Field(default=None, ge=1)
    """``torch.set_num_threads`` for the worker (None: torch's default). On a
    shared or small CPU, 1 avoids oversubscription (measured 3x faster embedding
    on a loaded 2-core machine)."""
    api: bool = True
    """Serve the HTTP API, /metrics and the dashboard next to the worker (``settings.api``)."""
    gc_freeze: bool = True
    """Once the models are loaded, freeze what is alive out of the cyclic garbage
    collector's reach (:func:`infra.heap.freeze_loaded_objects`), so that a full
    collection no longer walks the ~580,000 objects of the loaded models while
    holding the GIL (measured 0.6 s per collection on a 2-core EPYC)."""
    load_backend: bool = True
    """Load the generative backend at start (false: feedback path only, prior-only rewards)."""
