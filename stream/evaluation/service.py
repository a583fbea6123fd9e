"""What the evaluation needs from the scoring service, and how it opens one.

The runner talks to anything with :class:`EvalService`'s three methods; in
production that is :class:`stream.service.PgenrmService` itself (the code the
reward API and the stream worker use), opened on a fresh temporary store for
each run. Tests may pass a small in-process object with the same methods.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from infra.contracts import CandidateScore, FeedbackEvent, RewardRequest, RewardResult
from infra.settings import Settings


@runtime_checkable
class EvalService(Protocol):
    """The subset of ``PgenrmService`` the evaluation uses."""

    def apply_feedback(
        self, events: Sequence[FeedbackEvent], positions: Any = None
    ) -> list[Any]: ...

    def score(
        self,
        request: RewardRequest,
        *,
        signals: set[str] | None = None,
        combination: Combination | None = None,
    ) -> RewardResult: ...

    def close(self) -> None: ...


Combination = Literal["paper", "blend"]

ServiceFactory = Callable[[Path], EvalService]
"""Opens a fresh service whose state lives under the given folder."""


def eval_settings(base: Settings | None, data_dir: Path) -> Settings:
    """``base`` with its store moved to ``data_dir`` and Qdrant embedded (never a server)."""
    base = base or Settings()
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "qdrant": base.qdrant.model_copy(update={"mode": "embedded", "path": None}),
        }
    )


def pgenrm_service_factory(base: Settings | None = None) -> ServiceFactory:
    """A factory that opens the real :class:`stream.service.PgenrmService`."""

    def open_service(data_dir: Path) -> EvalService:
        from stream.service import PgenrmService

        svc: EvalService = PgenrmService.open(eval_settings(base, data_dir))
        return svc

    return open_service


def score_request(
    service: EvalService,
    request: RewardRequest,
    *,
    mode: str,
    scorer: str,
    signals: set[str],
    combination: Combination,
) -> RewardResult:
    """Score one evaluation request through the service's own code.

    ``non_personalized`` needs what the service never serves on its own (it
    always personalises or routes to a prototype), so it is assembled from the
    service's parts, not re-implemented:

    * prior scorer: the *global* prior (``prototypes.prior.global_prior`` over
      the service's prototype store) applied by ``prototypes.prior.prior_scores``
      to the service embedder's candidate vectors — the population's preference,
      no user's;
    * chain/blend scorers: the service's ``ChainScorer`` (``service.scorer``)
      with an empty history — the plain generative judge.

    A service without those parts (a test double) is asked with ``score``.
    """
    if mode != "non_personalized" or not hasattr(service, "stores"):
        return service.score(request, signals=signals, combination=combination)
    svc: Any = service
    t0 = time.perf_counter()
    n = len(request.candidates)
    components: dict[str, list[float]] = {}
    parse_failures = ties = samples = 0
    valid = [0] * n
    if scorer == "prior":
        from prototypes.embedder import context_text
        from prototypes.prior import global_prior, prior_scores

        z = global_prior(svc.stores.prototypes)
        if z is not None:
            emb = svc.embedder.embed([context_text(request.context), *request.candidates])
            components["prior"] = [float(x) for x in prior_scores(z, emb[1:])]
    else:
        from reward.protocol import ScoreRequest

        m = request.overrides.samples if request.overrides and request.overrides.samples else None
        res = svc.scorer.score_many(
            [
                ScoreRequest(
                    user_id=request.user_id,
                    context=list(request.context),
                    candidates=list(request.candidates),
                    samples=max(m or svc.settings.models.samples, 1),
                )
            ]
        )[0]
        parse_failures, ties, samples, valid = res.parse_failures, res.ties, res.samples, res.valid
        if all(x is not None for x in res.scores):
            components["individual"] = [float(x) for x in res.scores]
    # No valid score leaves zeros (a tie); the runner counts it as a failure because
    # no requested signal is in ``components``.
    final = next(iter(components.values()), [0.0] * n)
    return RewardResult(
        request_id=request.request_id,
        user_id=request.user_id,
        scores=[
            CandidateScore(index=i, score=final[i], rank=i + 1, valid_samples=valid[i])
            for i in range(n)
        ],
        mode="cold_start",
        samples_used=samples,
        parse_failures=parse_failures,
        ties=ties,
        components=components,
        model_id=str(getattr(svc, "model_id", "")),
        latency_ms=(time.perf_counter() - t0) * 1e3,
    )


def rebuild_prototypes(service: EvalService, *, k: int = 50, seed: int = 0) -> dict[str, Any]:
    """Bootstrap the prototypes over the fed users (``prototypes.rebuild``), if the service can.

    Runs K-means + attentive refinement + reassignment on the service's own
    stores and embedder, then makes the service's online assigner reload the
    new prototypes. Returns a summary for results.json. A service without
    stores (a test double) is left alone.
    """
    stores = getattr(service, "stores", None)
    settings = getattr(service, "settings", None)
    if stores is None or settings is None:
        return {"how": "none", "reason": "the service exposes no stores"}
    try:
        from prototypes.rebuild import rebuild
    except ImportError:
        return {"how": "none", "reason": "prototypes.rebuild is not available"}
    from dataclasses import asdict

    report = rebuild(
        settings,
        k=k,
        seed=seed,
        embedder=getattr(service, "embedder", None),
        stores=stores,
        resume=False,
        show_progress=False,
    )
    reload = getattr(service, "reload_prototypes", None)
    if reload is not None:
        reload()  # new prototypes, clusterer and refined prior
    else:
        assigner = getattr(service, "assigner", None)
        if assigner is not None and hasattr(assigner, "restore"):
            assigner.restore()
    info = asdict(report)
    info["sizes"] = {str(k_): v for k_, v in sorted(info.get("sizes", {}).items())}
    return {"how": "prototypes.rebuild.rebuild", "report": info}


def _plain(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return repr(obj)


def temp_data_dir(out: Path | None) -> Path:
    """A fresh folder for one run's store (under ``out`` when given)."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="store-", dir=out))
    return Path(tempfile.mkdtemp(prefix="pgenrm-eval-"))
