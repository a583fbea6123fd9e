"""Scorers, evaluation modes and what "no history" means for each.

A *scorer* is a choice of the service's signals and combination:

==========  ==================================  ============
scorer      signals                             combination
==========  ==================================  ============
``prior``   ``prior`` (embedding direction)     ``paper``
``chain``   ``individual`` + ``prototype``      ``paper`` (Eq. 9)
``blend``   all three                           ``blend``
==========  ==================================  ============

A *mode* decides which user asks and what that user's store holds:

``personalized``
    the user's own id; the store holds the user's full history.
``non_personalized``
    "same model, no history": a fresh user id that was never fed, with only
    the personal signal — ``individual`` for the chain/blend scorers (the
    generative judge with an empty history, the paper's "Judge, default"
    row), ``prior`` for the prior scorer (a user without a preference
    direction: whatever the service returns for it — ties, or a population
    prior if the service routes a stranger to one; the served ``mode`` is
    recorded so the table says which).
``sparse``
    a fresh user fed only the first history triple (P-GenRM's sparse-history
    setting); same signals as ``personalized``.
``prototype_only``
    a fresh user id, never fed (cold start): the service must route the
    request by its query to a prototype. Signals: ``prototype`` for chain
    scorers (neighbours' histories stand in), ``prior`` for the prior scorer
    (the prototype's preference prior, when the service serves it for
    cold-start users).
``grid``
    the ``chain`` scorer only: the user's own id with overrides ``samples=m`` and
    ``neighbours=n`` for every (m, n) of the scaling grid.

>>> spec_for("chain", "non_personalized").signals
frozenset({'individual'})
>>> user_for("sparse", "travel/3")
'sparse:travel/3'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Combination = Literal["paper", "blend"]

SCORERS: dict[str, tuple[frozenset[str], Combination]] = {
    "prior": (frozenset({"prior"}), "paper"),
    "chain": (frozenset({"individual", "prototype"}), "paper"),
    "blend": (frozenset({"prior", "individual", "prototype"}), "blend"),
}
CHAIN_SCORERS = ("chain", "blend")
MODES = ("personalized", "non_personalized", "sparse", "prototype_only")
_PREFIX = {"non_personalized": "anon:", "sparse": "sparse:", "prototype_only": "cold:"}


@dataclass(frozen=True)
class ModeSpec:
    """The request shape of one (scorer, mode)."""

    scorer: str
    mode: str
    signals: frozenset[str]
    combination: Combination


def spec_for(scorer: str, mode: str) -> ModeSpec:
    """Signals and combination of ``scorer`` in ``mode`` (see the module docstring)."""
    signals, combination = SCORERS[scorer]
    if mode == "non_personalized":
        signals = frozenset({"prior"}) if scorer == "prior" else frozenset({"individual"})
    elif mode == "prototype_only":
        signals = frozenset({"prior"}) if scorer == "prior" else frozenset({"prototype"})
    return ModeSpec(scorer, mode, signals, combination)


def applies(scorer: str, mode: str) -> bool:
    """Whether ``scorer`` runs in ``mode``.

    ``blend`` skips ``non_personalized``: with no history it asks exactly what
    ``chain`` asks there (the judge with an empty history), so it would only
    repeat the slowest requests of the run. ``grid`` (the scaling of the chains
    themselves) runs for ``chain`` only.

    >>> applies("blend", "non_personalized"), applies("blend", "grid"), applies("chain", "grid")
    (False, False, True)
    """
    if mode == "grid":
        return scorer == "chain"
    return not (scorer == "blend" and mode == "non_personalized")


def user_for(mode: str, user_id: str) -> str:
    """The user id that asks in ``mode`` (fresh ids get a mode prefix)."""
    return _PREFIX.get(mode, "") + user_id
