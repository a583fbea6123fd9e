"""Topic names and their configuration. Every topic is keyed by ``user_id``."""

from __future__ import annotations

from dataclasses import dataclass

FEEDBACK = "pgenrm.feedback.v1"
PROFILES = "pgenrm.profiles.v1"
"""Onboarding :class:`~infra.contracts.UserProfile` events (users known before any feedback)."""
REWARD_REQUESTS = "pgenrm.reward-requests.v1"
REWARDS = "pgenrm.rewards.v1"
PERSONAS = "pgenrm.personas.v1"
PROTOTYPES = "pgenrm.prototypes.v1"

INPUT_TOPICS = (FEEDBACK, REWARD_REQUESTS, PROFILES)
COMPACTED_TOPICS = (PERSONAS, PROTOTYPES)


def dlq(topic: str) -> str:
    """The dead-letter twin of an input topic.

    >>> dlq("pgenrm.feedback.v1")
    'pgenrm.feedback.v1.dlq'
    """
    return f"{topic}.dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False

    @property
    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": "compact"} if self.compacted else {}


def all_topics(partitions: int) -> list[TopicSpec]:
    """Every topic pgenrm uses, with ``partitions`` partitions each.

    >>> [t.name for t in all_topics(3)][:2]
    ['pgenrm.feedback.v1', 'pgenrm.reward-requests.v1']
    """
    specs = [TopicSpec(t, partitions) for t in (FEEDBACK, REWARD_REQUESTS, PROFILES, REWARDS)]
    specs += [TopicSpec(t, partitions, compacted=True) for t in COMPACTED_TOPICS]
    specs += [TopicSpec(dlq(t), partitions) for t in INPUT_TOPICS]
    return specs
