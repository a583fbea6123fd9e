"""Similar users for prototype-level scaling ([PG] §4.2, "Pro-n").

Examples
--------
>>> import numpy as np, tempfile
>>> from prototypes.protocol import UserState
>>> from prototypes.stores.edge import EdgeUserStore
>>> from infra.contracts import ChatMessage
>>> from reward.protocol import HistoryItem
>>> users = EdgeUserStore(tempfile.mkdtemp(), dim=2)
>>> h = [HistoryItem(context=[ChatMessage(role="user", content="q")], chosen="a", rejected="b")]
>>> for uid, v in [("me", [1, 0]), ("near", [0.9, 0.1]), ("far", [0, 1])]:
...     users.put(UserState(user_id=uid, history=h, prototype_id=0), np.array(v, float))
>>> [s.user_id for s in find_neighbours(users, users.get("me"), np.array([1.0, 0]), 0, 2)]
['near', 'far']
"""

from __future__ import annotations

import numpy as np

from prototypes.protocol import UserState, UserStore
from prototypes.user_update import search_vector


def find_neighbours(
    users: UserStore,
    state: UserState,
    vector: np.ndarray | None,
    prototype_id: int | None,
    n: int,
) -> list[UserState]:
    """Top-``n`` most similar users with history inside ``prototype_id``, never ``state``.

    ``vector`` defaults to the user's search vector; with neither there are none.
    ``prototype_id=None`` searches all users.
    """
    if n <= 0:
        return []
    v = vector if vector is not None else search_vector(state)
    if v is None:
        return []
    hits = users.neighbours(v, limit=n, prototype_id=prototype_id, exclude=state.user_id)
    return [s for s, _ in hits if s.user_id != state.user_id and s.history][:n]
