"""The profiles agent's work: onboarding profiles in, users known for ``prototype`` mode.

:func:`handle_profile` takes one record of ``pgenrm.profiles.v1`` through the
same pieces as the feedback path: :func:`infra.codec.decode_record` (bad bytes
are dead-lettered by :meth:`StreamRuntime.dead_letter` with the codec's
reason), :meth:`PgenrmService.apply_profile` in the runtime's feedback thread
(the store's one writer; idempotent by ``event_id`` through the ledger), the
new PersonaState on ``pgenrm.personas.v1``, then a flush before faust may
commit the offset.

Dead-letter reasons besides the codec's: ``duplicate_id`` (the ``event_id`` was
applied before: nothing changes), ``unknown_prototype``, ``user_has_history``
(:class:`~stream.exceptions.ProfileRejectedError`), ``processing_error``
(anything else failing on this one event). Each is counted in the runtime's
``profiles_<status>`` counters and in ``pgenrm_events_dead_lettered_total``;
applied profiles in ``pgenrm_events_processed_total{topic="pgenrm.profiles.v1"}``.

Profiles and feedback travel on different topics, so their relative order per
user is not guaranteed: a profile with ``prototype_id`` that arrives after the
user's first feedback was applied is dead-lettered as ``user_has_history``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from infra.codec import as_invalid, decode_record
from infra.contracts import UserProfile
from infra.exceptions import InvalidEventError
from infra.kafka import encode_value
from infra.metrics import count_processed
from infra.topics import PERSONAS, PROFILES
from prototypes.protocol import UserState
from stream.exceptions import ProfileRejectedError

if TYPE_CHECKING:
    from stream.runtime import Record, StreamRuntime

log = logging.getLogger(__name__)


async def handle_profile(rt: StreamRuntime, rec: Record) -> UserState | None:
    """Apply one profile record once; dead-letter it (with its reason) otherwise.

    Returns the registered user's state, or None when the record was
    dead-lettered. Returns only after every output is acknowledged.
    """
    svc = await rt.service()
    try:
        profile = decode_record(rec, max_bytes=rt.settings.broker.max_message_bytes)
    except InvalidEventError as exc:
        await _reject(rt, exc, "invalid")
        return None
    assert isinstance(profile, UserProfile)
    loop = asyncio.get_running_loop()
    try:
        state = await loop.run_in_executor(rt.feedback_pool, svc.apply_profile, profile)
    except ProfileRejectedError as exc:
        bad = InvalidEventError(exc.reason, exc.detail, rec.topic)
        await _reject(rt, as_invalid(bad, rec), "rejected")
        return None
    except Exception as exc:
        log.exception("profile %s failed", profile.event_id)
        await _reject(rt, as_invalid(exc, rec), "failed")
        return None
    if state is None:
        # applied before, perhaps by a worker that crashed before its PersonaState was
        # sent: send the user's state again (compacted, so once more is harmless)
        if rt.config.publish_states:
            current = await loop.run_in_executor(rt.feedback_pool, svc.user, profile.user_id)
            if current is not None:
                msg = encode_value(svc.persona_state(current))
                await rt.publisher.send(PERSONAS, current.user_id.encode(), msg)
        dup = InvalidEventError(
            "duplicate_id", f"profile event_id {profile.event_id!r} was already applied", rec.topic
        )
        await _reject(rt, as_invalid(dup, rec), "duplicate")
        return None
    if rt.config.publish_states:
        msg = encode_value(svc.persona_state(state))
        await rt.publisher.send(PERSONAS, state.user_id.encode(), msg)
    await rt.publisher.flush()
    rt.counters["profiles_applied"] += 1
    count_processed(PROFILES)
    if rt.refresher is not None:  # new stated preferences make a user's persona stale
        rt.refresher.offer(state.user_id)
    return state


async def _reject(rt: StreamRuntime, exc: InvalidEventError, status: str) -> None:
    """Dead-letter ``exc``'s record, count ``profiles_<status>``, wait for the broker."""
    await rt.dead_letter(exc)
    await rt.publisher.flush()
    rt.counters[f"profiles_{status}"] += 1
