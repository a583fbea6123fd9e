from __future__ import annotations

from typing import Any

import numpy as np

from prototypes.prior import cold_start_prior, global_prior, prior_scores, user_prior
from prototypes.protocol import Prototype, UserState
from prototypes.stores import Stores
from tests.prototypes.conftest import DIM, unit


def test_prior_scores_rank_candidates() -> None:
    z = np.array([1.0, -1.0])
    assert prior_scores(z, np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])).tolist() == [1, -1, 0]


def test_user_prior_falls_back_to_direction() -> None:
    assert user_prior(UserState(user_id="u"), np.ones(DIM)) is None
    s = UserState(user_id="u", direction=[3.0, 4.0] + [0.0] * (DIM - 2))
    z = user_prior(s, np.ones(DIM))
    assert z is not None
    np.testing.assert_allclose(z[:2], [0.6, 0.8], atol=1e-6)


def test_cold_start_routes_by_query(stores: Stores) -> None:
    assert cold_start_prior(stores.prototypes, np.ones(DIM)) == (None, None)
    assert global_prior(stores.prototypes) is None
    e = np.eye(DIM)
    stores.prototypes.put(
        [
            Prototype(prototype_id=0, centroid=e[0].tolist(), query_centroid=e[2].tolist(),
                      z=e[0].tolist(), size=3),
            Prototype(prototype_id=1, centroid=e[1].tolist(), query_centroid=e[3].tolist(),
                      z=e[1].tolist(), size=1),
        ]
    )  # fmt: skip
    p, z = cold_start_prior(stores.prototypes, unit(e[3] + 0.1 * e[2]))
    assert p is not None and p.prototype_id == 1
    assert z is not None and z.tolist() == e[1].tolist()
    g = global_prior(stores.prototypes)
    assert g is not None
    np.testing.assert_allclose(g[:2], [0.75, 0.25])


def test_refined_prior_cache_answers_every_text_when_full(minilm: Any) -> None:
    from prototypes.prior import RefinedPrior
    from prototypes.refine import RefineConfig, Refiner

    dim = int(minilm.dim)
    prior = RefinedPrior(
        Refiner.new(np.eye(dim)[:2].astype(np.float32), RefineConfig()), minilm, cache_size=4
    )
    prior._embed(["a", "b", "c", "d"])  # full; "a" is the oldest
    got = prior._embed(["a", "x"])  # a hit and a miss: making room for "x" must not lose "a"
    np.testing.assert_allclose(got, minilm.embed(["a", "x"]), atol=1e-5)
    assert list(prior._cache) == ["c", "d", "a", "x"]  # least recently used went first
    small = RefinedPrior(prior.refiner, minilm, cache_size=2)
    more = small._embed(["p", "q", "r", "p"])  # more new texts than the cache holds
    np.testing.assert_allclose(more, minilm.embed(["p", "q", "r", "p"]), atol=1e-5)
    assert len(small._cache) == 2
